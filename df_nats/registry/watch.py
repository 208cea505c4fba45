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

"""Reading the publisher registration: list live publishers, watch them change.

A watch is an ordered JetStream consumer on the registration bucket that first
delivers the last record of every key (the snapshot), then every write.
Heartbeats only move ``last_activity_timestamp`` and are not reported as
changes. A publisher leaves when its record is deleted (``close()``) or
expires; the expiry is seen through the limit marker the server writes, or,
on a server without limit markers, by our own clock.

Ordered consumers can stall after a server restart (nats.py issue 510), so
the consumer is created anew after every reconnect, and the new snapshot is
compared with what we knew: what disappeared meanwhile leaves as ``gone``.
"""

import asyncio
import collections
import json
import time
from typing import Callable, Dict, List, Optional

from nats.js import api as js_api

from df_nats.conf import timeouts
from df_nats.loop import log
from df_nats.registry import bucket
from df_nats.registry import registration

LOG = log.get_logger(__name__)

JOIN = 'join'
CHANGE = 'change'
LEAVE = 'leave'

# What a leave's record says in its 'left' field.
_LEAVE_REASONS = {
    ('KV-Operation', 'DEL'): 'closed',
    ('KV-Operation', 'PURGE'): 'purged',
    ('Nats-Marker-Reason', 'MaxAge'): 'expired',
    ('Nats-Marker-Reason', 'Purge'): 'purged',
    ('Nats-Marker-Reason', 'Remove'): 'removed',
}


def _leave_reason(headers) -> Optional[str]:
    for (name, value), reason in _LEAVE_REASONS.items():
        if headers.get(name) == value:
            return reason
    return None


def _same_publisher(old: Dict, new: Dict) -> bool:
    # A heartbeat changes only the timestamp.
    ignore = ('last_activity_timestamp',)
    return ({k: v for k, v in old.items() if k not in ignore}
            == {k: v for k, v in new.items() if k not in ignore})


