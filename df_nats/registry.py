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
import functools
import json
import os
import socket
import threading
import time
import uuid
from typing import Dict, Optional

from nats import errors as nats_errors
from nats.js import api as js_api
from nats.js import errors as js_errors
from oslo_log import log as logging

from df_nats import client_options
from df_nats import connection as df_connection
from df_nats import nats_client
from df_nats import options

LOG = logging.getLogger(__name__)

# Workers of one service on one host; a claim beyond this is a bug.
_MAX_SLOTS = 256
# Seconds a JetStream API request may take.
JS_TIMEOUT = 5.0
# Seconds initialize() waits for the registration; after that the
# publisher starts anyway and registration goes on in the background.
_REGISTER_WAIT = 8.0
# A cluster places a replicated bucket only once it knows its peers.
_PLACEMENT_RETRY = 5.0

_SERVICE_ROLES = ('neutron-server', 'df-local-controller')


class RegistryUnavailable(RuntimeError):
    """JetStream cannot be used; the registry is off, pub/sub goes on."""


class RegistryPermissionDenied(RegistryUnavailable):
    """The server refused a subject the registry needs to this user."""

    def __init__(self, kind: str, subject: str):
        self.kind = kind
        self.subject = subject
        super().__init__(
            'permission denied: the NATS server refused to let this user'
            ' %s to %s, which the publisher registry needs (publish to'
            ' $JS.API.> requests and $KV.<registry_bucket>.>, subscribe to'
            ' _INBOX.>: see the sample server configuration in etc/)'
            % (kind, subject))


def _registry_subject(kind: str, subject: str) -> bool:
    # nats-py lower-cases the subjects of the server's errors.
    return subject.lower().startswith(('$js.', '$kv.', '_inbox.'))


async def fail_on_permission_denied(conn, coro):
    """Await ``coro``; a refusal of a JetStream, KV or inbox subject on
    ``conn`` meanwhile ends it at once with ``RegistryPermissionDenied``.

    Without this a refused JetStream request only times out
    (``JS_TIMEOUT``) and looks like JetStream being down.
    """
    denied = conn.permission_denied(_registry_subject)
    task = asyncio.ensure_future(coro)
    try:
        await asyncio.wait({task, denied},
                           return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        if not denied.done():
            denied.cancel()
    if task.done():
        return task.result()
    task.cancel()
    kind, subject = denied.result()
    raise RegistryPermissionDenied(kind, nats_client.subject_as_sent(
        subject, conn.conf.registry_bucket))


@functools.lru_cache(maxsize=None)
def version() -> str:
    """df-nats' version, as written in every record."""
    try:
        from importlib import metadata
        return metadata.version('df-nats')
    except Exception:
        return 'unknown'


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
    """A registry record, or None when ``value`` is not one."""
    try:
        record = json.loads(value)
    except (TypeError, ValueError):
        return None
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


def _bucket_problem(status, conf) -> Optional[options.ConfigError]:
    config = status.stream_info.config
    bucket = conf.registry_bucket
    if config.subjects != ['$KV.%s.>' % bucket]:
        return options.ConfigError(
            'registry_bucket', 'stream KV_%s exists but is not a key-value'
                               ' bucket (subjects %s)' % (bucket,
                                                          config.subjects))
    if not status.ttl or abs(status.ttl - conf.publisher_ttl) > 0.001:
        return options.ConfigError(
            'publisher_ttl',
            '%s s, but bucket %r exists with max age %s: every process must'
            ' use the bucket\'s value, or delete the bucket ("nats kv del'
            ' %s") to have it created again'
            % (conf.publisher_ttl, bucket,
               '%s s' % status.ttl if status.ttl else 'unlimited', bucket))
    return None


async def open_bucket(js, conf, log, create: bool = True,
                      strict: bool = True):
    """The registry bucket, created when missing and ``create`` is set.

    Raises ``RegistryUnavailable`` without JetStream (or without the bucket
    and ``create``), and, when ``strict`` (for a process that registers),
    ``options.ConfigError`` if the bucket's settings disagree with ours.
    Runs on the loop thread, so it logs through ``log``, a ``LoopLogger``.
    """
    bucket = conf.registry_bucket
    try:
        try:
            kv = await js.key_value(bucket)
        except js_errors.BucketNotFoundError:
            if not create:
                raise RegistryUnavailable(
                    'bucket %r does not exist ([df_nats] registry_bucket):'
                    ' no publisher has registered yet' % bucket) from None
            kv = await _create_bucket(js, conf)
        status = await kv.status()
    except js_errors.ServiceUnavailableError:
        raise RegistryUnavailable('JetStream is not enabled on the NATS'
                                  ' server') from None
    except (nats_errors.NoRespondersError, nats_errors.TimeoutError,
            asyncio.TimeoutError) as exc:
        raise RegistryUnavailable('JetStream did not answer (%s)'
                                  % type(exc).__name__) from None
    problem = _bucket_problem(status, conf)
    if problem and strict:
        raise problem
    if status.marker_ttl is None:
        log.warning('df-nats: bucket %s has no limit markers (nats-server'
                    ' < 2.11 or created by hand): watchers notice expiries'
                    ' by their own clock', bucket)
    return kv


async def _create_bucket(js, conf):
    config = js_api.KeyValueConfig(
        bucket=conf.registry_bucket,
        description='df-nats publisher registry',
        history=1, ttl=conf.publisher_ttl, replicas=conf.kv_replicas,
        limit_marker_ttl=max(1.0, conf.heartbeat_interval))
    deadline = time.monotonic() + _PLACEMENT_RETRY
    while True:
        try:
            return await js.create_key_value(config=config)
        except js_errors.KeyValueLimitMarkerTTLNotSupportedError:
            config.limit_marker_ttl = None
        except js_errors.APIError as exc:
            # "insufficient resources" / "no suitable peers" while a
            # fresh cluster still gathers its peers' statistics.
            if exc.code not in (500, 503) or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.25)


