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

"""The publisher registry: each process's publisher, kept alive in JetStream.

This replaces Dragonflow's publisher table, publisher service and stale
publisher monitor. A process that publishes writes one JSON record in a
key-value bucket and refreshes it every ``heartbeat_interval``. The bucket's
max age is ``publisher_ttl``, so a record nobody refreshes is removed by the
server, which leaves a limit marker that watchers see as the publisher's
expiry. ``close()`` deletes the record at once.

Why the bucket's max age rather than a per-key TTL: a per-key TTL
(``Nats-TTL``) is only accepted when a key is created or purged, not on a
put, so a refreshed record could not carry one.

Ids: Dragonflow's ``uuid5("<process name>.<fqdn>")`` is slot 0. The forked
workers of one service share that name, so each process claims the first
slot whose record is free, expired, or held by a dead process of this host
(the claim is a compare-and-set on the key's revision). A restarted process
therefore takes its old id back, and workers get distinct ones.
"""

import asyncio
import json
import socket
import threading
import time
import uuid
from typing import Dict, Optional

from nats.js import errors as js_errors

from df_nats.conf import timeouts
from df_nats import errors
from df_nats.loop import log
from df_nats.registry import bucket
from df_nats.transport import connect_args
from df_nats import version
from df_nats.wire import untrusted_json

LOG = log.get_logger(__name__)

# Workers of one service on one host; a claim beyond this is a bug.
_MAX_SLOTS = 256

_SERVICE_ROLES = ('neutron-server', 'df-local-controller')

# A record df-nats writes is a few hundred bytes, one level deep.
MAX_RECORD_BYTES = 64 * 1024
MAX_RECORD_DEPTH = 8


def host_name() -> str:
    """The host part of publisher ids, as Dragonflow computes it."""
    return socket.getfqdn()


def default_role(process: str) -> str:
    """The role of a process that sets no ``role`` option."""
    for role in _SERVICE_ROLES:
        if role in process:
            return role
    return process


def publisher_uuid(process: str, host: str, slot: int = 0) -> str:
    """The id of ``process`` on ``host``; slot 0 is Dragonflow's own."""
    name = '%s.%s' % (process, host)
    if slot:
        name = '%s.%d' % (name, slot)
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, name))


def decode_record(value: bytes) -> Optional[Dict]:
    """A registry record, or None when ``value`` is not one.

    Bounded in size and depth (anyone who may write the bucket wrote it).
    """
    record, _ = untrusted_json.loads(value, MAX_RECORD_BYTES,
                                     MAX_RECORD_DEPTH)
    if not isinstance(record, dict) or not isinstance(record.get('id'), str):
        return None
    return record


def _pid_alive(pid) -> bool:
    # A zombie (killed, not yet reaped) is dead for our purpose.
    try:
        with open('/proc/%d/stat' % int(pid)) as stat:
            return stat.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except (OSError, ValueError, IndexError, TypeError):
        return False


