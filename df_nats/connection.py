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

"""The one NATS connection of a process, shared by every driver instance.

Dragonflow loads the driver twice per process (publisher, subscriber) and
neutron-server runs many processes; one connection per process keeps the
server's connection count at one per worker. The connection lives on the
bridge's loop thread; this module is the caller-side handle to it.

Publishing is a hand-off: the caller packs the event, appends it to an
outbox and, if no drain is pending, asks the loop to drain. The loop sends
whatever accumulated in one go, and only while connected: while the
connection is down events stay in the outbox, in order, up to
``reconnect_buffer_size`` bytes, and go out when it comes back.
"""

import asyncio
import collections
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

import nats
from nats import errors as nats_errors

from df_nats import client_options
from df_nats import codec
from df_nats import errors
from df_nats import loop_logging
from df_nats import nats_client
from df_nats import options
from df_nats import outbox as df_outbox
from df_nats import outgoing
from df_nats import service as df_service
from df_nats import timeouts

LOG = loop_logging.get_logger(__name__)

# Where callers of this module have caught them so far.
ConnectError = errors.ConnectError
PublishBufferFull = errors.PublishBufferFull
EventTooLarge = errors.EventTooLarge

SubscribePermissionDenied = errors.SubscribePermissionDenied
PlaintextRefused = nats_client.PlaintextRefused


# Bytes of a message kept for its header block (NATS/1.0, Df-Seq with a
# publisher id of up to 128 characters, Df-Events with a table label of up
# to 128): an event may take max_payload less this.
HEADER_ROOM = 512
# A batch is at most this many bytes (or max_payload, if smaller): one
# drain step never writes more in one loop turn (see _drain).
BATCH_BYTES = 256 * 1024
# A refused publish is logged as an ERROR at most this often per subject
# (every refusal is counted in stats['permission_denied']).
_DENIED_LOG_INTERVAL = 10.0
# Subjects remembered to name a refused publish in its own letter case
# (nats-py lower-cases the server's error lines).
_MAX_SENT_SUBJECTS = 4096


