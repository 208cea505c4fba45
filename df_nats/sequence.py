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

"""Per-publisher sequence numbers: stamping them and checking them.

Every event a df-nats publisher sends carries two NATS headers::

    Df-Publisher: <publisher id>
    Df-Seq: <incarnation>.<n>

``n`` counts the events of one publisher object on one subject, from 1.
The *incarnation* is a random token drawn whenever a publisher object
starts in a process (again after a fork), so that a restarted service,
which keeps its stable publisher id, starts a new stream instead of
looking like a flood of duplicates. A stream is thus (publisher,
incarnation, subject); counting per subject keeps a subscriber that
receives only some topics free of false gaps.

After its connection comes back, a publisher sends on every subject it
used a *mark*: an empty message with ``Df-Mark: 1`` and the ``Df-Seq`` of
the last event it numbered there, queued behind those events. Events lost
with the old connection leave a gap that the mark reveals even when the
publisher then falls silent.

The subscriber side, ``SequenceTracker``, is pure (no I/O, no clock) and is
used from one thread at a time.
"""

import collections
import secrets
from typing import Mapping, Optional, Tuple

HEADER_PUBLISHER = 'Df-Publisher'
HEADER_SEQ = 'Df-Seq'
HEADER_MARK = 'Df-Mark'

# What ``SequenceTracker.check`` says about one message.
UNTRACKED = 'untracked'   # no (valid) sequence headers: deliver as is
FIRST = 'first'           # first message of a stream seen: the baseline
NEXT = 'next'             # the expected next one
GAP = 'gap'               # messages were missed before this one
DUPLICATE = 'duplicate'   # seen already (or older): drop it
MARK = 'mark'             # a mark, nothing missed: not an event


def new_incarnation() -> str:
    """A short random token naming one run of one publisher object."""
    return secrets.token_hex(4)


def seq_header(incarnation: str, n: int) -> str:
    """The ``Df-Seq`` value of the ``n``-th event of an incarnation."""
    return '%s.%d' % (incarnation, n)


def parse(headers: Optional[Mapping[str, str]]
          ) -> Optional[Tuple[str, str, int]]:
    """(publisher, incarnation, n) from message headers, or None."""
    if not headers:
        return None
    publisher = headers.get(HEADER_PUBLISHER)
    seq = headers.get(HEADER_SEQ)
    if not publisher or not seq:
        return None
    incarnation, _, number = seq.rpartition('.')
    if not incarnation or not number.isdigit():
        return None
    return publisher, incarnation, int(number)


class SequenceTracker:
    """Remembers the last sequence number of each stream it saw.

    ``check()`` classifies a message. The table is bounded: beyond
    ``max_streams`` the stream seen least recently is forgotten, and its
    next message is a new baseline (``FIRST``), never a false gap.
    """

    def __init__(self, max_streams: int = 4096):
        if max_streams < 1:
            raise ValueError('max_streams must be >= 1')
        self.max_streams = max_streams
        self._last = collections.OrderedDict()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._last)

    def check(self, subject: str,
              headers: Optional[Mapping[str, str]]) -> Tuple[str, int]:
        """Classify one message: (verdict, events missed before it).

        The count is only non-zero for ``GAP``. A mark (``is_mark()``) is
        ``MARK``, ``FIRST`` or ``GAP``, never an event to deliver.
        """
        parsed = parse(headers)
        if parsed is None:
            return UNTRACKED, 0
        publisher, incarnation, n = parsed
        # A mark repeats the number of the last event sent before it.
        mark = HEADER_MARK in headers
        key = (publisher, incarnation, subject)
        last = self._last.get(key)
        if last is None:
            self._last[key] = n
            if len(self._last) > self.max_streams:
                self._last.popitem(last=False)
                self.evicted += 1
            return FIRST, 0
        self._last.move_to_end(key)
        if mark:
            if n <= last:
                return MARK, 0
            self._last[key] = n
            return GAP, n - last
        if n <= last:
            return DUPLICATE, 0
        self._last[key] = n
        if n == last + 1:
            return NEXT, 0
        return GAP, n - last - 1

    @staticmethod
    def is_mark(headers: Optional[Mapping[str, str]]) -> bool:
        """True for a publisher's mark (no event in it)."""
        return bool(headers) and HEADER_MARK in headers

    def forget(self):
        """Drop every stream."""
        self._last.clear()
