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

"""Registry records owned by their host (issue 19, item 3).

A nats-server whose users are made of the sample configuration's
registry blocks (etc/nats-server/df-nats-cluster.conf, between the
``registry writer`` and ``registry reader`` markers): host A's and host
B's users, each with the writer block naming its own host token, and a
watcher with the reader block. Host A runs df-nats publishers
(tests/functional/registry_worker.py, registering as a process of host
A); host B's user is an attacker with a raw nats-py client. B cannot
overwrite, delete, purge, outlive, forge or exhaust A's records.
"""

import asyncio
import json
import secrets
import sys
import time

import nats
import pytest

from df_nats.registry import records
from df_nats.testing.embedded_server import NatsServer
from df_nats.testing.worker_process import WorkerError
from df_nats.testing.worker_process import WorkerProcess

from tests.functional import sample_cluster
from tests.functional.test_driver import _finish
from tests.functional.test_driver import _start
from tests.functional.test_driver import ROOT
from tests.functional.test_driver import WORLDS
from tests.functional.test_registry import _event
from tests.functional.test_registry import _list
from tests.functional.test_registry import _ready
from tests.functional.test_registry import write_config

BUCKET = 'df_publishers'   # the sample's
HOST_A = 'net-a.example.net'
HOST_B = 'net-b.example.net'
TTL = 4.0


def registry_block(kind):
    """The subjects of the sample's registry block ``kind`` (writer or
    reader), as the sample has them.
    """
    with open(sample_cluster.SAMPLE) as sample:
        text = sample.read()
    start = text.index('# --- registry %s (begin)' % kind)
    end = text.index('# --- registry %s (end)' % kind, start)
    lines = (line.strip() for line in text[start:end].splitlines()[1:])
    return [json.loads(line) for line in lines
            if line and not line.startswith('#')]


def _writer(host):
    token = sample_cluster.SAMPLE_HOST_TOKEN
    subjects = [s.replace(token, records.host_token(host))
                for s in registry_block('writer')]
    assert sum(records.host_token(host) in s for s in subjects) == 1
    return subjects


class OwnedServer(NatsServer):
    """A JetStream server whose users come from the sample's registry
    blocks; ``options(user)`` are a process's [df_nats] options.
    """

    def __init__(self):
        self.passwords = {user: secrets.token_urlsafe(12)
                          for user in ('host-a', 'host-b', 'watcher')}
        q = json.dumps
        users = []
        for user, publish, subscribe in (
                ('host-a', _writer(HOST_A), ['_INBOX.>']),
                ('host-b', _writer(HOST_B), ['_INBOX.>']),
                # A controller with publisher_events: the topics too.
                ('watcher', registry_block('reader'),
                 ['_INBOX.>', 'dragonflow.topic.>'])):
            users.append('{user: %s, password: %s, permissions: {'
                         'publish: {allow: %s}, subscribe: {allow: %s}}}'
                         % (q(user), q(self.passwords[user]), q(publish),
                            q(subscribe)))
        super().__init__(jetstream=True, extra_config=(
            'authorization {\n  users: [\n    %s\n  ]\n}\n'
            % '\n    '.join(users)))

    def options(self, user, **extra):
        options = dict(servers=self.url, user=user,
                       password=self.passwords[user], publisher_ttl=TTL,
                       heartbeat_interval=1.0, service_endpoint='false')
        options.update(extra)
        return options


@pytest.fixture
def server():
    with OwnedServer() as owned:
        yield owned


@pytest.fixture
def processes():
    started = []

    def start(module=None, args=(), world='native', argv=None):
        process = WorkerProcess(module, args, world=world, argv=argv,
                                paths=[ROOT], cwd=ROOT, new_session=True)
        started.append(process)
        return process
    yield start
    for process in started:
        process.kill()


def _host_worker(start, world, config, host, *extra):
    return start('tests.functional.registry_worker',
                 ['--config', config, '--host', host] + list(extra),
                 world=world)


def _watch(start, config):
    return start(argv=[sys.executable, '-m', 'df_nats.cmd.main',
                       'publishers', '--watch', '--json', '--config-file',
                       config])