class Connection:
    """Caller-side handle to this process's NATS connection.

    ``acquire()``/``release()`` count the publishers and subscribers using
    it; the first connects, the last closes. Listeners registered with
    ``add_listener`` hear ``reconnected`` on the loop thread. One per
    process: see ``process_context``.
    """

    def __init__(self, conf, bridge):
        self.conf = options.validate(conf)
        self.bridge = bridge
        self.pid = self.bridge.pid
        self.stats = collections.Counter()
        self._nc: Optional[nats.NATS] = None
        self._users = 0
        self._lock = threading.Lock()
        # Read once, not an oslo.config lookup on every publish.
        self._outbox = df_outbox.Outbox(self.conf.reconnect_buffer_size,
                                        self.bridge.doorbell(),
                                        lambda: self.connected)
        # Set from the server's max_payload after each (re)connect.
        self.max_event_size = 0
        self._batch_limit = 0
        self._marks = {}  # streams owing a mark (loop thread)
        self._drain_requested = False
        self._drain_task = None
        self._listeners: List[Callable[[], None]] = []
        self._last_error: Optional[BaseException] = None
        # The error that explains a failed first connect best (a refused
        # credential or a server without TLS), whatever came after it.
        self._connect_cause: Optional[BaseException] = None
        # Permission refusals (loop thread): subscriptions refused since
        # they were asked for, waiters for refusals, log pacing.
        self._refused_subscriptions = set()
        self._denied_waiters: List[Tuple[Callable[[str, str], bool],
                                         asyncio.Future]] = []
        self._denied_logged: Dict[str, float] = {}
        self._sent_subjects: Dict[str, str] = {}
        self._closing = False
        self._pacer = client_options.ReconnectPacer(
            self.conf.reconnect_time_wait, self.conf.reconnect_time_wait_max,
            self.conf.reconnect_jitter)
        # This process as an instance of the NATS service df-nats:
        # registered after each connect, stopped at close.
        self.service = df_service.ProcessService(
            self, self.conf.service_endpoint)

    # -- lifecycle (caller's world) -------------------------------------

    def acquire(self):
        """Count one more user; connect if this is the first."""
        with self._lock:
            if self._nc is None:
                self._connect()
            self._users += 1

    def release(self):
        """Count one user less; flush and close after the last."""
        with self._lock:
            self._users -= 1
            if self._users > 0 or self._nc is None:
                return
            # A publisher's close() flushed already; skip the wait on a
            # connection that is down with nothing queued.
            if ((self._outbox or self.connected)
                    and not self.flush(self.conf.close_timeout)
                    and self._outbox):
                # Never a silent drop: say how many events did not go out.
                self.stats['unsent_at_close'] += len(self._outbox)
                LOG.error('df-nats: closing with %d events not sent'
                          ' ([df_nats] close_timeout = %s)',
                          len(self._outbox), self.conf.close_timeout)
            nc, self._nc = self._nc, None
            self._closing = True
        # Before the close, in the loop's order of calls.
        self.bridge.call_soon(self.service.stop)
        try:
            self.bridge.run(nc.close(), timeout=self.conf.close_timeout)
        except Exception as exc:
            LOG.warning('df-nats: closing the NATS connection: %s', exc)

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    @property
    def outbox_load(self) -> Tuple[int, int]:
        """Events and bytes waiting to be sent (any thread; a moment's)."""
        outbox = self._outbox
        return len(outbox), outbox.waiting_bytes

    @property
    def connected_url(self) -> Optional[str]:
        """The server URL in use now (password redacted), or None."""
        nc = self._nc
        url = nc.connected_url if nc is not None else None
        return options.redact_url(url.geturl()) if url else None

    def _connect(self):
        wait = self.conf.initial_connect_wait
        servers = ', '.join(options.redact_url(u) for u in self.conf.servers)
        LOG.info('df-nats: connecting to %s', servers)
        nc = nats_client.GuardedClient(
            require_tls=options.tls_wanted(self.conf))
        self._last_error = self._connect_cause = None
        try:
            self.bridge.run(nc.connect(
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
                closed_cb=self._on_closed,
                reconnect_to_server_handler=self._pacer,
                **client_options.connect_options(self.conf)), timeout=wait)
        except Exception as exc:
            raise ConnectError(
                'cannot connect to NATS at %s within %s s'
                ' ([df_nats] initial_connect_wait): %s' % (
                    servers, wait, self._explain(
                        self._connect_cause or self._last_error or exc))
            ) from None
        self._nc = nc
        self._read_max_payload(nc)
        self._pacer.last_netloc = nc.connected_url.netloc
        LOG.info('df-nats: connected to %s',
                 options.redact_url(nc.connected_url.geturl()))
        self.bridge.call_soon(self.service.start, nc)

    def _explain(self, exc) -> str:
        """Why a connect failed, in words an operator can act on."""
        if isinstance(exc, PlaintextRefused):
            return str(exc)
        if nats_client.is_authorization_error(exc):
            return ('the server refused the credentials (Authorization'
                    ' Violation): check [df_nats] %s' % self._auth_option())
        if isinstance(exc, asyncio.TimeoutError) and not str(exc):
            hint = ''
            if options.tls_wanted(self.conf) and (
                    not self.conf.tls_handshake_first):
                hint = (' If the server is configured with TLS'
                        ' handshake_first, set [df_nats]'
                        ' tls_handshake_first = true.')
            return ('TimeoutError: no answer from the server within'
                    ' connect_timeout (%s s).%s' % (
                        self.conf.connect_timeout, hint))
        return '%s: %s' % (type(exc).__name__, exc)

    def _auth_option(self) -> str:
        conf = self.conf
        for name in ('creds_file', 'nkey_seed_file', 'token'):
            if conf[name]:
                return name
        return 'user and password' if conf.user else (
            'user/password, token, nkey_seed_file or creds_file (none is'
            ' set)')

    # -- callbacks (loop thread) -------------------------------------------

    async def _on_error(self, exc):
        if self.service.note_error(exc):
            return  # the service's own, logged once there
        self._last_error = exc
        self.stats['errors'] += 1
        denied = nats_client.permission_violation(exc)
        if denied is not None:
            self._on_permission_denied(*denied)
            return
        if isinstance(exc, PlaintextRefused) or (
                nats_client.is_authorization_error(exc)):
            if self._connect_cause is None:
                self._connect_cause = exc
            LOG.error('df-nats: %s', self._explain(exc))
            return
        LOG.warning('df-nats: NATS error: %s: %s', type(exc).__name__, exc)

    def _on_permission_denied(self, kind: str, subject: str):
        # nats-py lower-cases the server's error line: name the subject
        # as we know it when we can.
        if kind == 'subscribe':
            if len(self._refused_subscriptions) > _MAX_SENT_SUBJECTS:
                self._refused_subscriptions.clear()
            self._refused_subscriptions.add(subject)
        if subject.startswith(('$js.', '$kv.')):
            subject = nats_client.subject_as_sent(
                subject, self.conf.registry_bucket)
        else:
            subject = self._sent_subjects.get(subject, subject)
        self.stats['permission_denied'] += 1
        for predicate, future in list(self._denied_waiters):
            if not future.done() and predicate(kind, subject):
                future.set_result((kind, subject))
        now = time.monotonic()
        key = '%s %s' % (kind, subject.lower())
        if now - self._denied_logged.get(key, -_DENIED_LOG_INTERVAL) < (
                _DENIED_LOG_INTERVAL):
            return
        if len(self._denied_logged) > _MAX_SENT_SUBJECTS:
            self._denied_logged.clear()
        self._denied_logged[key] = now
        LOG.error(
            'df-nats: permission denied: the NATS server refused to let'
            ' this user %s to %s%s (%d refusals so far; see the user\'s'
            ' permissions in the server configuration)',
            kind, subject,
            ': what was sent there is lost' if kind == 'publish' else '',
            self.stats['permission_denied'])

    def permission_denied(self, predicate: Callable[[str, str], bool]
                          ) -> asyncio.Future:
        """A future for the next refusal ``predicate(kind, subject)`` takes.

        Loop thread. Its result is ``(kind, subject)``, kind 'publish' or
        'subscribe'; the subject may be lower-cased. Cancel it when done.
        """
        future = self.bridge.loop.create_future()
        entry = (predicate, future)
        self._denied_waiters.append(entry)
        future.add_done_callback(lambda _: self._denied_waiters.remove(entry))
        return future

    async def _on_disconnected(self):
        if self._closing:
            return
        self.stats['disconnects'] += 1
        LOG.warning('df-nats: disconnected from NATS')

    async def _on_reconnected(self):
        self.stats['reconnects'] += 1
        url = self._nc.connected_url if self._nc else None
        if url:
            self._pacer.last_netloc = url.netloc
        if self._nc is not None:
            self._read_max_payload(self._nc)
        LOG.warning('df-nats: reconnected to %s',
                    options.redact_url(url.geturl()) if url else '?')
        for listener in list(self._listeners):
            listener()
        self._request_drain()

    async def _on_closed(self):
        LOG.info('df-nats: NATS connection closed')
        self._closing = False

    def add_listener(self, listener: Callable[[], None]):
        """Call ``listener()`` on the loop thread after each reconnect.

        A listener may ``queue_mark`` there: marks go out before the
        events still queued.
        """
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[], None]):
        try:
            self._listeners.remove(listener)
        except ValueError:
            pass

    def jetstream(self, timeout: float):
        """A JetStream context on this connection (use on the loop)."""
        return self._nc.jetstream(timeout=timeout)

    # -- publishing --------------------------------------------------------

    def _read_max_payload(self, nc):
        # The server says how large a message may be; servers of a cluster
        # may differ, so it is read again after each reconnect.
        max_payload = nc.max_payload
        self.max_event_size = max_payload - HEADER_ROOM
        self._batch_limit = min(max_payload, BATCH_BYTES) - HEADER_ROOM

    def send(self, stream, body: bytes, label=df_outbox.RAW):
        """Queue one event (or raw body) of ``stream``; returns at once.

        ``label`` is the event's table, or ``outbox.RAW`` for a body that
        is not a df-nats event and goes out alone. While connected a full
        outbox only slows the caller down; while disconnected it raises
        ``PublishBufferFull`` and the stream skips a number. An event
        larger than the server's ``max_payload`` allows raises
        ``EventTooLarge``.
        """
        if len(body) > self.max_event_size:
            raise EventTooLarge(
                'an event of %d bytes is larger than NATS accepts: the'
                ' server\'s max_payload is %d bytes, %d of which df-nats'
                ' keeps for headers' % (len(body),
                                        self.max_event_size + HEADER_ROOM,
                                        HEADER_ROOM))
        try:
            self._outbox.put(stream, body, label)
        except PublishBufferFull:
            self.stats['rejected'] += 1
            stream.skip()
            # Marked once the link is back, even if nothing else is sent.
            self.bridge.loop.call_soon_threadsafe(self.queue_mark, stream)
            raise
        if not self._drain_requested:
            self._drain_requested = True
            self.bridge.loop.call_soon_threadsafe(self._request_drain)

    def queue_mark(self, stream):
        """Send a mark for ``stream`` before further events (loop thread)."""
        self._marks[stream] = None
        self._request_drain()

    def _request_drain(self):
        # Loop thread. One drain task at a time keeps the outbox order.
        self._drain_requested = False
        if self._drain_task is None or self._drain_task.done():
            if not self._send_now():
                self._drain_task = self.bridge.loop.create_task(
                    self._drain())

    def _draining(self) -> bool:
        return self._drain_task is not None and not self._drain_task.done()

    def _send_now(self) -> bool:
        """Write the next message to the socket in this turn (loop thread).

        At low rates the loop wakes up to one event: a drain task would
        start on the loop's next turn, and nats-py's flusher write on the
        turn after, each a wake-up of this thread that the caller's world
        waits through. Done only when nothing is queued before it (no
        mark owed, nothing in nats-py's buffer or the socket's); True
        when the outbox is empty after it, False when a drain task is
        needed.
        """
        nc = self._nc
        writer = (None if nc is None or self._marks
                  else outgoing.idle_writer(nc))
        if writer is None:
            return False
        outbox = self._outbox
        group = outbox.take(self._batch_limit - 3, codec.MAX_BATCH_EVENTS)
        if group is None:
            return True
        stream = group[0][0]
        n = stream.next_number()
        self._remember_subject(stream.subject)
        count = len(group)
        body, headers, size = outgoing.message(stream, n, group)
        try:
            outgoing.write_message(nc, writer, stream.subject, body,
                                   headers)
        except Exception as exc:
            # As in _drain: the number is used, subscribers see the gap.
            self.stats['publish_errors'] += count
            self.service.note_error(exc)
            LOG.error('df-nats: dropping %d event(s) for %s: %s: %s',
                      count, stream.subject, type(exc).__name__, exc)
        else:
            self.stats['published'] += count
            self.stats['messages'] += 1
        stream.n = n
        outbox.release(size)
        return not outbox

    async def _drain(self):
        # Loop thread: everything queued since the last turn goes out,
        # consecutive events of one stream as one message (never waiting
        # for more). Numbers are taken here, in sending order.
        outbox = self._outbox
        while True:
            nc = self._nc
            if nc is None or not nc.is_connected:
                return  # _on_reconnected drains again
            if self._marks and not await self._send_marks(nc):
                return
            # Less 3 bytes: the array header of a batch.
            group = outbox.take(self._batch_limit - 3,
                                codec.MAX_BATCH_EVENTS)
            if group is None:
                return
            stream = group[0][0]
            n = stream.next_number()
            self._remember_subject(stream.subject)
            count = len(group)
            body, headers, size = outgoing.message(stream, n, group)
            try:
                await nc.publish(stream.subject, body, headers=headers)
            except (nats_errors.ConnectionReconnectingError,
                    nats_errors.OutboundBufferLimitError):
                outbox.put_back(group)
                return
            except Exception as exc:
                # The number is used: subscribers see the gap and resync.
                self.stats['publish_errors'] += count
                self.service.note_error(exc)
                LOG.error('df-nats: dropping %d event(s) for %s: %s: %s',
                          count, stream.subject, type(exc).__name__, exc)
            stream.n = n
            outbox.release(size)
            self.stats['published'] += count
            self.stats['messages'] += 1
            if not outbox:
                # Nothing to batch with: on the wire now rather than on
                # the loop's next turn.
                outgoing.write_pending_now(nc)
            # Let the loop write this batch and read what came in before
            # the next one: a drain that wrote megabytes in one turn got
            # its own subscriptions cut off as slow consumers.
            await asyncio.sleep(0)

    def _remember_subject(self, subject: str):
        # Loop thread: to name a refused subject in its own letter case.
        lower = subject.lower()
        if lower not in self._sent_subjects:
            if len(self._sent_subjects) >= _MAX_SENT_SUBJECTS:
                self._sent_subjects.clear()
            self._sent_subjects[lower] = subject

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
        if self._nc is None:
            return not self._outbox
        try:
            self.bridge.run(self._flush(timeout),
                            timeout=timeout + timeouts.GRACE)
            return True
        except Exception as exc:
            LOG.warning('df-nats: flush gave up with %d events queued: %s',
                        len(self._outbox), exc)
            return False

    async def _flush(self, timeout):
        deadline = time.monotonic() + timeout
        self._request_drain()
        while self._outbox or self._draining():
            if time.monotonic() > deadline:
                raise TimeoutError('events still queued')
            if self._draining():
                await self._drain_task
            if self._outbox:
                await self._wait_connected(deadline)
                self._request_drain()
        await self._nc.flush(timeout=max(deadline - time.monotonic(), 0.1))

    async def _wait_connected(self, deadline):
        while not self.connected:
            if time.monotonic() > deadline:
                raise TimeoutError('not connected')
            await asyncio.sleep(0.05)

    # -- requests ------------------------------------------------------------

    def gather(self, subject: str, wait: float, max_replies: int,
               max_bytes: int) -> List[bytes]:
        """Publish an empty request; the replies that come within ``wait``.

        For requests every instance of a service answers (the NATS micro
        protocol's PING, INFO and STATS): stops early at ``max_replies``
        replies or ``max_bytes`` bytes of them.
        """
        return self.bridge.run(
            self._gather(subject, wait, max_replies, max_bytes),
            timeout=wait + timeouts.CONTROL)

    async def _gather(self, subject, wait, max_replies, max_bytes):
        replies = []
        size = 0
        enough = asyncio.Event()

        async def on_reply(msg):
            nonlocal size
            if enough.is_set():
                return
            replies.append(msg.data)
            size += len(msg.data)
            if len(replies) >= max_replies or size >= max_bytes:
                enough.set()

        nc = self._nc
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox, cb=on_reply)
        try:
            await nc.publish(subject, b'', reply=inbox)
            try:
                await asyncio.wait_for(enough.wait(), wait)
            except asyncio.TimeoutError:
                pass
        finally:
            await sub.unsubscribe()
        return replies

    # -- subscribing -------------------------------------------------------

    def subscribe(self, subject: str, handler, queue: str = ''):
        """Subscribe ``handler(msg)`` (a coroutine run on the loop).

        With ``queue``, as a member of that queue group: each message goes
        to one member only.
        """
        return self.bridge.run(self._subscribe(subject, handler, queue),
                               timeout=timeouts.CONTROL)

    async def _subscribe(self, subject, handler, queue):
        # The server answers a refused SUB with -ERR and keeps the
        # connection; nats-py hands that to _on_error before the PONG
        # that _confirm waits for, so the refusal is known here.
        lower = subject.lower()
        self._refused_subscriptions.discard(lower)
        self._remember_subject(subject)
        sub = await self._nc.subscribe(subject, queue=queue, cb=handler)
        await self._confirm()
        if lower in self._refused_subscriptions:
            self._refused_subscriptions.discard(lower)
            try:
                await sub.unsubscribe()
            except nats_errors.Error:
                pass
            raise SubscribePermissionDenied(subject)
        return sub

    def unsubscribe(self, sub):
        """Stop a subscription made by ``subscribe``."""
        self.bridge.run(self._unsubscribe(sub), timeout=timeouts.CONTROL)

    async def _unsubscribe(self, sub):
        try:
            await sub.unsubscribe()
        except nats_errors.BadSubscriptionError:
            return  # the connection was closed already
        await self._confirm()

    async def _confirm(self):
        # A PING/PONG round trip: the server has seen what we sent before.
        # nats-py writes PING straight to the socket but leaves SUB/UNSUB
        # in its pending list for its flusher task: written first here,
        # or the PONG could come back before the server saw (or refused)
        # the subscription.
        if self._nc.is_connected:
            try:
                await self._nc._flush_pending(force_flush=True)
                await self._nc.flush(timeout=timeouts.CONFIRM)
            except Exception as exc:
                LOG.warning('df-nats: no PONG: %s', exc)
