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

The subscriber side, ``SequenceTracker``, is pure (no I/O; the clock it
reads to admit new unknown streams is given) and is used from one thread
at a time. The headers are not authenticated: the tracker is built so
that forged ones cost a resync at worst, never a real publisher's events
(see its docstring). In particular a number says which message it is
only together with the message's digest: a different message under a
number already delivered is delivered too (``CONFLICT``).
"""

import array
import collections
import secrets
import time
from typing import Mapping, Optional, Tuple

HEADER_SEQ = 'Df-Seq'
HEADER_MARK = 'Df-Mark'
# On a message a publisher sends again after its connection came back
# (what the lost server may not have routed): not part of its digest, so
# that a copy received before is a duplicate; and far below the last
# number it is dropped as long delivered (BEHIND), never a new baseline.
HEADER_RESENT = 'Df-Resent'

# A Df-Seq value longer than this is not ours (ours: a 36-character uuid,
# 8 hex digits and a number): it is not tracked, and the tracker keeps
# publisher ids from untrusted headers only this long.
MAX_SEQ_HEADER = 128

# What ``SequenceTracker.check`` says about one message.
UNTRACKED = 'untracked'   # no sequence header: deliver as is
BAD_HEADER = 'bad-header'  # a Df-Seq we cannot read: deliver, untracked
REFUSED = 'refused'       # a new unknown stream over the admission rate:
#                           deliver, untracked
FIRST = 'first'           # first message of a stream seen: the baseline
NEXT = 'next'             # the expected next one
GAP = 'gap'               # messages were missed before this one
LATE = 'late'             # below the last number, never seen: deliver
DUPLICATE = 'duplicate'   # this very message seen already: drop it
CONFLICT = 'conflict'     # another message under a number delivered
#                           already: deliver, resync
MARK = 'mark'             # a mark, nothing missed: not an event
JUMP = 'jump'             # an implausible jump, not believed: deliver,
#                           resync, keep the old baseline
RESET = 're-baseline'     # far below the baseline: a new baseline,
#                           deliver, resync
AHEAD = 'ahead'           # would be a GAP; asked with hold_gaps, nothing
#                           was recorded: catch up first, then check again
BEHIND = 'behind'         # a replayed message below the window: long
#                           delivered (or its loss answered then): drop

# Numbers below the last one whose arrival is remembered per stream,
# each with the digest of the message delivered under it: a message in
# this window is a duplicate only if that very message was seen; below it
# the stream takes the number as its new baseline. Nothing a forger sends
# can thus make later genuine messages look like duplicates. It covers
# what a publisher sends again after a reconnect (at most
# transport.sender.RESEND_MAX_MESSAGES, fewer than this). 256 digests of
# 8 bytes: about 2.1 KiB a stream (sys.getsizeof of the array: 2,128).
_WINDOW = 256
_WINDOW_MASK = (1 << _WINDOW) - 1
_SLOT = _WINDOW - 1   # a number's digest is at n & _SLOT
_NO_DIGESTS = array.array('q', bytes(8 * _WINDOW))
# A forward jump larger than this is not believed at once: the baseline
# stays, unless the next message continues from the jump (a real
# publisher that skipped that many numbers).
MAX_JUMP = 100000
# Registered publishers a tracker remembers at most.
MAX_KNOWN = 100000
# New streams of publishers not known to be registered: at most this many
# per second are tracked (a burst of twice as many at once).
UNKNOWN_STREAM_RATE = 100.0


def new_incarnation() -> str:
    """A short random token naming one run of one publisher object."""
    return secrets.token_hex(4)


def seq_header(incarnation: str, n: int, publisher: str) -> str:
    """The ``Df-Seq`` value of a publisher's ``n``-th message."""
    return '%s %s.%d' % (publisher, incarnation, n)


def digest(headers: Mapping[str, str], body: bytes) -> int:
    """A 64-bit digest of one message: its body and all its headers.

    Python's own hash of bytes and str: SipHash, keyed at random in each
    process (unless PYTHONHASHSEED fixes it; a known key still leaves a
    second message with the digest of a given one 2**64 tries away), and
    several times faster than hashlib's blake2b on the receive path.
    Digests are only ever compared within the process that made them.
    ``Df-Resent`` is left out: a resent message is the same message.
    """
    if HEADER_RESENT in headers:
        return hash((body, tuple(item for item in headers.items()
                                 if item[0] != HEADER_RESENT)))
    return hash((body, tuple(headers.items())))


def parse(headers: Optional[Mapping[str, str]]
          ) -> Optional[Tuple[str, str, int]]:
    """(publisher, incarnation, n) from message headers, or None."""
    if not headers:
        return None
    return parse_value(headers.get(HEADER_SEQ))


def parse_value(seq: Optional[str]) -> Optional[Tuple[str, str, int]]:
    """(publisher, incarnation, n) from a ``Df-Seq`` value, or None."""
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

    __slots__ = ('subject', 'n', 'refused', 'resend', '_skipped', '_prefix')

    def __init__(self, subject: str, publisher: str, incarnation: str):
        self.subject = subject
        # Whether its last messages are sent again after a reconnect (the
        # sender's "resends"): not on a queue group's shared subject,
        # where nobody drops duplicates.
        self.resend = True
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


