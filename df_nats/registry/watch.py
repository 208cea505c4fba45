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
expires; the expiry is seen by our own clock (``publisher_ttl`` after the
record's last write was seen, unless the bucket changed leaders meanwhile:
then nobody could write, and every record gets a new ``publisher_ttl``),
or through the limit marker the server writes in a bucket that has them
(one made by an earlier df-nats).

Ordered consumers can stall after a server restart (nats.py issue 510), so
the consumer is created anew after every reconnect, and the new snapshot is
compared with what we knew: what disappeared meanwhile leaves as ``gone``,
unless the bucket changed leaders meanwhile (then our clock decides).
The same happens when the consumer is found gone (the bucket was deleted,
and made again by the publishers): it is asked for when no record came
for half a TTL, since live publishers write every heartbeat.

Records are untrusted (whoever may write one key may write many): each is
bounded and checked by ``records.parse`` (size, fields, id against key),
and the watch holds at most ``registry_max_records`` of them, at most
``MAX_HOST_RECORDS`` of one host. What it drops is counted in ``stats``
(``registry_malformed``, ``registry_oversized``, ``registry_forged``,
``registry_over_limit``) and logged, at most once a second. Memory goes
back when records go: the dicts are rebuilt when they shrink, and freed
heap memory is returned to the system (``loop.memory``).

