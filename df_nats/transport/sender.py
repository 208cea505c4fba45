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

"""The sending side of the process's connection: outbox to the wire.

Publishing is a hand-off: the caller packs the event, appends it to an
outbox and, if no drain is pending, asks the loop to drain. The loop sends
whatever accumulated in one go, and only while connected: while the
connection is down events stay in the outbox, in order, up to
``reconnect_buffer_size`` bytes, and go out when it comes back.

What was written to a server that then died, and that it had not routed
yet, is lost for every subscriber. So the sender keeps its last messages
(``RESEND_MAX_MESSAGES``, ``RESEND_MAX_BYTES``, the last
``timeouts.RESEND_WINDOW`` before the connection was lost) and sends them
again, first, when the connection comes back: the very same body and
headers under their original numbers, plus ``Df-Resent`` (which digests
leave out), so subscribers that had them drop them as duplicates
(``sequence.SequenceTracker``).
"""

import asyncio
import collections
import time
from typing import Dict, List, NamedTuple, Optional, Tuple

from nats import errors as nats_errors

from df_nats.conf import timeouts
from df_nats import errors
from df_nats.loop import log
from df_nats.transport import messages
from df_nats.transport import nats_compat
from df_nats.transport import outbox
from df_nats.wire import codec
from df_nats.wire import sequence

LOG = log.get_logger(__name__)

# Bytes of a message kept for its header block (NATS/1.0, Df-Seq with a
# publisher id of up to 128 characters, Df-Events with a table label of up
# to 128 and the send time): an event may take max_payload less this.
HEADER_ROOM = 512
# A batch is at most this many bytes (or max_payload, if smaller): one
# drain step never writes more in one loop turn (see _drain).
BATCH_BYTES = 256 * 1024
# The recent messages kept to be sent again after a reconnect: at most
# this many, and this many bytes of bodies (sequence._WINDOW, the
# subscribers' duplicate window, must stay above the count).
RESEND_MAX_MESSAGES = 128
RESEND_MAX_BYTES = 8 * 1024 * 1024
# Added to a resent message's headers, and left out of its digest: the
# same message, which a subscriber far ahead drops as long delivered.
_RESENT = {sequence.HEADER_RESENT: '1'}


class _Message(NamedTuple):
    """A group of outbox entries numbered as one message of ``stream``."""

    stream: object
    n: int
    group: List
    body: bytes
    headers: Dict[str, str]
    size: int  # outbox bytes (see messages.message)


