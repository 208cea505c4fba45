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

"""Fetching what a subscriber missed from the capture stream (loop thread).

One catch-up reads, from a start time on and up to the stream's last
message when it began, every stored message of the subjects the
subscriber receives: batched direct gets (nats-server 2.11 and later),
answered by whichever replica is nearest, even while the stream elects a
leader. Pages of ``PAGE`` messages or ``PAGE_BYTES`` bytes; each page
ends with a ``204 EOB`` status that says how many are left. No reply for
a while counts as a silence only after a round trip to the server: a
process on a loaded machine reads its socket late. The stored copy of a
message is handed back with the headers it was published with: those
the server adds on the way out are removed, so a copy and the original
make the same digest (``sequence.digest``).

What comes back is as untrusted as anything received: the caller checks
it like live messages. Everything here is bounded: in messages, events
and bytes by the caller's limits, and in time per reply.
"""

import asyncio
import json
import time
from typing import List, NamedTuple, Optional

from nats import errors as nats_errors

from df_nats import errors
from df_nats.transport import capture_stream
from df_nats.wire import codec

# Outcomes of a fetch, besides OK: each is the reason of the full resync
# the caller asks for instead (stats: the counter of that reason).
OK = 'ok'
NO_STREAM = 'no capture stream'
WINDOW_PASSED = 'replay window passed'
SILENT = 'JetStream silent'
OVER_LIMIT = 'more to replay than the limit'
FAILED = 'replay failed'

# Small pages share a busy server fairly: it sends the replies of every
# page asked for in turn, so a catch-up waits for one page of each of the
# others (every controller of a lost node asking at once), not for all
# their messages, before its own next reply.
PAGE = 1000
PAGE_BYTES = 1024 * 1024
# The share of a request's time limit the stream's info may take before
# the fetch goes on without it.
INFO_SHARE = 0.25
# Subjects fetched one by one at most; beyond, the whole topic space is
# read once and filtered here.
MAX_FILTERS = 8
_DIRECT_GET = '$JS.API.DIRECT.GET.%s'
# Headers a direct get reply carries besides the stored ones.
_ADDED = frozenset(('Nats-Stream', 'Nats-Subject', 'Nats-Sequence',
                    'Nats-Time-Stamp', 'Nats-Num-Pending',
                    'Nats-Last-Sequence', 'Nats-UpTo-Sequence'))


class Stored(NamedTuple):
    """One message read back from the stream."""

    seq: int          # its stream sequence
    subject: str
    headers: dict     # as published
    data: bytes


class Fetched(NamedTuple):
    """What a fetch found: the outcome, and the messages if ``OK``."""

    outcome: str
    messages: List[Stored]
    detail: str = ''
    # The last stream sequence read of the subjects fetched (or, when
    # there was nothing to read, the stream's last): a later fetch goes
    # on after it.
    last_seq: int = 0


class Progress:
    """When a fetch last heard from the servers (``time.monotonic()``):
    a reply, or a round trip while it waits for one.

    Written on the loop thread as replies arrive, read in the caller's
    world: a catch-up whose fetch is slow but still answered goes on
    past its deadline.
    """

    def __init__(self):
        self.heard = 0.0   # never


class _Over(errors.DfNatsError):
    pass


class _Failed(errors.DfNatsError):
    def __init__(self, outcome, detail):
        super().__init__(detail)
        self.outcome = outcome