class _StreamState:
    """What a tracker remembers of one stream."""

    __slots__ = ('last', 'seen', 'digests', 'jumped', 'jumped_digest')

    def __init__(self, n, digest, mark=False):
        self.last = n        # the highest number believed
        # Bit i: number last - i was delivered; digests[(last - i) & _SLOT]
        # is then the digest of the message delivered under it. A mark
        # delivers nothing: it sets no bit.
        self.seen = 0 if mark else 1
        self.digests = array.array('q', _NO_DIGESTS)
        self.digests[n & _SLOT] = digest
        self.jumped = None   # an implausible number seen after last
        self.jumped_digest = 0


class SequenceTracker:
    """Remembers the last sequence numbers of each stream it saw.

    ``check()`` classifies a message. Headers are unauthenticated: anyone
    who may publish on a subject can copy a publisher's ``Df-Seq``. So a
    message is a duplicate only when the very same message (its digest:
    body and headers) was delivered under its number among the last
    ``_WINDOW``; another message under that number is delivered as a
    ``CONFLICT`` (one of the two is forged, or the publisher is broken:
    a resync is due). A number far below the baseline starts a new one
    (``RESET``) and an implausible jump forward is not believed
    (``JUMP``, the baseline stays): a forged message costs a resync, never
    the publisher's later events.

    Streams of publishers known to be registered (``set_known``) are kept
    apart from the others, at most ``max_streams`` of each. A known
    stream is never pushed out: not by unknown streams, and not by other
    known ones, since the registry is writable by publishers too (a
    flood of registered ids must not evict the streams of publishers
    registered before it). When the known streams are full, a new one is
    tracked with the unknown ones. Known streams leave that pool when
    their publisher leaves the registry or its record changes (another
    process took the id): they join the unknown ones, and come back on
    their next message while their publisher is registered.

    Unknown streams: the least recently seen is forgotten beyond
    ``max_streams``, and new ones are admitted at most
    ``UNKNOWN_STREAM_RATE`` per second (``REFUSED`` beyond, delivered
    untracked). A forgotten stream's next message is a new baseline
    (``FIRST``), never a false gap. ``clock`` is only read to admit an
    unknown stream.
    """

    def __init__(self, max_streams: int = 4096, clock=time.monotonic):
        if max_streams < 1:
            raise ValueError('max_streams must be >= 1')
        self.max_streams = max_streams
        self._clock = clock
        self._known_streams = {}
        self._unknown_streams = collections.OrderedDict()
        self._known_publishers = set()
        # The keys of each known publisher's streams in _known_streams.
        self._streams_of = {}
        self._tokens = 2 * UNKNOWN_STREAM_RATE
        self._refilled = None
        self.evicted = 0
        self.known_full = 0   # known streams tracked as unknown ones

    def __len__(self) -> int:
        return len(self._known_streams) + len(self._unknown_streams)

    # -- registered publishers ----------------------------------------------

    def set_known(self, publisher: str, known: bool = True) -> None:
        """Say whether ``publisher`` is in the registry now.

        Ids no ``Df-Seq`` can carry, and ids beyond ``MAX_KNOWN``, are
        ignored: the registry is writable by publishers too. A publisher
        that leaves takes its streams out of the known ones.
        """
        if not known:
            self._known_publishers.discard(publisher)
            self._demote(publisher)
        elif (isinstance(publisher, str) and len(publisher) < MAX_SEQ_HEADER
              and len(self._known_publishers) < MAX_KNOWN):
            self._known_publishers.add(publisher)

    def publisher_changed(self, publisher: str) -> None:
        """Another process took ``publisher``'s id: its streams leave the
        known ones (the live one comes back with its next message), so
        that dead incarnations do not hold places there.
        """
        self._demote(publisher)

    def _demote(self, publisher):
        for key in self._streams_of.pop(publisher, ()):
            state = self._known_streams.pop(key, None)
            if state is not None:
                self._store(self._unknown_streams, key, state)

    def known_count(self) -> int:
        """Streams of registered publishers tracked now."""
        return len(self._known_streams)

    # -- checking -------------------------------------------------------------

    def check(self, subject: str, headers: Optional[Mapping[str, str]],
              body: bytes = b'', hold_gaps: bool = False,
              replayed: bool = False) -> Tuple[str, int]:
        """Classify one message: (verdict, messages missed before it).

        The count is only non-zero for ``GAP`` and ``AHEAD``. With
        ``hold_gaps``, a message that would be a ``GAP`` is ``AHEAD``
        and leaves its stream as it was: the caller fetches what is
        missing, then checks it again. A ``replayed`` message (read
        back from the capture stream, or held during a catch-up) far
        below the last number is ``BEHIND``, not a new baseline: a
        catch-up starts a little before the loss, so it reads what was
        delivered before; so is a resent one (``Df-Resent``). A mark
        (``is_mark()``) is never an event to
        deliver, whatever the verdict. ``body`` and the headers make the
        message's digest, kept with its number.
        """
        if not headers:
            return UNTRACKED, 0
        seq = headers.get(HEADER_SEQ)
        if seq is None:
            return UNTRACKED, 0
        parsed = parse_value(seq)
        if parsed is None:
            return BAD_HEADER, 0
        publisher, incarnation, n = parsed
        key = (publisher, incarnation, subject)
        mark = HEADER_MARK in headers
        if HEADER_RESENT in headers:
            replayed = True
            message_digest = digest(headers, body)
        else:
            message_digest = hash((body, tuple(headers.items())))  # digest()
        state = self._known_streams.get(key)
        if state is None:
            state = self._unknown_streams.get(key)
            if state is None:
                return self._new_stream(key, publisher, n, message_digest,
                                        mark)
            if (publisher in self._known_publishers
                    and self._store_known(key, state)):
                # Registered since its stream began: protect it now.
                del self._unknown_streams[key]
            else:
                self._unknown_streams.move_to_end(key)
        # A mark repeats the number of the last message sent before it.
        last = state.last
        if n == last + 1 and not mark:
            state.last = n
            state.seen = ((state.seen << 1) | 1) & _WINDOW_MASK
            state.digests[n & _SLOT] = message_digest
            return NEXT, 0
        if n > last:
            if hold_gaps and n - last <= MAX_JUMP and n - last > (
                    0 if mark else 1):
                return AHEAD, n - last - (0 if mark else 1)
            return self._forward(state, n, mark, message_digest)
        if replayed and last - n >= _WINDOW:
            return BEHIND, 0
        return self._backward(state, n, mark, message_digest)

    def _new_stream(self, key, publisher, n, message_digest, mark):
        if publisher in self._known_publishers:
            if self._store_known(key, _StreamState(n, message_digest, mark)):
                return FIRST, 0
            self.known_full += 1
        if not self._admit_unknown():
            return REFUSED, 0
        self._store(self._unknown_streams, key,
                    _StreamState(n, message_digest, mark))
        return FIRST, 0

    def _store_known(self, key, state) -> bool:
        # Never evicts: False when the known streams are full.
        if len(self._known_streams) >= self.max_streams:
            return False
        self._known_streams[key] = state
        self._streams_of.setdefault(key[0], set()).add(key)
        return True

    def _store(self, streams, key, state):
        streams[key] = state
        if len(streams) > self.max_streams:
            streams.popitem(last=False)
            self.evicted += 1

    def _admit_unknown(self) -> bool:
        now = self._clock()
        if self._refilled is not None:
            self._tokens = min(2 * UNKNOWN_STREAM_RATE, self._tokens + (
                now - self._refilled) * UNKNOWN_STREAM_RATE)
        self._refilled = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    @staticmethod
    def _forward(state, n, mark, message_digest):
        last = state.last
        digests = state.digests
        if n - last > MAX_JUMP:
            jumped = state.jumped
            if jumped is not None and n == (jumped if mark else jumped + 1):
                # The stream goes on from the jump: a real publisher that
                # skipped that many numbers. Its gap was reported with
                # the JUMP (delivered); from here it is in step.
                state.last = n
                digests[jumped & _SLOT] = state.jumped_digest
                if mark:
                    state.seen = 1
                else:
                    state.seen = 3
                    digests[n & _SLOT] = message_digest
                state.jumped = None
                return (MARK, 0) if mark else (NEXT, 0)
            if not mark:
                state.jumped = n
                state.jumped_digest = message_digest
                return JUMP, 0
            state.jumped = n
            state.jumped_digest = 0
            return JUMP, 0
        state.jumped = None
        state.last = n
        seen = state.seen << min(n - last, _WINDOW)
        if not mark:
            seen |= 1
            digests[n & _SLOT] = message_digest
        state.seen = seen & _WINDOW_MASK
        missed = n - last if mark else n - last - 1
        return (GAP, missed) if missed else (NEXT, 0)

    @staticmethod
    def _backward(state, n, mark, message_digest):
        behind = state.last - n
        if behind < _WINDOW:
            if mark:
                return MARK, 0
            bit = 1 << behind
            slot = n & _SLOT
            if state.seen & bit:
                if state.digests[slot] == message_digest:
                    return DUPLICATE, 0
                # Another message than the one delivered under n: the
                # latest is kept, so that its own copies are duplicates.
                state.digests[slot] = message_digest
                return CONFLICT, 0
            state.seen |= bit
            state.digests[slot] = message_digest
            return LATE, 0
        # Far below anything a real publisher sends after its baseline:
        # the baseline came from a forger (or an older stream of it).
        state.last = n
        state.seen = 0 if mark else 1
        state.digests[n & _SLOT] = message_digest
        state.jumped = None
        return RESET, 0

    @staticmethod
    def is_mark(headers: Optional[Mapping[str, str]]) -> bool:
        """True for a publisher's mark (no event in it)."""
        return bool(headers) and HEADER_MARK in headers