class Attacker:
    """Host B's user, with a raw nats-py client: what it was refused."""

    def __init__(self, server):
        self.server = server
        self.refused = []

    async def _connect(self):
        async def on_error(exc):
            self.refused.append(str(exc))
        return await nats.connect(
            self.server.url, user='host-b',
            password=self.server.passwords['host-b'], error_cb=on_error,
            connect_timeout=5, allow_reconnect=False)

    def run(self, coro_fn):
        async def scenario():
            nc = await self._connect()
            try:
                return await coro_fn(nc)
            finally:
                await nc.flush(timeout=10)
                await asyncio.sleep(0.3)   # the server's -ERR, if any
                await nc.close()
        return asyncio.run(scenario())


async def _request(nc, subject, body=b'', headers=None):
    # A JetStream publish or API call: its answer, or the error it got.
    try:
        reply = await nc.request(subject, body, headers=headers, timeout=2)
    except Exception as exc:
        return '%s: %s' % (type(exc).__name__, exc)
    return reply.data.decode()


def _stats_once(worker, ready, timeout=30.0):
    """The worker's stats once ``ready(stats)`` holds (asked every 0.2 s)."""
    deadline = time.monotonic() + timeout
    while True:
        worker.send('stats')
        stats = worker.next(lambda line: line['type'] == 'stats')[1]['stats']
        if ready(stats) or time.monotonic() > deadline:
            return stats
        time.sleep(0.2)


def _record_of(config, publisher_id):
    [record] = [r for r in _list(config) if r['id'] == publisher_id]
    return record


@pytest.mark.parametrize('world', WORLDS)
def test_another_host_cannot_overwrite_delete_purge_or_outlive(
        world, server, processes, tmp_path):
    host_a = write_config(tmp_path, **server.options('host-a'))
    watcher = write_config(tmp_path, **server.options('watcher'))
    publisher = _host_worker(processes, world, host_a, HOST_A)
    a_id = _ready(publisher)['ready']
    a_key = records.key(HOST_A, a_id)
    before = _record_of(watcher, a_id)
    watch = _watch(processes, watcher)
    watch.next(_event('present', a_id))
    attacker = Attacker(server)
    b_key = records.key(HOST_B, records.publisher_uuid('x', HOST_B))
    kv = '$KV.%s.' % BUCKET
    api = '$JS.API.STREAM.%s.KV_' + BUCKET

    async def attack(nc):
        answers = {}
        # Overwrite and delete A's record: not B's subjects.
        await nc.publish(kv + a_key, json.dumps(before).encode())
        await nc.publish(kv + a_key, b'', headers={'KV-Operation': 'DEL'})
        # Purge the whole bucket from B's own key, or keep a record past
        # the TTL: the bucket refuses both.
        answers['rollup'] = await _request(
            nc, kv + b_key, b'{}', {'Nats-Rollup': 'all'})
        answers['ttl'] = await _request(
            nc, kv + b_key, b'{}', {'Nats-TTL': 'never'})
        # The stream's own API: not B's subjects either.
        for verb in ('PURGE', 'DELETE', 'UPDATE'):
            await nc.publish(api % verb, b'{}')
        await nc.publish('$JS.API.STREAM.MSG.DELETE.KV_' + BUCKET, b'{}')
        return answers
    answers = attacker.run(attack)
    assert 'rollup not permitted' in answers['rollup'], answers
    assert 'per-message TTL is disabled' in answers['ttl'], answers
    refused = ' '.join(attacker.refused).lower()
    for subject in (kv + a_key, api % 'PURGE', api % 'DELETE',
                    api % 'UPDATE'):
        assert ('permissions violation for publish to "%s"'
                % subject.lower()) in refused, attacker.refused
    time.sleep(2 * TTL)   # anything B did has been seen, or expired
    after = _record_of(watcher, a_id)
    assert (after['pid'], after['started_at']) == (before['pid'],
                                                   before['started_at'])
    assert after['last_activity_timestamp'] > before[
        'last_activity_timestamp']
    # The watcher never saw A change or leave.
    with pytest.raises(WorkerError, match='no message awaited'):
        watch.next(lambda line: line.get('event') != 'present',
                   timeout=0.1)
    # Host A itself may: its publisher closes and its record goes.
    publisher.send('close')
    watch.next(_event('leave', a_id, left='closed'), timeout=10)