async def fetch_on_loop(nc, stream: str, prefix: str, subjects: List[str],
                        start_ns: int, limit_events: int, limit_bytes: int,
                        timeout: float,
                        start_seq: Optional[int] = None,
                        progress: Optional[Progress] = None) -> Fetched:
    """Every message stored on ``subjects`` since ``start_ns``, in stream
    order (loop thread); with ``start_seq``, from that stream sequence on
    instead (a catch-up going on after its last fetch).

    ``OK`` with the messages; otherwise the reason a full resync is due:
    no stream (or no JetStream), the stream's window starting after
    ``start_ns`` (messages may have aged out), no reply for ``timeout``
    while a page is read (the stream's info gets ``INFO_SHARE`` of it,
    then the fetch goes on without), more than ``limit_events`` events
    or ``limit_bytes`` bytes to fetch, or an answer that makes no sense.
    ``progress`` learns when each reply arrives.

    The stream's info and the first page are asked for together: on a
    loaded machine every round trip costs up to seconds, and most
    catch-ups fit in one page.
    """
    wanted = set(subjects)
    if len(wanted) <= MAX_FILTERS:
        filters = sorted(wanted)
    else:
        filters = [capture_stream.subject_filter(prefix)]
    loop = asyncio.get_running_loop()
    up_to = loop.create_future()
    reader = _Reader(nc, stream, start_ns, start_seq, limit_events,
                     limit_bytes, timeout, progress or Progress(), up_to)
    reading = loop.create_task(reader.read_all(filters, wanted))
    try:
        info = await _stream_info(nc, stream, timeout * INFO_SHARE)
        if isinstance(info, Fetched):
            return info
        if info is None:
            # Only the stream's leader answers its info, and it may be
            # the server just lost, or too busy; its replicas answer
            # direct gets meanwhile. Nothing is judged without it: the
            # pages are read to the end (a hole is still found: numbers
            # that stay missing after the fetch).
            last_seq = 0
        else:
            last_seq, early = _judge(info, start_ns, start_seq)
            if early is not None:
                return early
        up_to.set_result(last_seq)
        try:
            await reading
        except _Over:
            return Fetched(OVER_LIMIT, [], '%d events, %d bytes so far'
                           % (reader.events, reader.size))
        except (asyncio.TimeoutError, nats_errors.TimeoutError):
            return Fetched(SILENT, [], 'direct get')
        except _Failed as exc:
            return Fetched(exc.outcome, [], str(exc))
    finally:
        if not reading.done():
            # Answered by the info alone: the pages are not needed.
            reading.cancel()
        # Its outcome taken, whatever it was: never "not retrieved".
        await asyncio.gather(reading, return_exceptions=True)
    found = reader.found
    if len(filters) > 1:
        found.sort(key=lambda stored: stored.seq)
    # What was read, not the info's last sequence: a page answered before
    # the info does not hold what was stored in between, and a later
    # fetch must not go on after it.
    return Fetched(OK, found,
                   last_seq=reader.last_seq or (start_seq or 1) - 1)


async def _stream_info(nc, stream, timeout):
    """The stream's info, the ``Fetched`` it already decides, or None
    when it did not come in time.
    """
    try:
        return await capture_stream.api_request_on_loop(
            nc, 'INFO', stream, None, timeout)
    except nats_errors.NoRespondersError:
        return Fetched(NO_STREAM, [], 'no JetStream')
    except capture_stream.StreamError as exc:
        if exc.err_code == capture_stream.ERR_STREAM_NOT_FOUND:
            return Fetched(NO_STREAM, [], str(exc))
        return Fetched(FAILED, [], str(exc))
    except (asyncio.TimeoutError, nats_errors.TimeoutError):
        return None


def _judge(info, start_ns, start_seq):
    """(the stream's last sequence, the ``Fetched`` its info decides
    already or None).
    """
    config = info.get('config') or {}
    if not config.get('allow_direct'):
        return 0, Fetched(NO_STREAM, [], 'direct get not allowed')
    state = info.get('state') or {}
    last_seq = _number(str(state.get('last_seq', ''))) or 0
    window = capture_stream.window_start_ns(info)
    first_seq = _number(str(state.get('first_seq', ''))) or 0
    if start_seq is not None:
        if first_seq > start_seq:
            return last_seq, Fetched(
                WINDOW_PASSED, [], 'oldest stored %d, wanted from %d'
                % (first_seq, start_seq))
    elif window is not None and window > start_ns:
        return last_seq, Fetched(
            WINDOW_PASSED, [], 'oldest stored %s, wanted from %s'
            % (capture_stream.format_time_ns(window),
               capture_stream.format_time_ns(start_ns)))
    if not state.get('messages') or (
            start_seq is not None and start_seq > last_seq):
        return last_seq, Fetched(
            OK, [], last_seq=max(last_seq, (start_seq or 1) - 1))
    return last_seq, None


