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

Every message a df-nats publisher sends, a single event or a batch of
them, carries one NATS header with its publisher and its number::

    Df-Seq: <publisher id> <incarnation>.<n>

``n`` counts the messages (not the events) of one publisher object on one
subject, from 1. It is taken on the bridge's loop thread when the message
is sent (``Stream``), so callers take no lock per event. The
*incarnation* is a random token drawn whenever a publisher object starts
in a process (again after a fork), so that a restarted service, which
keeps its stable publisher id, starts a new stream instead of looking like
a flood of duplicates. A stream is thus (publisher, incarnation, subject);
counting per subject keeps a subscriber that receives only some topics
free of false gaps.

After its connection comes back, a publisher sends on every subject it
used a *mark*: an empty message with ``Df-Mark: 1`` and the ``Df-Seq`` of
the last message it numbered there. Messages lost with the old connection
leave a gap that the mark reveals even when the publisher then falls
silent. An event refused by ``send_event`` (buffer full) is skipped: the
next number jumps, so subscribers see a gap and resync.

The subscriber side, ``SequenceTracker``, is pure (no I/O, no clock) and is
used from one thread at a time.
"""

import collections
import secrets
from typing import Mapping, Optional, Tuple

HEADER_SEQ = 'Df-Seq'
HEADER_MARK = 'Df-Mark'

# A Df-Seq value longer than this is not ours: the tracker keeps publisher
# ids from untrusted headers, so their size is bounded.
MAX_SEQ_HEADER = 256

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


def seq_header(incarnation: str, n: int, publisher: str) -> str:
    """The ``Df-Seq`` value of a publisher's ``n``-th message."""
    return '%s %s.%d' % (publisher, incarnation, n)


def parse(headers: Optional[Mapping[str, str]]
          ) -> Optional[Tuple[str, str, int]]:
    """(publisher, incarnation, n) from message headers, or None."""
    if not headers:
        return None
    seq = headers.get(HEADER_SEQ)
    if not seq or len(seq) > MAX_SEQ_HEADER:
        return None
    publisher, _, numbered = seq.rpartition(' ')
    incarnation, _, number = numbered.rpartition('.')
    if (not publisher or not incarnation or not number.isdigit()
            or not number.isascii()):
        return None
    return publisher, incarnation, int(number)


class Stream:
    """One publisher object's numbering on one subject (publisher side).

    Numbers are taken and committed on the loop thread only, when a
    message is sent. ``skip()`` is the one thing a caller does: an event
    it could not queue (``PublishBufferFull``) makes the next number jump.
    Two racing skips may count once; one is enough for the gap.
    """

    __slots__ = ('subject', 'n', 'refused', '_skipped', '_prefix')

    def __init__(self, subject: str, publisher: str, incarnation: str):
        self.subject = subject
        self.n = 0             # the last number sent (loop thread)
        self.refused = 0       # events refused (callers)
        self._skipped = 0      # refusals already numbered (loop thread)
        self._prefix = '%s %s.' % (publisher, incarnation)

    def skip(self) -> None:
        """An event of this stream was refused (caller)."""
        self.refused += 1

    def next_number(self) -> int:
        """The number the next message gets, refusals counted (loop)."""
        refused = self.refused
        if refused != self._skipped:
            self.n += refused - self._skipped
            self._skipped = refused
        return self.n + 1

    def header(self, n: int) -> str:
        """The ``Df-Seq`` value of message ``n``."""
        return self._prefix + str(n)

    def mark_headers(self) -> Mapping[str, str]:
        """The headers of a mark: the last number used (loop)."""
        return {HEADER_SEQ: self.header(self.next_number() - 1),
                HEADER_MARK: '1'}


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
