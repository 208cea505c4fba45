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
Callers send through ``conn.sender`` (``sender.Sender``: ``send``,
``flush``) and wait for refusals through ``conn.refusals``
(``refusals.Refusals``).
"""

import asyncio
import collections
import threading
import time
from typing import Callable, List, Optional

import nats
from nats import errors as nats_errors

from df_nats.conf import options
from df_nats.conf import timeouts
from df_nats import errors
from df_nats.loop import log
from df_nats.transport import client
from df_nats.transport import connect_args
from df_nats.transport import nats_compat
from df_nats.transport import refusals
from df_nats.transport import sender
from df_nats.transport import service

LOG = log.get_logger(__name__)


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
        self.refusals = refusals.Refusals(self.conf, bridge, self.stats)
        self.sender = sender.Sender(self, self.refusals)
        self._listeners: List[Callable[[], None]] = []
        self._slow_listeners: List[Callable[[], None]] = []
        self._lost_listeners: List[Callable[[], None]] = []
        # When the connection was last lost (time.time_ns(), 0: never):
        # what was published since may be lost for this process.
        self.disconnected_ns = 0
        self._last_error: Optional[BaseException] = None
        # The error that explains a failed first connect best (a refused
        # credential or a server without TLS), whatever came after it.
        self._connect_cause: Optional[BaseException] = None
        self._closing = False
        self._pacer = connect_args.ReconnectPacer(
            self.conf.reconnect_time_wait, self.conf.reconnect_time_wait_max,
            self.conf.reconnect_jitter)
        # This process as an instance of the NATS service df-nats:
        # registered after each connect, stopped at close.
        self.service = service.ProcessService(
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
            unsent = self.sender.outbox_load[0]
            if ((unsent or self.connected)
                    and not self.sender.flush(self.conf.close_timeout)):
                unsent = self.sender.outbox_load[0]
                if unsent:
                    # Never a silent drop: say how many did not go out.
                    self.stats['unsent_at_close'] += unsent
                    LOG.error('df-nats: closing with %d events not sent'
                              ' ([df_nats] close_timeout = %s)',
                              unsent, self.conf.close_timeout)
            nc, self._nc = self._nc, None
            self._closing = True
        # Before the close, in the loop's order of calls.
        self.bridge.call_soon(self.service.stop_on_loop)
        try:
            self.bridge.run(nc.close(), timeout=self.conf.close_timeout)
        except Exception as exc:
            LOG.warning('df-nats: closing the NATS connection: %s', exc)

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    @property
    def nc(self) -> Optional[nats.NATS]:
        """The nats-py client, None before the connect and after close."""
        return self._nc

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
        nc = client.GuardedClient(
            require_tls=options.tls_wanted(self.conf))
        self._last_error = self._connect_cause = None
        try:
            self.bridge.run(nc.connect(
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
                closed_cb=self._on_closed,
                reconnect_to_server_handler=self._pacer,
                **connect_args.connect_options(self.conf)), timeout=wait)
        except Exception as exc:
            cause = self._connect_cause or self._last_error or exc
            raise errors.ConnectError(
                'cannot connect to NATS at %s within %s s'
                ' ([df_nats] initial_connect_wait): %s' % (
                    servers, wait, refusals.explain(self.conf, cause))
            ) from None
        self._nc = nc
        self.sender.read_max_payload(nc)
        self._pacer.last_netloc = nc.connected_url.netloc
        LOG.info('df-nats: connected to %s',
                 options.redact_url(nc.connected_url.geturl()))
        self.bridge.call_soon(self.service.start_on_loop, nc)

    # -- callbacks (loop thread) -------------------------------------------

    async def _on_error(self, exc):
        if self.service.note_error_on_loop(exc):
            return  # the service's own, logged once there
        self._last_error = exc
        self.stats['errors'] += 1
        if isinstance(exc, nats_errors.SlowConsumerError):
            # nats-py dropped a message of a subscription that fell
            # behind: subscribers catch up (one call per drop).
            self.stats['slow_consumer_drops'] += 1
            for listener in list(self._slow_listeners):
                listener()
            return
        denied = client.permission_violation(exc)
        if denied is not None:
            self.refusals.note_on_loop(*denied)
            return
        if isinstance(exc, client.PlaintextRefused) or (
                client.is_authorization_error(exc)):
            if self._connect_cause is None:
                self._connect_cause = exc
            LOG.error('df-nats: %s', refusals.explain(self.conf, exc))
            return
        LOG.warning('df-nats: NATS error: %s: %s', type(exc).__name__, exc)

    async def _on_disconnected(self):
        if self._closing:
            return
        self.stats['disconnects'] += 1
        self.disconnected_ns = time.time_ns()
        # Before any reconnect: what the lost server may have swallowed
        # goes again first (sender.Sender, "resends").
        self.sender.connection_lost_on_loop()
        LOG.warning('df-nats: disconnected from NATS')
        for listener in list(self._lost_listeners):
            listener()

    async def _on_reconnected(self):
        self.stats['reconnects'] += 1
        url = self._nc.connected_url if self._nc else None
        if url:
            self._pacer.last_netloc = url.netloc
        if self._nc is not None:
            self.sender.read_max_payload(self._nc)
        LOG.warning('df-nats: reconnected to %s',
                    options.redact_url(url.geturl()) if url else '?')
        for listener in list(self._listeners):
            listener()
        self.sender.request_drain_on_loop()

    async def _on_closed(self):
        LOG.info('df-nats: NATS connection closed')
        self._closing = False

    def add_listener(self, listener: Callable[[], None]):
        """Call ``listener()`` on the loop thread after each reconnect.

        A listener may ``queue_mark_on_loop`` there: marks go out before
        the events still queued.
        """
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[], None]):
        try:
            self._listeners.remove(listener)
        except ValueError:
            pass
        for listeners in (self._slow_listeners, self._lost_listeners):
            try:
                listeners.remove(listener)
            except ValueError:
                pass

    def add_slow_consumer_listener(self, listener: Callable[[], None]):
        """Call ``listener()`` on the loop thread when nats-py dropped a
        received message (a subscription's pending limit, nats-py's
        ``SlowConsumerError``). Removed by ``remove_listener``.
        """
        self._slow_listeners.append(listener)

    def add_disconnect_listener(self, listener: Callable[[], None]):
        """Call ``listener()`` on the loop thread when the connection is
        lost, before nats-py reconnects. Removed by ``remove_listener``.
        """
        self._lost_listeners.append(listener)

    def jetstream_on_loop(self, timeout: float):
        """A JetStream context on this connection (use on the loop)."""
        assert self.bridge.on_loop_thread()
        return self._nc.jetstream(timeout=timeout)

    # -- requests ------------------------------------------------------------

    def gather(self, subject: str, wait: float, max_replies: int,
               max_bytes: int, payload: bytes = b'',
               until_quiet: Optional[float] = None) -> List[bytes]:
        """Publish a request; the replies that come within ``wait``.

        For requests every instance of a service answers (the NATS micro
        protocol's PING, INFO and STATS, the server's ``$SYS`` requests):
        stops early at ``max_replies`` replies or ``max_bytes`` bytes of
        them, and with ``until_quiet``, once that many seconds pass
        without a reply after the first (a few servers answer at once).
        """
        return self.bridge.run(
            self._gather(subject, wait, max_replies, max_bytes, payload,
                         until_quiet),
            timeout=wait + timeouts.CONTROL)

    async def _gather(self, subject, wait, max_replies, max_bytes,
                      payload=b'', until_quiet=None):
        replies = []
        size = 0
        enough = asyncio.Event()
        arrived = asyncio.Event()

        async def on_reply(msg):
            nonlocal size
            if enough.is_set():
                return
            replies.append(msg.data)
            size += len(msg.data)
            arrived.set()
            if len(replies) >= max_replies or size >= max_bytes:
                enough.set()

        async def quiet():
            # Once replies came, until none came for until_quiet.
            await arrived.wait()
            while True:
                arrived.clear()
                try:
                    await asyncio.wait_for(arrived.wait(), until_quiet)
                except asyncio.TimeoutError:
                    enough.set()
                    return

        nc = self._nc
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox, cb=on_reply)
        watcher = (asyncio.get_running_loop().create_task(quiet())
                   if until_quiet else None)
        try:
            await nc.publish(subject, payload, reply=inbox)
            try:
                await asyncio.wait_for(enough.wait(), wait)
            except asyncio.TimeoutError:
                pass
        finally:
            if watcher is not None:
                watcher.cancel()
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
        refused = self.refusals.refused_subscriptions
        refused.discard(lower)
        self.refusals.remember_subject_on_loop(subject)
        sub = await self._nc.subscribe(subject, queue=queue, cb=handler)
        await self._confirm()
        if lower in refused:
            refused.discard(lower)
            try:
                await sub.unsubscribe()
            except nats_errors.Error:
                pass
            raise errors.SubscribePermissionDenied(subject)
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
        # nats-py's queued SUB/UNSUB are written first, or the PONG could
        # come back before the server saw (or refused) the subscription.
        if self._nc.is_connected:
            try:
                await nats_compat.flush_pending(self._nc)
                await self._nc.flush(timeout=timeouts.CONFIRM)
            except Exception as exc:
                LOG.warning('df-nats: no PONG: %s', exc)