@pytest.mark.parametrize('world', WORLDS)
def test_a_record_of_another_hosts_id_is_ignored(world, server, processes,
                                                 tmp_path):
    host_a = write_config(tmp_path, **server.options('host-a'))
    controller = write_config(tmp_path, **server.options(
        'watcher', publisher_events='true', publisher_registry='false'))
    publisher = _host_worker(processes, 'native', host_a, HOST_A)
    a_id = _ready(publisher)['ready']
    watcher = _host_worker(processes, world, controller, HOST_B,
                           '--subscribe')
    _ready(watcher)
    watcher.next(lambda line: (line.get('event') or [None] * 3)[:3] == [
        'publisher', a_id, 'create'])
    record = _record_of(write_config(tmp_path, **server.options('watcher')),
                        a_id)

    async def forge(nc):
        js = nc.jetstream()
        kv = '$KV.%s.' % BUCKET
        # A's record, id and all, under B's own token; and one claiming
        # to be of host B that carries A's id.
        copy = records.key(HOST_B, a_id)
        await js.publish(kv + copy, json.dumps(record).encode())
        await js.publish(kv + copy, json.dumps(dict(
            record, host=HOST_B)).encode())
        # Then deleted: a watcher would have taken A as gone.
        await js.publish(kv + copy, b'', headers={'KV-Operation': 'DEL'})
        # Last, a record that is no record: once the watcher counted it,
        # it has seen all of the above (the watch keeps the stream order).
        await js.publish(kv + records.key(HOST_B, records.publisher_uuid(
            'marker', HOST_B)), b'not a record')
    attacker = Attacker(server)
    attacker.run(forge)
    assert attacker.refused == []   # B's own keys: allowed
    stats = _stats_once(watcher, lambda s: s.get('registry_malformed'))
    assert stats.get('registry_forged') == 2, stats
    events = [line['event'][:3] for line in watcher.received()
              if (line.get('event') or [None])[0] == 'publisher']
    assert events == [['publisher', a_id, 'create']], events


def test_another_host_cannot_exhaust_a_hosts_slots(server, processes,
                                                   tmp_path):
    host_a = write_config(tmp_path, **server.options('host-a'))
    watcher = write_config(tmp_path, **server.options('watcher'))
    first = _host_worker(processes, 'native', host_a, HOST_A)
    a_id = _ready(first)['ready']
    process = _record_of(watcher, a_id)['process']
    first.kill()   # its slot is free for the next process of host A
    slot_ids = [records.publisher_uuid(process, HOST_A, slot)
                for slot in range(records.MAX_SLOTS)]
    assert slot_ids[0] == a_id

    async def exhaust(nc):
        kv = '$KV.%s.' % BUCKET
        for slot, publisher_id in enumerate(slot_ids):
            value = json.dumps({
                'id': publisher_id, 'role': 'x', 'host': HOST_A,
                'pid': 1, 'process': process, 'slot': slot}).encode()
            # A's keys: refused. B's own, with A's ids: stored, ignored.
            await nc.publish(kv + records.key(HOST_A, publisher_id), value)
            await nc.publish(kv + records.key(HOST_B, publisher_id), value)
    attacker = Attacker(server)
    attacker.run(exhaust)
    refused = [e for e in attacker.refused if 'permissions violation' in e]
    # The server reports a refused subject at most so often: at least one.
    assert refused and all(records.host_token(HOST_A).lower() in e.lower()
                           for e in refused), attacker.refused
    parent = _host_worker(processes, 'native', host_a, HOST_A, '--fork',
                          '2')
    ids = {_ready(parent)['ready'], _ready(parent)['ready']}
    assert ids == set(slot_ids[:2])
    assert {r['id'] for r in _list(watcher)} == ids


@pytest.mark.parametrize('world', WORLDS)
def test_forged_records_cannot_evict_a_registered_stream(world, nats_server,
                                                         tmp_path):
    """On a server where anyone may write the registry: 4,200 forged
    publishers and a stream of each do not push the real stream out.
    """
    out = _finish(_start(world, 'forged_registry_streams', [nats_server.url],
                         tmp_path, module='registry_scenarios'),
                  timeout=300)
    assert 'the real gap gave 1 sync' in out, out
    print('%s: %s' % (world, out.strip()))
