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

"""The receive path's time budget for work that delivers nothing.

Anyone who may publish can send messages that cost decoding and checking
but deliver nothing (duplicates, marks, unreadable bodies) or hold
malformed events. That wasted work is summed per slice of the delivery
queue, a slice lasting until the queue is empty; once a slice is over
``timeouts.DELIVERY_WORK_BUDGET``, the receive path drops what is queued
and asks for one resync (``delivery.Delivery``). Messages fully
delivered are Dragonflow's load, bounded by the queue's bytes, and
charge nothing.
"""

import time
from typing import Optional, Tuple

from df_nats.conf import timeouts

_BUDGET_NS = int(timeouts.DELIVERY_WORK_BUDGET * 1e9)


class WorkBudget:
    """Wasted work in the slice of the queue being delivered (caller's
    world; one instance per subscriber, no lock).

    ``since`` is when the slice's first wasted message began (wall-clock
    nanoseconds), None while no slice is open: a plain attribute, read
    for every message delivered.
    """

    def __init__(self):
        self.since: Optional[int] = None
        self._work = 0
        self._cpu = 0   # the thread's CPU time at the slice's start

    def end_slice(self):
        """The queue emptied, or was dropped: the next waste opens a new
        slice.
        """
        self.since = None
        self._work = 0

    def charge(self, started: int, now: int,
               queue_empty: bool) -> Optional[Tuple[int, int]]:
        """Add the work on a wasted message, from ``started`` to ``now``
        (wall clock).

        Returns (wasted work, the slice's time), in nanoseconds, when the
        slice ran over: its work passed the budget and more than half of
        its time. On a loaded machine the wall clock also counts the time
        the thread waited for a CPU: the budget is over only if the
        thread also spent that much CPU time in the slice (an upper bound
        of the wasted work, read at the slice's start and when the wall
        clock says over). The slice ends then, or with ``queue_empty``.
        """
        if self.since is None:
            self.since = started
            # This message's work was not seen by the CPU clock: counted
            # as on the wall clock.
            self._cpu = _cpu_clock() - (now - started)
        work = self._work + now - started
        over = None
        if (work > _BUDGET_NS and 2 * work > now - self.since
                and _cpu_clock() - self._cpu > _BUDGET_NS):
            over = (work, now - self.since)
            self.end_slice()
            work = 0
        if queue_empty:
            self.end_slice()
            work = 0
        self._work = work
        return over


# The check against a loaded machine (CPU time of the caller's thread):
# read once per slice of wasted work.
_cpu_clock = time.thread_time_ns