During a rolling upgrade a publisher's id may be held by two keys at
once, its old layout's and the new one's; it joins once and leaves when
neither holds it.
"""

import asyncio
import collections
import json
import time
from typing import Callable, Dict, List, Optional

from nats.js import api as js_api
from nats.js import errors as js_errors

from df_nats.conf import options
from df_nats.conf import timeouts
from df_nats.loop import log
from df_nats.loop import memory
from df_nats.registry import bucket
from df_nats.registry import records

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


# What is dropped, counted under 'registry_<why>'.
OVER_LIMIT = 'over_limit'
# Freed bytes (of records dropped or gone) worth returning to the system.
_TRIM_BYTES = 4 * 1024 * 1024
# What a held record costs, about, for that count.
_HELD_RECORD_BYTES = 1024
# A dict of records is rebuilt when it holds a quarter of its peak.
_COMPACT_FROM = 1024


_STAMP = 'last_activity_timestamp'


def _identity(record: Dict) -> str:
    # A record without what a heartbeat changes (the timestamp) and what
    # its key says (legacy): one string, as records are held.
    return json.dumps({k: v for k, v in record.items()
                       if k != _STAMP and k != 'legacy'},
                      sort_keys=True, separators=(',', ':'))


def _same_publisher(old: Dict, new: Dict) -> bool:
    # A heartbeat changes only the timestamp; the same record under the
    # new key layout is the same publisher.
    return _identity(old) == _identity(new)


def _alternate(key: str, record: Dict) -> str:
    # The other key that may hold the same publisher id during an
    # upgrade: the old layout's for a new key, and the other way round.
    if record.get('legacy'):
        return records.key(record['host'], record['id'])
    return record['id']


class _Held:
    """Records by key, bounded in count and per host (loop thread).

    A record is held as its identity string and its timestamp: two
    objects rather than a dict of ten, so that thousands of them cost
    less and leave fewer pinned blocks in the allocator when they go.
    """

    def __init__(self, limit: int, host_limit: int):
        self.records: Dict[str, tuple] = {}
        self._hosts = collections.Counter()
        self._limit = limit
        self._host_limit = host_limit
        self._peak = 0

    def __len__(self):
        return len(self.records)

    def get(self, key: str) -> Optional[Dict]:
        """The record held under ``key``, or None."""
        packed = self.records.get(key)
        if packed is None:
            return None
        record = json.loads(packed[0])
        if packed[1] is not None:
            record[_STAMP] = packed[1]
        if '.' not in key:
            record['legacy'] = True
        return record

    def identity(self, key: str) -> Optional[str]:
        """What the record under ``key`` says but for its timestamp."""
        packed = self.records.get(key)
        return None if packed is None else packed[0]

    def admit(self, key: str, record: Dict, identity: str = None) -> bool:
        """Hold ``record`` under ``key``; False when over a limit."""
        packed = (identity or _identity(record), record.get(_STAMP))
        if key in self.records:
            self.records[key] = packed
            return True
        token = self._token(key)
        if len(self.records) >= self._limit or (
                token is not None and self._hosts[token] >= self._host_limit):
            return False
        self.records[key] = packed
        if token is not None:
            self._hosts[token] += 1
        self._peak = max(self._peak, len(self.records))
        return True

    def remove(self, key: str) -> Optional[Dict]:
        """The record under ``key``, no longer held (None if none was)."""
        record = self.get(key)
        if record is None:
            return None
        del self.records[key]
        token = self._token(key)
        if token is not None:
            self._hosts[token] -= 1
            if not self._hosts[token]:
                del self._hosts[token]
        return record

    def compact(self) -> bool:
        """Rebuild the dicts when they hold a quarter of their peak:
        a dict never shrinks by deletions. True when it did.
        """
        if self._peak < _COMPACT_FROM or len(self.records) > self._peak // 4:
            return False
        self.records = dict(self.records)
        self._hosts = collections.Counter(self._hosts)
        self._peak = len(self.records)
        return True

    @staticmethod
    def _token(key: str) -> Optional[str]:
        # Legacy keys (one token) have no host to count them under.
        token, dot, _ = key.partition('.')
        return token if dot else None


class PublisherWatch:
    """A live view of the registered publishers, of one role or all.

    ``start()`` returns the publishers registered now; afterwards
    ``on_change(kind, record)`` runs in the caller's world (greenthread or
    thread) for every ``join``, ``change`` and ``leave``. A leave's record
    has ``left``: closed, expired, purged, removed, or gone (vanished while
    this process was disconnected).

    ``stats`` is the counter the watch counts in: its own, or one given
    (the subscriber's, whose counters the df-nats service shows).
    """

    def __init__(self, conn, role: Optional[str] = None,
                 on_change: Optional[Callable[[str, Dict], None]] = None,
                 create: bool = True,
                 stats: Optional[collections.Counter] = None):
        self.conn = conn
        self.role = role
        self.stats = collections.Counter() if stats is None else stats
        self._on_change = on_change
        self._create = create
        conf = conn.conf
        self._bucket = conf.registry_bucket
        self._prefix = '$KV.%s.' % self._bucket
        self._max_size = conf.registry_max_record_size
        self._max_records = conf.registry_max_records
        # Loop thread only, from here on.
        self._known = self._held()
        self._seen: Dict[str, float] = {}
        self._snapshot: Optional[_Held] = None
        self._loaded: Optional[asyncio.Future] = None
        self._sub = None
        self._ttl = None
        self._leader = None   # the bucket's stream leader, as last seen
        self._tasks: List[asyncio.Task] = []
        self._resubscribing = False
        self._last_message = time.monotonic()
        self._released = 0
        self._dropped_warning = log.Throttled(LOG)
        self._legacy_warning = log.Throttled(LOG, interval=3600.0)

    def _held(self) -> _Held:
        return _Held(self._max_records, options.MAX_HOST_RECORDS)

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
        # One record per id: the new layout's when the old one holds it
        # too (an upgrade in progress).
        by_id = {}
        for key in self._known.records:
            record = self._known.get(key)
            held = by_id.get(record['id'])
            if held is None or held.get('legacy'):
                by_id[record['id']] = record
        return sorted(by_id.values(), key=lambda r: r['id'])

    async def _start(self):
        kv = await bucket.open_bucket(
            self._js_on_loop(), self.conn.conf, create=self._create,
            strict=False)
        status = await kv.status()
        self._ttl = status.ttl
        self._leader = _leader_of(status.stream_info)
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
        deadline = time.monotonic() + timeouts.SNAPSHOT
        stream = 'KV_' + self._bucket
        while True:
            self._snapshot = self._held()
            self._loaded = asyncio.get_running_loop().create_future()
            self._sub = await self._js_on_loop().subscribe(
                self._prefix + '>', stream=stream,
                cb=self._on_message, ordered_consumer=True,
                deliver_policy=js_api.DeliverPolicy.LAST_PER_SUBJECT,
                inactive_threshold=300.0)
            info = await self._sub.consumer_info()
            if info.num_pending or info.delivered.consumer_seq:
                break   # the snapshot is coming
            state = (await self._js_on_loop().stream_info(stream)).state
            if not state.messages or time.monotonic() > deadline:
                # An empty bucket: nothing will come.
                self._finish_loading_on_loop()
                break
            # Nothing to deliver from a bucket that holds records: the
            # consumer was made on a stream leader still catching up
            # (right after a failover). Made again, shortly.
            await self._sub.unsubscribe()
            await asyncio.sleep(0.25)
        await asyncio.wait_for(self._loaded, max(
            1.0, deadline - time.monotonic()))

    def _finish_loading_on_loop(self):
        assert self.conn.bridge.on_loop_thread()
        if self._loaded is not None and not self._loaded.done():
            self._loaded.set_result(None)

    def _snapshot_done_on_loop(self) -> _Held:
        assert self.conn.bridge.on_loop_thread()
        snapshot, self._snapshot = self._snapshot, None
        now = time.monotonic()
        self._seen = dict.fromkeys(snapshot.records, now)
        return snapshot

    async def _on_message(self, msg):
        self._last_message = time.monotonic()
        key = msg.subject[len(self._prefix):]
        headers = msg.headers or {}
        reason = _leave_reason(headers)
        record = None
        if reason is None:
            record, why = records.parse(key, msg.data, headers,
                                        self._max_size)
            if record is None:
                self._drop_on_loop(key, why, len(msg.data))
            elif self.role and record['role'] != self.role:
                record, reason = None, 'role'
            elif record.get('legacy'):
                self._legacy_on_loop(record)
        if self._snapshot is not None:
            if record is None:
                self._snapshot.remove(key)
            elif not self._snapshot.admit(key, record):
                self._drop_on_loop(key, OVER_LIMIT, len(msg.data))
            if msg.metadata.num_pending == 0:
                self._finish_loading_on_loop()
        elif record is not None or reason is not None:
            self._apply_on_loop(key, record, reason, len(msg.data))

    def _apply_on_loop(self, key, record, reason, size=0):
        assert self.conn.bridge.on_loop_thread()
        known = self._known
        if record is not None:
            old = known.identity(key)
            identity = _identity(record)
            if not known.admit(key, record, identity):
                self._drop_on_loop(key, OVER_LIMIT, size)
                return
            self._seen[key] = time.monotonic()
            if old is not None:
                if old != identity:
                    self._emit_on_loop(CHANGE, record)
                return
            other = known.identity(_alternate(key, record))
            if other is None:
                self._emit_on_loop(JOIN, record)
            elif other != identity:
                self._emit_on_loop(CHANGE, record)
            return
        old = known.remove(key)
        if old is None:
            return
        self._seen.pop(key, None)
        self._released += _HELD_RECORD_BYTES
        other_key = _alternate(key, old)
        other = known.identity(other_key)
        if other is None:
            self._emit_on_loop(LEAVE, dict(old, left=reason))
        elif other != _identity(old):
            self._emit_on_loop(CHANGE, known.get(other_key))
        if known.compact():
            self._seen = dict(self._seen)

    def _emit_on_loop(self, kind, record):
        assert self.conn.bridge.on_loop_thread()
        self.stats['registry_%ss' % kind] += 1
        on_change = self._on_change
        if on_change is not None:
            self.conn.bridge.world.post(on_change, kind, record)

    def _drop_on_loop(self, key, why, size):
        assert self.conn.bridge.on_loop_thread()
        name = 'registry_' + why
        self.stats[name] += 1
        self._released += size
        self._dropped_warning.warning(
            'df-nats: registry key %s dropped (%s): %d so far; whoever may'
            ' write the registry bucket can write such records',
            _shown(key), why.replace('_', ' '), self.stats[name])

    def _legacy_on_loop(self, record):
        assert self.conn.bridge.on_loop_thread()
        self._legacy_warning.warning(
            'df-nats: publisher %s on %s registers under the key layout of'
            ' an earlier df-nats: upgrade df-nats there (listed meanwhile)',
            record['id'], _shown(record['host']))

    async def _expire_by_clock(self):
        # A record not written again within publisher_ttl has been removed
        # by the server; in a bucket with limit markers the marker comes
        # first and this finds nothing to do.
        if not self._ttl:
            return
        limit = self._ttl + timeouts.CLOCK_GRACE
        while True:
            await asyncio.sleep(min(0.5, self._ttl / 4))
            if self._released >= _TRIM_BYTES:
                self._released = 0
                memory.trim()
            if (self._snapshot is not None or not self.conn.connected
                    or self._behind_on_loop()):
                continue  # nothing can be seen now; no false expiries
            now = time.monotonic()
            if now - self._last_message > self._ttl / 2:
                self._last_message = now
                if not await self._consumer_alive():
                    self._reconnected_on_loop()
                    continue
            due = [key for key, seen in self._seen.items()
                   if now - seen > limit]
            if due and await self._same_leader():
                for key in due:
                    if key in self._seen:
                        self._apply_on_loop(key, None, 'expired')

    async def _same_leader(self) -> bool:
        # Whether the bucket kept its leader since we last looked. A
        # bucket without one takes no writes: while its stream elects a
        # new leader (several seconds after its node died) live
        # publishers cannot refresh their records, and would look
        # expired. After a change they get a whole TTL to write again.
        try:
            info = await self._js_on_loop().stream_info('KV_' + self._bucket)
        except Exception:
            return False   # no answer now: nothing expires yet
        leader = _leader_of(info)
        if leader == self._leader:
            return True
        LOG.info('df-nats: registry bucket %s is led by %s now (was %s):'
                 ' publishers have %s s to write again', self._bucket,
                 leader or 'no server', self._leader or 'no server',
                 self._ttl)
        self._leader = leader
        self._seen = dict.fromkeys(self._seen, time.monotonic())
        return False

    async def _consumer_alive(self) -> bool:
        # False only when the server says the consumer is gone.
        sub = self._sub
        if sub is None or self._resubscribing:
            return True
        try:
            await sub.consumer_info()
        except js_errors.NotFoundError:
            LOG.warning('df-nats: registry watch: the consumer of bucket %s'
                        ' is gone (was the bucket deleted?): watching it'
                        ' again', self._bucket)
            return False
        except Exception:
            pass  # no answer now: asked again later
        return True

    def _behind_on_loop(self) -> bool:
        # Messages wait for our callback: a refresh may be among them.
        assert self.conn.bridge.on_loop_thread()
        sub = self._sub
        return sub is not None and sub.pending_msgs > 0

    def _reconnected_on_loop(self):
        assert self.conn.bridge.on_loop_thread()
        self._tasks = [task for task in self._tasks if not task.done()]
        self._tasks.append(asyncio.get_running_loop().create_task(
            self._resubscribe()))

    async def _resubscribe(self):
        if self._resubscribing:
            return
        self._resubscribing = True
        try:
            await self._watch_again()
        finally:
            self._resubscribing = False

    async def _watch_again(self):
        old, self._sub = self._sub, None
        try:
            if old is not None:
                await old.unsubscribe()
        except Exception:
            pass  # the consumer died with the old server connection
        failures = 0
        while self.conn.connected:
            try:
                await self._subscribe()
                break
            except Exception as exc:
                # Once a warning, then every second at debug level (the
                # bucket may be missing until a publisher makes it).
                failures += 1
                (LOG.warning if failures == 1 else LOG.debug)(
                    'df-nats: registration watch: resubscribing: %s: %s',
                    type(exc).__name__, exc)
                await asyncio.sleep(1.0)
        else:
            return  # disconnected again; the next reconnect retries
        fresh = self._snapshot_done_on_loop()
        missing = set(self._known.records) - set(fresh.records)
        if missing and not await self._same_leader():
            # The bucket changed leaders (or does not answer): a record
            # may be missing only because nobody could refresh it. Our
            # clock decides, a whole TTL from now.
            now = time.monotonic()
            self._seen.update(dict.fromkeys(missing, now))
            missing = set()
        for key in missing:
            self._apply_on_loop(key, None, 'gone')
        for key in list(fresh.records):
            self._apply_on_loop(key, fresh.get(key), None)

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


def _leader_of(stream_info) -> str:
    # The server leading the stream; '' on a single server (no cluster).
    cluster = getattr(stream_info, 'cluster', None)
    return getattr(cluster, 'leader', None) or ''


def _shown(text: str, longest: int = 80) -> str:
    # A key or host from the wire, for a log line: bounded, printable.
    text = text if len(text) <= longest else text[:longest] + '...'
    return text.encode('unicode_escape').decode('ascii')


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


def start_publisher_feed(conn, call, stats=None
                         ) -> Optional[PublisherWatch]:
    """Feed registration changes to a Dragonflow callback as table events.

    ``call(table, key, action, value, topic)`` gets ``publisher`` events:
    ``create`` for every publisher alive at start and every join, ``set``
    for a change, ``delete`` (value None) for a leave. The watch counts in
    ``stats`` when given. Returns the watch to stop, or None when the
    registration cannot be read (logged once).
    """
    def deliver(kind, record):
        value = None if kind == LEAVE else _publisher_value(record)
        call('publisher', record['id'], _TABLE_ACTIONS[kind], value, None)

    watch = PublisherWatch(conn, on_change=deliver, stats=stats)
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