class PublisherWatch:
    """A live view of the registered publishers, of one role or all.

    ``start()`` returns the publishers registered now; afterwards
    ``on_change(kind, record)`` runs in the caller's world (greenthread or
    thread) for every ``join``, ``change`` and ``leave``. A leave's record
    has ``left``: closed, expired, purged, removed, or gone (vanished while
    this process was disconnected).
    """

    def __init__(self, conn, role: Optional[str] = None,
                 on_change: Optional[Callable[[str, Dict], None]] = None,
                 create: bool = True):
        self.conn = conn
        self.role = role
        self.stats = collections.Counter()
        self._on_change = on_change
        self._create = create
        self._bucket = conn.conf.registry_bucket
        self._prefix = '$KV.%s.' % self._bucket
        # Loop thread only, from here on.
        self._known: Dict[str, Dict] = {}
        self._seen: Dict[str, float] = {}
        self._snapshot: Optional[Dict[str, Dict]] = None
        self._loaded: Optional[asyncio.Future] = None
        self._sub = None
        self._ttl = None
        self._tasks: List[asyncio.Task] = []
        self._malformed_warning = log.Throttled(LOG)

    # -- caller's world ---------------------------------------------------

    def start(self, timeout: float = timeouts.SNAPSHOT) -> List[Dict]:
        """Start watching; the publishers registered now."""
        return self.conn.bridge.run(
            bucket.fail_on_permission_denied(
                self.conn, self._start()),
            timeout=timeout + timeouts.GRACE)

    def publishers(self) -> List[Dict]:
        """The publishers this watch knows to be alive."""
        return self.conn.bridge.run(self._list(), timeout=timeouts.SNAPSHOT)

    def stop(self):
        """Stop watching; no ``on_change`` call starts after this."""
        self._on_change = None
        self.conn.bridge.run(self._stop(), timeout=timeouts.SNAPSHOT)

    # -- loop thread ----------------------------------------------------------

    async def _list(self):
        return sorted(self._known.values(), key=lambda r: r['id'])

    async def _start(self):
        kv = await bucket.open_bucket(
            self._js_on_loop(), self.conn.conf, create=self._create,
            strict=False)
        self._ttl = (await kv.status()).ttl
        await self._subscribe()
        self._known = self._snapshot_done_on_loop()
        self.conn.add_listener(self._reconnected_on_loop)
        self._tasks.append(asyncio.get_running_loop().create_task(
            self._expire_by_clock()))
        return await self._list()

    def _js_on_loop(self):
        assert self.conn.bridge.on_loop_thread()
        return self.conn.jetstream_on_loop(
            timeout=timeouts.JETSTREAM_REQUEST)

    async def _subscribe(self):
        self._snapshot = {}
        self._loaded = asyncio.get_running_loop().create_future()
        self._sub = await self._js_on_loop().subscribe(
            self._prefix + '>', stream='KV_' + self._bucket,
            cb=self._on_message, ordered_consumer=True,
            deliver_policy=js_api.DeliverPolicy.LAST_PER_SUBJECT,
            inactive_threshold=300.0)
        info = await self._sub.consumer_info()
        if info.num_pending == 0 and info.delivered.consumer_seq == 0:
            # An empty bucket: nothing will come.
            self._finish_loading_on_loop()
        await asyncio.wait_for(self._loaded, timeouts.SNAPSHOT)

    def _finish_loading_on_loop(self):
        assert self.conn.bridge.on_loop_thread()
        if self._loaded is not None and not self._loaded.done():
            self._loaded.set_result(None)

    def _snapshot_done_on_loop(self) -> Dict[str, Dict]:
        assert self.conn.bridge.on_loop_thread()
        snapshot, self._snapshot = self._snapshot, None
        now = time.monotonic()
        self._seen = dict.fromkeys(snapshot, now)
        return snapshot

    async def _on_message(self, msg):
        key = msg.subject[len(self._prefix):]
        reason = _leave_reason(msg.headers or {})
        record = None
        if reason is None:
            record = registration.decode_record(msg.data)
            if record is None:
                self._malformed_on_loop(key)
            elif self.role and record.get('role') != self.role:
                record, reason = None, 'role'
        if self._snapshot is not None:
            if record is not None:
                self._snapshot[key] = record
            else:
                self._snapshot.pop(key, None)
            if msg.metadata.num_pending == 0:
                self._finish_loading_on_loop()
        elif record is not None or reason is not None:
            self._apply_on_loop(key, record, reason)

    def _apply_on_loop(self, key, record, reason):
        assert self.conn.bridge.on_loop_thread()
        old = self._known.get(key)
        if record is not None:
            self._seen[key] = time.monotonic()
            self._known[key] = record
            if old is None:
                self._emit_on_loop(JOIN, record)
            elif not _same_publisher(old, record):
                self._emit_on_loop(CHANGE, record)
        elif old is not None:
            del self._known[key]
            self._seen.pop(key, None)
            self._emit_on_loop(LEAVE, dict(old, left=reason))

    def _emit_on_loop(self, kind, record):
        assert self.conn.bridge.on_loop_thread()
        self.stats[kind] += 1
        on_change = self._on_change
        if on_change is not None:
            self.conn.bridge.world.post(on_change, kind, record)

    def _malformed_on_loop(self, key):
        assert self.conn.bridge.on_loop_thread()
        self.stats['malformed'] += 1
        self._malformed_warning.warning(
            'df-nats: registration key %s holds no publisher record; ignored'
            ' (%d so far)', key, self.stats['malformed'])

    async def _expire_by_clock(self):
        # The fallback for servers without limit markers; with markers the
        # marker arrives first and this finds nothing to do.
        if not self._ttl:
            return
        limit = self._ttl + timeouts.CLOCK_GRACE
        while True:
            await asyncio.sleep(min(1.0, self._ttl / 4))
            if self._snapshot is not None or not self.conn.connected:
                continue  # nothing can be seen now; no false expiries
            now = time.monotonic()
            for key, seen in list(self._seen.items()):
                if now - seen > limit:
                    self._apply_on_loop(key, None, 'expired')

    def _reconnected_on_loop(self):
        assert self.conn.bridge.on_loop_thread()
        self._tasks.append(asyncio.get_running_loop().create_task(
            self._resubscribe()))

    async def _resubscribe(self):
        old, self._sub = self._sub, None
        try:
            await old.unsubscribe()
        except Exception:
            pass  # the consumer died with the old server connection
        while self.conn.connected:
            try:
                await self._subscribe()
                break
            except Exception as exc:
                LOG.warning(
                    'df-nats: registration watch: resubscribing: %s: %s',
                    type(exc).__name__, exc)
                await asyncio.sleep(1.0)
        else:
            return  # disconnected again; the next reconnect retries
        fresh = self._snapshot_done_on_loop()
        for key in set(self._known) - set(fresh):
            self._apply_on_loop(key, None, 'gone')
        for key, record in fresh.items():
            self._apply_on_loop(key, record, None)

    async def _stop(self):
        self.conn.remove_listener(self._reconnected_on_loop)
        for task in self._tasks:
            task.cancel()
        sub, self._sub = self._sub, None
        if sub is not None and self.conn.connected:
            try:
                await sub.unsubscribe()
            except Exception:
                pass  # already gone with the connection


def list_publishers(conn, role: Optional[str] = None) -> List[Dict]:
    """The publishers registered now (of ``role`` if given)."""
    watch = PublisherWatch(conn, role=role, create=False)
    try:
        return watch.start()
    finally:
        watch.stop()


def _publisher_value(record: Dict) -> str:
    # Dragonflow's Publisher model, serialized as its to_json() does.
    return json.dumps({'id': record['id'], 'uri': record.get('uri'),
                       'last_activity_timestamp':
                           record.get('last_activity_timestamp')})


_TABLE_ACTIONS = {JOIN: 'create', CHANGE: 'set', LEAVE: 'delete'}


def start_publisher_feed(conn, call) -> Optional[PublisherWatch]:
    """Feed registration changes to a Dragonflow callback as table events.

    ``call(table, key, action, value, topic)`` gets ``publisher`` events:
    ``create`` for every publisher alive at start and every join, ``set``
    for a change, ``delete`` (value None) for a leave. Returns the watch to
    stop, or None when the registration cannot be read (logged once).
    """
    def deliver(kind, record):
        value = None if kind == LEAVE else _publisher_value(record)
        call('publisher', record['id'], _TABLE_ACTIONS[kind], value, None)

    watch = PublisherWatch(conn, on_change=deliver)
    try:
        present = watch.start()
    except Exception as exc:
        LOG.error('df-nats: publisher events are on ([df_nats]'
                  ' publisher_events) but the registration cannot be read:'
                  ' %s: %s', type(exc).__name__, exc)
        watch.stop()
        return None
    for record in present:
        deliver(JOIN, record)
    return watch