class _Reader:
    """Pages of batched direct gets, into ``found`` (loop thread)."""

    def __init__(self, nc, stream, start_ns, start_seq, limit_events,
                 limit_bytes, timeout, progress, up_to):
        self._nc = nc
        self._progress = progress
        # The stream's last sequence when the fetch began (0: unknown),
        # once its info came. What is stored later came live, held by the
        # catch-up: reading it too would chase the stream (a fetch slower
        # than the publishers never ends) for nothing but copies. A
        # number still missing then is a hole, asked for again.
        self._up_to = up_to
        self._subject = _DIRECT_GET % stream
        if start_seq is not None:
            self._start = {'seq': start_seq}
        else:
            self._start = {'start_time': capture_stream.format_time_ns(
                max(start_ns, 0))}
        self._limit_events = limit_events
        self._limit_bytes = limit_bytes
        self._timeout = timeout
        self.found = []
        self.events = 0
        self.size = 0
        self.last_seq = 0

    async def read_all(self, filters, wanted):
        for subject in filters:
            await self.read(subject, wanted)

    async def read(self, subject, wanted):
        replies = asyncio.Queue()

        progress = self._progress

        async def on_reply(msg):
            progress.heard = time.monotonic()
            replies.put_nowait(msg)

        nc = self._nc
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox, cb=on_reply)
        try:
            request = dict(self._start)
            after = 0
            while request is not None:
                if request.get('seq', after + 1) <= after:
                    raise _Failed(FAILED, 'direct get did not move on')
                after = request.get('seq', 0)
                request.update(batch=PAGE, max_bytes=PAGE_BYTES,
                               next_by_subj=subject)
                await nc.publish(self._subject, json.dumps(request).encode(),
                                 reply=inbox)
                request = await self._page(replies, sub, wanted)
        finally:
            try:
                await sub.unsubscribe()
            except nats_errors.Error:
                pass

    async def _page(self, replies, sub, wanted) -> Optional[dict]:
        """Take one page's replies; the next page's request, or None."""
        while True:
            msg = await self._next_reply(replies, sub)
            headers = msg.headers or {}
            if 'Nats-Stream' in headers:
                # A stored message: the server adds Nats-Stream to each,
                # and a publisher cannot take it away.
                self._take(msg, headers, wanted)
                continue
            status = headers.get('Status')
            if status == '204':
                left = _number(headers.get('Nats-Num-Pending'))
                last = _number(headers.get('Nats-Last-Sequence'))
                if left is None or last is None:
                    raise _Failed(FAILED, 'an end of batch without counts')
                # The info's answer is needed only to go on; it was
                # asked for with the first page.
                if left > 0 and not 0 < await self._up_to <= last:
                    return {'seq': last + 1}
                return None
            if status == '404':
                return None   # nothing (more) stored since then
            if status == '503':
                raise _Failed(NO_STREAM, 'no responders to direct get')
            raise _Failed(FAILED, 'direct get answered %s %s' % (
                status, str(headers.get('Description', ''))[:100]))

    async def _next_reply(self, replies, sub):
        """The next reply; ``asyncio.TimeoutError`` if JetStream is silent."""
        try:
            return await asyncio.wait_for(replies.get(), self._timeout)
        except asyncio.TimeoutError:
            pass
        # Silent, or only read late: a process on a loaded machine reads
        # its socket seconds behind. A round trip to the server reads all
        # it had sent before; silent if no reply came with it.
        await self._nc.flush(self._timeout)
        self._progress.heard = time.monotonic()
        if replies.empty() and not sub.pending_msgs:
            raise asyncio.TimeoutError()
        return await asyncio.wait_for(replies.get(), self._timeout)

    def _take(self, msg, headers, wanted):
        subject = headers.get('Nats-Subject', '')
        seq = _number(headers.get('Nats-Sequence'))
        if seq is None:
            raise _Failed(FAILED, 'a stored message without its sequence')
        self.last_seq = max(self.last_seq, seq)
        data = msg.data
        # Headers too: a publisher can store large ones on empty bodies.
        self.size += len(data) + sum(len(name) + len(value)
                                     for name, value in headers.items())
        self.events += _events(headers)
        if self.size > self._limit_bytes or self.events > self._limit_events:
            raise _Over()
        if subject not in wanted:
            return
        stored = {name: value for name, value in headers.items()
                  if name not in _ADDED}
        self.found.append(Stored(seq, subject, stored, data))


def _number(value) -> Optional[int]:
    if isinstance(value, str) and value.isdigit() and len(value) < 20:
        return int(value)
    return None


def _events(headers) -> int:
    """Events a message says it holds (``Df-Events``), 1 at least; the
    count is a peer's word, so it is only used for the limit, bounded.
    """
    value = headers.get(codec.HEADER_EVENTS)
    if isinstance(value, str):
        count = value.split(' ', 1)[0]
        if count.isdigit() and len(count) < 7:
            return min(max(int(count), 1), codec.MAX_BATCH_EVENTS)
    return 1