class Registration:
    """This process's record in the registry, alive while it is acquired.

    Every publisher of the process shares it (``acquire``/``release``
    count them); the first registers, the last deletes the record. One
    per process: see ``process_context``.
    """

    def __init__(self, conn):
        self.conn = conn
        self.conf = conn.conf
        self.pid = conn.pid
        self.process = connect_args.process_name()
        self.host = host_name()
        self.role = self.conf.role or default_role(self.process)
        self.publisher_id = publisher_uuid(self.process, self.host)
        self._record: Dict = {}
        self._kv = None
        self._users = 0
        self._lock = threading.Lock()
        self._task = None
        self._wake: Optional[asyncio.Event] = None
        self._last_write = 0.0
        self._complained = False
        self._failing = False

    @property
    def registered(self) -> bool:
        """True while our record is known to be in the bucket."""
        return self._kv is not None

    # -- caller's world ---------------------------------------------------

    def acquire(self) -> str:
        """Register this process (first call) and return its publisher id.

        Raises ``ConfigError`` for an incompatible bucket. Without
        JetStream it logs an error once and keeps retrying in background.
        """
        with self._lock:
            if self._users == 0 and self.conf.publisher_registry:
                self.conn.bridge.run(
                    self._start(),
                    timeout=timeouts.REGISTER_WAIT + timeouts.REGISTER_GRACE)
            self._users += 1
            return self.publisher_id

    def release(self):
        """Count one publisher less; the last one deletes the record."""
        with self._lock:
            self._users -= 1
            if self._users > 0 or self._task is None:
                return
            try:
                self.conn.bridge.run(self._stop(),
                                     timeout=self.conf.close_timeout)
            except Exception as exc:
                LOG.warning('df-nats: leaving the registry: %s: %s',
                            type(exc).__name__, exc)

    # -- loop thread --------------------------------------------------------

    async def _start(self):
        self._wake = asyncio.Event()
        self.conn.add_listener(self._wake.set)
        try:
            await asyncio.wait_for(bucket.fail_on_permission_denied(
                self.conn, self._register()), timeouts.REGISTER_WAIT)
        except errors.ConfigError:
            self.conn.remove_listener(self._wake.set)
            raise
        except Exception as exc:
            # Retried by _keep; publishing does not depend on it.
            self._complain_on_loop(exc)
        self._task = asyncio.get_running_loop().create_task(self._keep())

    async def _register(self):
        js = self.conn.jetstream_on_loop(timeout=timeouts.JETSTREAM_REQUEST)
        kv = await bucket.open_bucket(js, self.conf)
        self.publisher_id = await self._claim(kv)
        self._kv = kv
        self._failing = False
        self._last_write = time.monotonic()
        LOG.info('df-nats: registered publisher %s (role %s) in bucket %s',
                 self.publisher_id, self.role, self.conf.registry_bucket)

    def _complain_on_loop(self, exc):
        # One error per process, one warning per outage; the rest is debug.
        assert self.conn.bridge.on_loop_thread()
        if not isinstance(exc, errors.RegistryUnavailable):
            exc = '%s: %s' % (type(exc).__name__, exc or 'no answer')
        if not self._complained:
            self._complained = True
            self._failing = True
            LOG.error('df-nats: publisher registry unavailable: %s.'
                      ' Publishing works; this publisher is not listed'
                      ' until the registry can be reached'
                      ' ([df_nats] publisher_registry = false turns it'
                      ' off)', exc)
        elif not self._failing:
            self._failing = True
            LOG.warning('df-nats: registry heartbeat failed, retrying'
                        ' every %s s: %s', self.conf.heartbeat_interval, exc)
        else:
            LOG.debug('df-nats: registry still unavailable: %s', exc)

    def _new_record_on_loop(self, publisher_id, slot):
        assert self.conn.bridge.on_loop_thread()
        now = time.time()
        return {
            'id': publisher_id,
            'role': self.role,
            'host': self.host,
            'pid': self.pid,
            'process': self.process,
            'slot': slot,
            'uri': 'df-nats:%s/%s' % (self.conf.subject_prefix,
                                      publisher_id),
            'started_at': self._record.get('started_at', now),
            'last_activity_timestamp': now,
            'version': version.version_string(),
        }

    def _held_elsewhere(self, record) -> bool:
        # True when another live process owns this record.
        if record is None or record.get('pid') == self.pid:
            return False
        if record.get('host') != self.host:
            return True
        return _pid_alive(record.get('pid'))

    async def _claim(self, kv) -> str:
        slot = 0
        while slot < _MAX_SLOTS:
            publisher_id = publisher_uuid(self.process, self.host, slot)
            self._record = self._new_record_on_loop(publisher_id, slot)
            value = json.dumps(self._record).encode()
            try:
                await kv.create(publisher_id, value)
                return publisher_id
            except js_errors.KeyWrongLastSequenceError:
                pass
            try:
                entry = await kv.get(publisher_id)
            except js_errors.KeyNotFoundError:
                continue  # expired meanwhile: create again
            if self._held_elsewhere(decode_record(entry.value)):
                slot += 1
                continue
            try:
                await kv.update(publisher_id, value, last=entry.revision)
                return publisher_id
            except js_errors.KeyWrongLastSequenceError:
                continue  # somebody else claimed it first: look again
        raise errors.RegistryUnavailable(
            'all %d publisher slots of %s on %s are held by live processes'
            % (_MAX_SLOTS, self.process, self.host))

    async def _keep(self):
        interval = self.conf.heartbeat_interval
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), interval)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            # A reconnect wakes us early; never write more often than
            # every half interval, however often the connection flaps.
            spare = self._last_write + interval / 2 - time.monotonic()
            if spare > 0:
                await asyncio.sleep(spare)
            try:
                await bucket.fail_on_permission_denied(
                    self.conn, self._register() if self._kv is None
                    else self._refresh())
            except asyncio.CancelledError:
                raise
            except errors.ConfigError as exc:
                LOG.error('df-nats: registry: %s', exc)
                return
            except Exception as exc:
                # Open the bucket and claim again next time: it may have
                # been deleted, or our record expired during an outage.
                self._kv = None
                self._complain_on_loop(exc)

    async def _refresh(self):
        self._record['last_activity_timestamp'] = time.time()
        self._last_write = time.monotonic()
        await self._kv.put(self.publisher_id,
                           json.dumps(self._record).encode())

    async def _stop(self):
        self.conn.remove_listener(self._wake.set)
        task, self._task = self._task, None
        task.cancel()
        if self._kv is None or not self.conn.connected:
            return
        kv, self._kv = self._kv, None
        await kv.delete(self.publisher_id)
        LOG.info('df-nats: unregistered publisher %s', self.publisher_id)
