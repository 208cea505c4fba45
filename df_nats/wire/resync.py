#    Licensed under the Apache License, Version 2.0 (the "License"); you may
#    not use this file except in compliance with the License. You may obtain
#    a copy of the License at
#
#         http://www.apache.org/licenses/LICENSE-2.0
#
#    Unless required by applicable law or agreed to in writing, software
#    distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
#    WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
#    License for the specific language governing permissions and limitations
#    under the License.

"""When a subscriber's resync may be delivered: at most one per interval.

A resync (``callback(None, None, 'sync', None, None)``) makes Dragonflow's
controller reread its whole database, and what asks for one (a sequence
gap, a reconnect, a full delivery queue) can be provoked by anyone who may
publish on a subject. ``ResyncPacer`` is pure (no I/O; the clock is
given) and used from one thread at a time: the first request is delivered
at once; one asked for within ``interval`` of the last delivery waits for
the interval's end; requests while one is pending are folded into it.
None is ever lost: a request always has a delivery at or after it.
"""

import time
from typing import Callable, Optional


class ResyncPacer:
    """Decides when the next requested resync is delivered."""

    def __init__(self, interval: float,
                 clock: Callable[[], float] = time.monotonic):
        self.interval = interval
        self._clock = clock
        self._last: Optional[float] = None   # last delivery
        self.pending = False

    def request(self) -> Optional[float]:
        """A resync is wanted: seconds until it may be delivered.

        None when one is pending already, which covers this request.
        """
        if self.pending:
            return None
        self.pending = True
        if self._last is None:
            return 0.0
        return max(0.0, self._last + self.interval - self._clock())

    def delivered(self) -> None:
        """The pending resync was delivered now."""
        self.pending = False
        self._last = self._clock()

    def reset(self) -> None:
        """Forget a pending resync that will not be delivered (stopped)."""
        self.pending = False