class Sender:
    """Queues events of the caller's world and sends them from the loop.

    Owned by a ``Connection`` (``conn.sender``): it reads the connection's
    nats-py client at each step, so a reconnect or a close is seen at
    once, and counts in the connection's ``stats``.
    """

    def __init__(self, conn, refusals):
        self._conn = conn
        self._bridge = conn.bridge
        self._refusals = refusals
        self.stats = conn.stats
        # Read once, not an oslo.config lookup on every publish.
        self._outbox = outbox.Outbox(conn.conf.reconnect_buffer_size,
                                     self._bridge.doorbell(),
                                     lambda: conn.connected,
                                     self._bridge.on_loop_thread)
        # Set from the server's max_payload after each (re)connect.
        self.max_event_size = 0
        self._batch_limit = 0
        self._marks = {}  # streams owing a mark (loop thread)
        # Messages written lately, oldest first, and their bodies' bytes:
        # (monotonic send time, subject, body, headers, body bytes). The
        # loss of the connection moves the last RESEND_WINDOW of them to
        # _resends, which the drain sends before anything else (loop
        # thread).
        self._recent = collections.deque(maxlen=RESEND_MAX_MESSAGES)
        self._recent_bytes = 0
        self._resends = collections.deque()
        self._clock = time.monotonic
        self._drain_requested = False
        self._drain_task = None
        self._linger = conn.conf.publish_linger
        self._linger_timer = None

    @property
    def outbox_load(self) -> Tuple[int, int]:
        """Events and bytes waiting to be sent (any thread; a moment's)."""
        box = self._outbox
        return len(box), box.waiting_bytes

    def read_max_payload(self, nc):
        """Size events and batches to ``nc``'s server (after a connect)."""
        # The server says how large a message may be; servers of a cluster
        # may differ, so it is read again after each reconnect.
        max_payload = nc.max_payload
        self.max_event_size = max_payload - HEADER_ROOM
        self._batch_limit = min(max_payload, BATCH_BYTES) - HEADER_ROOM

    def send(self, stream, body: bytes, label=outbox.RAW):
        """Queue one event (or raw body) of ``stream``; returns at once.

        ``label`` is the event's table, or ``outbox.RAW`` for a body that
        is not a df-nats event and goes out alone. While connected a full
        outbox only slows the caller down; while disconnected it raises
        ``PublishBufferFull`` and the stream skips a number. An event
        larger than the server's ``max_payload`` allows raises
        ``EventTooLarge``.
        """
        if len(body) > self.max_event_size:
            raise errors.EventTooLarge(
                'an event of %d bytes is larger than NATS accepts: the'
                ' server\'s max_payload is %d bytes, %d of which df-nats'
                ' keeps for headers' % (len(body),
                                        self.max_event_size + HEADER_ROOM,
                                        HEADER_ROOM))
        try:
            self._outbox.put(stream, body, label)
        except errors.PublishBufferFull:
            self.stats['rejected'] += 1
            stream.skip()
            # Marked once the link is back, even if nothing else is sent.
            self._bridge.loop.call_soon_threadsafe(self.queue_mark_on_loop,
                                                   stream)
            raise
        if not self._drain_requested:
            self._drain_requested = True
            self._bridge.loop.call_soon_threadsafe(
                self._linger_on_loop if self._linger
                else self.request_drain_on_loop)

    def queue_mark_on_loop(self, stream):
        """Send a mark for ``stream`` before further events (loop thread)."""
        assert self._bridge.on_loop_thread()
        self._marks[stream] = None
        self.request_drain_on_loop()

    def _linger_on_loop(self):
        # Loop thread: with publish_linger, what is queued waits that long
        # for what follows, to go out as one message. _drain_requested
        # stays up meanwhile: the events put until then wake nothing.
        assert self._bridge.on_loop_thread()
        if self._linger_timer is None:
            self._linger_timer = self._bridge.loop.call_later(
                self._linger, self._linger_over_on_loop)

    def _linger_over_on_loop(self):
        assert self._bridge.on_loop_thread()
        self._linger_timer = None
        self.request_drain_on_loop()

    def request_drain_on_loop(self):
        """Send what is queued, now or by a drain task (loop thread)."""
        assert self._bridge.on_loop_thread()
        # One drain task at a time keeps the outbox order.
        self._drain_requested = False
        if self._drain_task is None or self._drain_task.done():
            if not self._send_now_on_loop():
                self._drain_task = self._bridge.loop.create_task(
                    self._drain())

    def _draining_on_loop(self) -> bool:
        assert self._bridge.on_loop_thread()
        return self._drain_task is not None and not self._drain_task.done()

    def _send_now_on_loop(self) -> bool:
        """Write the next message to the socket in this turn (loop thread).

        At low rates the loop wakes up to one event: a drain task would
        start on the loop's next turn, and nats-py's flusher write on the
        turn after, each a wake-up of this thread that the caller's world
        waits through. Done only when nothing is queued before it (no
        mark owed, nothing in nats-py's buffer or the socket's); True
        when the outbox is empty after it, False when a drain task is
        needed (resends or marks owed go first).
        """
        assert self._bridge.on_loop_thread()
        nc = self._conn.nc
        writer = (None if nc is None or self._marks or self._resends
                  else nats_compat.idle_writer(nc))
        if writer is None:
            return False
        msg = self._next_message_on_loop()
        if msg is None:
            return True
        try:
            nats_compat.write_hpub(nc, writer, msg.stream.subject, msg.body,
                                   msg.headers)
        except Exception as exc:
            self._done_on_loop(msg, exc)
        else:
            self._done_on_loop(msg)
        return not self._outbox

    async def _drain(self):
        # Loop thread: everything queued since the last turn goes out,
        # consecutive events of one stream as one message (never waiting
        # for more). Numbers are taken here, in sending order.
        box = self._outbox
        while True:
            nc = self._conn.nc
            if nc is None or not nc.is_connected:
                return  # Connection._on_reconnected drains again
            # Resends, then marks (a mark names the last number used, so
            # it comes after the messages it covers), then the outbox.
            if self._resends and not await self._send_resends(nc):
                return
            if self._marks and not await self._send_marks(nc):
                return
            msg = self._next_message_on_loop()
            if msg is None:
                return
            try:
                await nc.publish(msg.stream.subject, msg.body,
                                 headers=msg.headers)
            except (nats_errors.ConnectionReconnectingError,
                    nats_errors.OutboundBufferLimitError):
                box.put_back_on_loop(msg.group)
                return
            except Exception as exc:
                self._done_on_loop(msg, exc)
            else:
                self._done_on_loop(msg)
            if not box:
                # Nothing to batch with: on the wire now rather than on
                # the loop's next turn.
                nats_compat.write_pending_now(nc)
            # Let the loop write this batch and read what came in before
            # the next one: a drain that wrote megabytes in one turn got
            # its own subscriptions cut off as slow consumers.
            await asyncio.sleep(0)

    def _next_message_on_loop(self) -> Optional['_Message']:
        """The next group of the outbox as a numbered message (loop
        thread), or None when the outbox is empty.

        The number is taken, not used: a message put back into the
        outbox is numbered again when taken again.
        """
        assert self._bridge.on_loop_thread()
        # Less 3 bytes: the array header of a batch.
        group = self._outbox.take_on_loop(self._batch_limit - 3,
                                          codec.MAX_BATCH_EVENTS)
        if group is None:
            return None
        stream = group[0][0]
        n = stream.next_number()
        self._refusals.remember_subject_on_loop(stream.subject)
        body, headers, size = messages.message(stream, n, group)
        return _Message(stream, n, group, body, headers, size)

    def _done_on_loop(self, msg: '_Message', exc: Optional[Exception] = None):
        """Count ``msg`` as written, or as dropped by ``exc`` (loop thread).

        Its number is used either way: after a failed write subscribers
        see the gap and resync.
        """
        assert self._bridge.on_loop_thread()
        count = len(msg.group)
        if exc is None:
            self.stats['published'] += count
            self.stats['messages'] += 1
            if msg.stream.resend:
                self._keep_recent(msg.stream.subject, msg.body, msg.headers)
        else:
            self.stats['publish_errors'] += count
            self._conn.service.note_error_on_loop(exc)
            LOG.error('df-nats: dropping %d event(s) for %s: %s: %s',
                      count, msg.stream.subject, type(exc).__name__, exc)
        msg.stream.n = msg.n
        self._outbox.release_on_loop(msg.size)

    def _keep_recent(self, subject: str, body: bytes,
                     headers: Dict[str, str]):
        """Keep a message written now, to send it again if the connection
        is lost soon. Bounded by count and bytes here (the age is looked
        at when the connection is lost). Loop thread: only
        ``_done_on_loop`` calls it, once per message (no assert here).
        """
        recent = self._recent
        if len(recent) == RESEND_MAX_MESSAGES:
            # The deque's maxlen drops the oldest on the append.
            self._recent_bytes -= recent[0][4]
        size = len(body)
        recent.append((self._clock(), subject, body, headers, size))
        self._recent_bytes += size
        if self._recent_bytes > RESEND_MAX_BYTES:
            while recent and self._recent_bytes > RESEND_MAX_BYTES:
                self._recent_bytes -= recent.popleft()[4]

    def connection_lost_on_loop(self):
        """The connection was lost (loop thread): what was written in the
        last ``RESEND_WINDOW`` before now goes again first once it is
        back, since the server may have died before routing it.
        """
        assert self._bridge.on_loop_thread()
        oldest = self._clock() - timeouts.RESEND_WINDOW
        lost = [entry for entry in self._recent if entry[0] >= oldest]
        self._recent.clear()
        self._recent_bytes = 0
        nc = self._conn.nc
        # Ahead of what nats-py still holds from before the loss (newer
        # messages among them), which it writes first thing on the next
        # connection. nats-py then refuses other publishes made while
        # disconnected sooner (its pending_size bounds what it holds);
        # a longer outage fills it anyway.
        if lost and nc is not None and nats_compat.queue_first(
                nc, [(subject, body, dict(headers, **_RESENT))
                     for _, subject, body, headers, _ in lost]):
            self.stats['resent'] += len(lost)
            return
        # Otherwise the drain sends them after the reconnect, before
        # anything else: nothing is written while disconnected, so
        # _resends holds at most one ring's worth, oldest first.
        self._resends.extend(lost)

    async def _send_resends(self, nc) -> bool:
        """Send the messages kept from before the loss, as they were, with
        ``Df-Resent`` (loop thread): subscribers that had one drop it as a
        duplicate.
        False when the connection went again (the rest waits for it).
        """
        resends = self._resends
        while resends:
            _, subject, body, headers, _ = resends[0]
            try:
                await nc.publish(subject, body, headers=dict(
                    headers, **_RESENT))
            except (nats_errors.ConnectionReconnectingError,
                    nats_errors.OutboundBufferLimitError):
                return False
            except Exception as exc:
                # A gap then, as for any failed publish.
                LOG.warning('df-nats: message for %s not sent again: %s:'
                            ' %s', subject, type(exc).__name__, exc)
            else:
                self.stats['resent'] += 1
            resends.popleft()
            if not resends:
                nats_compat.write_pending_now(nc)
            await asyncio.sleep(0)
        return True

    async def _send_marks(self, nc) -> bool:
        marks, self._marks = self._marks, {}
        for stream in marks:
            try:
                await nc.publish(stream.subject, b'',
                                 headers=stream.mark_headers())
            except Exception as exc:
                self._marks.update(marks)  # again on the next reconnect
                LOG.warning('df-nats: mark for %s not sent: %s: %s',
                            stream.subject, type(exc).__name__, exc)
                return False
            self.stats['marks'] += 1
        return True

    def flush(self, timeout: float) -> bool:
        """Wait until queued events reached the server; False on timeout."""
        if self._conn.nc is None:
            return not self._outbox
        try:
            self._bridge.run(self._flush(timeout),
                             timeout=timeout + timeouts.GRACE)
            return True
        except Exception as exc:
            LOG.warning('df-nats: flush gave up with %d events queued: %s',
                        len(self._outbox), exc)
            return False

    async def _flush(self, timeout):
        deadline = time.monotonic() + timeout
        self.request_drain_on_loop()
        while self._outbox or self._resends or self._draining_on_loop():
            if time.monotonic() > deadline:
                raise TimeoutError('events still queued')
            if self._draining_on_loop():
                await self._drain_task
            if self._outbox or self._resends:
                await self._wait_connected(deadline)
                self.request_drain_on_loop()
        await self._conn.nc.flush(
            timeout=max(deadline - time.monotonic(), 0.1))

    async def _wait_connected(self, deadline):
        while not self._conn.connected:
            if time.monotonic() > deadline:
                raise TimeoutError('not connected')
            await asyncio.sleep(0.05)