class Registration:
    """This process's record in the registry, alive while it is acquired.

    Every publisher of the process shares it (``acquire``/``release``
    count them); the first registers, the last deletes the record.
    """

    def __init__(self, conn: df_connection.Connection):
        self.conn = conn
        self.conf = conn.conf
        self.pid = conn.pid
        self.process = client_options.process_name()
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

        Raises ``options.ConfigError`` for an incompatible bucket. Without
        JetStream it logs an error once and keeps retrying in background.
        """
        with self._lock:
            if self._users == 0 and self.conf.publisher_registry:
                self.conn.bridge.run(self._start(),
                                     timeout=_REGISTER_WAIT + 5)
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
            await asyncio.wait_for(fail_on_permission_denied(
                self.conn, self._register()), _REGISTER_WAIT)
        except options.ConfigError:
            self.conn.remove_listener(self._wake.set)
            raise
        except Exception as exc:
            # Retried by _keep; publishing does not depend on it.
            self._complain(exc)
        self._task = asyncio.get_running_loop().create_task(self._keep())

    async def _register(self):
        js = self.conn.jetstream(timeout=JS_TIMEOUT)
        kv = await open_bucket(js, self.conf, self.conn.bridge.log)
        self.publisher_id = await self._claim(kv)
        self._kv = kv
        self._failing = False
        self._last_write = time.monotonic()
        self.conn.bridge.log.info(
            'df-nats: registered publisher %s (role %s) in bucket %s',
            self.publisher_id, self.role, self.conf.registry_bucket)

    def _complain(self, exc):
        # One error per process, one warning per outage; the rest is debug.
        log = self.conn.bridge.log
        if not isinstance(exc, RegistryUnavailable):
            exc = '%s: %s' % (type(exc).__name__, exc or 'no answer')
        if not self._complained:
            self._complained = True
            self._failing = True
            log.error('df-nats: publisher registry unavailable: %s.'
                      ' Publishing works; this publisher is not listed'
                      ' until the registry can be reached'
                      ' ([df_nats] publisher_registry = false turns it'
                      ' off)', exc)
        elif not self._failing:
            self._failing = True
            log.warning('df-nats: registry heartbeat failed, retrying'
                        ' every %s s: %s', self.conf.heartbeat_interval, exc)
        else:
            log.debug('df-nats: registry still unavailable: %s', exc)

    def _new_record(self, publisher_id, slot):
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
            'version': version(),
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
            self._record = self._new_record(publisher_id, slot)
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
        raise RegistryUnavailable('all %d publisher slots of %s on %s are'
                                  ' held by live processes'
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
                await fail_on_permission_denied(
                    self.conn, self._register() if self._kv is None
                    else self._refresh())
            except asyncio.CancelledError:
                raise
            except options.ConfigError as exc:
                self.conn.bridge.log.error('df-nats: registry: %s', exc)
                return
            except Exception as exc:
                # Open the bucket and claim again next time: it may have
                # been deleted, or our record expired during an outage.
                self._kv = None
                self._complain(exc)

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
        self.conn.bridge.log.info('df-nats: unregistered publisher %s',
                                  self.publisher_id)


_registration: Optional[Registration] = None
_registration_lock = threading.Lock()


def get_registration() -> Registration:
    """This process's registration (a new one after a fork)."""
    global _registration
    with _registration_lock:
        if _registration is None or _registration.pid != os.getpid():
            _registration = Registration(df_connection.get_connection())
        return _registration


def _after_fork_in_child():
    # A parent thread may have held the lock at the moment of the fork.
    global _registration_lock
    _registration_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
