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

"""The publisher registry on a real nats-server with JetStream.

Publishers are real processes (tests/functional/registry_worker.py) in an
eventlet or a native world; the watcher is the ``df-nats publishers --watch
--json`` command an operator would run. Each test uses a bucket of its own,
with a short TTL so that expiries fit in a test run.
"""

import asyncio
import json
import subprocess
import sys
import time
import uuid

import nats
import pytest

from df_nats.testing.embedded_cluster import NatsCluster
from df_nats.testing.worker_process import child_env
from df_nats.testing.worker_process import WorkerError
from df_nats.testing.worker_process import WorkerProcess

from tests.functional.test_driver import ROOT
from tests.functional.test_driver import WORLDS

TTL = 4.0
HEARTBEAT = 1.0


def write_config(tmp_path, **options):
    """A new ``[df_nats]`` configuration file of ``options``; its path."""
    path = tmp_path / ('%s.conf' % uuid.uuid4().hex[:8])
    lines = ['[df_nats]'] + ['%s = %s' % item for item in options.items()]
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


def _config(tmp_path, urls, bucket, **extra):
    return write_config(tmp_path, servers=','.join(urls),
                        registry_bucket=bucket, publisher_ttl=TTL,
                        heartbeat_interval=HEARTBEAT, **extra)


@pytest.fixture
def processes():
    """start(module, args, world) a worker, or start(argv=[...]) a command
    printing JSON lines; all are killed (with what they forked) at the end.
    """
    started = []

    def start(module=None, args=(), world='native', argv=None):
        process = WorkerProcess(module, args, world=world, argv=argv,
                                paths=[ROOT], cwd=ROOT, new_session=True)
        started.append(process)
        return process
    yield start
    for process in started:
        process.kill()


@pytest.fixture
def bucket():
    return 'reg_%s' % uuid.uuid4().hex[:10]


def _worker(start, world, config, *extra):
    return start('tests.functional.registry_worker',
                 ['--config', config] + list(extra), world=world)


def _watcher(start, config, *extra):
    return start(argv=[sys.executable, '-m', 'df_nats.cmd.main',
                       'publishers', '--watch', '--json', '--config-file',
                       config] + list(extra))


def _ready(worker, error=False):
    line = worker.next(lambda line: line['type'] in ('ready', 'error'))[1]
    assert (line['type'] == 'error') == error, line
    return line


def _event(kind, publisher_id, left=None):
    # A publisher that registered before the watcher's snapshot is shown
    # as "present" rather than as a "join".
    kinds = ('join', 'present') if kind == 'join' else (kind,)

    def match(line):
        pub = line.get('publisher') or {}
        return (line.get('event') in kinds and pub.get('id') == publisher_id
                and (left is None or pub.get('left') == left))
    return match


def _list(config, *extra, may_fail=False):
    out = subprocess.run(
        [sys.executable, '-m', 'df_nats.cmd.main', 'publishers', '--json',
         '--config-file', config] + list(extra),
        cwd=ROOT, env=child_env([ROOT]), capture_output=True, text=True,
        timeout=60)
    if may_fail and out.returncode:
        return []
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize('world', WORLDS)
def test_kill9_expiry_is_seen(world, nats_server, bucket, processes,
                              tmp_path):
    config = _config(tmp_path, [nats_server.url], bucket)
    worker = _worker(processes, world, config)
    publisher_id = _ready(worker)['ready']
    watcher = _watcher(processes, config)
    watcher.next(_event('present', publisher_id))
    killed_at = time.monotonic()
    worker.kill()
    seen_at, line = watcher.next(_event('leave', publisher_id),
                                 timeout=TTL + 5)
    assert line['publisher']['left'] == 'expired'
    assert seen_at - killed_at <= TTL + 2, seen_at - killed_at
    assert publisher_id not in [r['id'] for r in _list(config)]


@pytest.mark.parametrize('world', WORLDS)
def test_close_is_seen_within_a_second(world, nats_server, bucket,
                                       processes, tmp_path):
    config = _config(tmp_path, [nats_server.url], bucket)
    watcher = _watcher(processes, config)
    worker = _worker(processes, world, config)
    publisher_id = _ready(worker)['ready']
    watcher.next(_event('join', publisher_id))
    asked_at = time.monotonic()
    worker.send('close')
    seen_at, line = watcher.next(_event('leave', publisher_id), timeout=5)
    assert line['publisher']['left'] == 'closed'
    assert seen_at - asked_at < 1.0, seen_at - asked_at


def test_live_publisher_stays_across_ttls(nats_server, bucket, processes,
                                          tmp_path):
    config = _config(tmp_path, [nats_server.url], bucket)
    watcher = _watcher(processes, config)
    worker = _worker(processes, 'eventlet', config)
    publisher_id = _ready(worker)['ready']
    watcher.next(_event('join', publisher_id))
    first = _list(config)[0]['last_activity_timestamp']
    time.sleep(3 * TTL)
    with pytest.raises(WorkerError, match='no message awaited'):
        watcher.next(lambda line: line.get('event') != 'present',
                     timeout=0.1)
    records = _list(config)
    assert [r['id'] for r in records] == [publisher_id]
    assert records[0]['last_activity_timestamp'] > first + 2 * TTL


def test_restarted_process_takes_its_id_back(nats_server, bucket,
                                             processes, tmp_path):
    config = _config(tmp_path, [nats_server.url], bucket)
    first = _worker(processes, 'native', config)
    ready = _ready(first)
    first.kill()
    second = _ready(_worker(processes, 'native', config))
    assert second['ready'] == ready['ready']
    assert second['pid'] != ready['pid']
    records = _list(config)
    assert [(r['id'], r['pid']) for r in records] == [
        (second['ready'], second['pid'])]


@pytest.mark.parametrize('world', WORLDS)
def test_forked_workers_get_distinct_stable_ids(world, nats_server, bucket,
                                                processes, tmp_path):
    config = _config(tmp_path, [nats_server.url], bucket)

    def start_two():
        parent = _worker(processes, world, config, '--fork', '2')
        ids = {_ready(parent)['ready'], _ready(parent)['ready']}
        return parent, ids

    parent, ids = start_two()
    assert len(ids) == 2
    assert {r['id'] for r in _list(config)} == ids
    parent.kill()  # the whole process group: parent and workers
    _, again = start_two()
    assert again == ids


def test_role_filter(nats_server, bucket, processes, tmp_path):
    ids = {}
    for role in ('alpha', 'beta'):
        config = _config(tmp_path, [nats_server.url], bucket, role=role)
        # Distinct process names, as two services on one host would have.
        ids[role] = _ready(_worker(processes, 'native', config,
                                   '--fork', '1'))['ready']
    assert [r['id'] for r in _list(config, '--role', 'alpha')] == [
        ids['alpha']]
    assert {r['role'] for r in _list(config)} == {'alpha', 'beta'}
    assert _list(config, '--role', 'gamma') == []


async def _create_bucket(url, bucket, ttl):
    nc = await nats.connect(url)
    try:
        await nc.jetstream().create_key_value(bucket=bucket, ttl=ttl)
    finally:
        await nc.close()


@pytest.mark.parametrize('world', WORLDS)
def test_incompatible_bucket_is_a_clear_error(world, nats_server, bucket,
                                              processes, tmp_path):
    asyncio.run(_create_bucket(nats_server.url, bucket, 60.0))
    config = _config(tmp_path, [nats_server.url], bucket)
    line = _ready(_worker(processes, world, config), error=True)
    assert 'ConfigError' in line['reason']
    assert '[df_nats] publisher_ttl' in line['reason']
    assert '60.0 s' in line['reason']


@pytest.mark.parametrize('world', WORLDS)
def test_without_jetstream_pubsub_works_and_errs_once(
        world, nats_server_no_js, bucket, processes, tmp_path):
    config = _config(tmp_path, [nats_server_no_js.url], bucket)
    worker = _worker(processes, world, config, '--subscribe')
    _ready(worker)
    worker.send('send', n=5)
    for seq in range(5):  # the events come back in order
        worker.next(lambda line, key='key-%d' % seq:
                    (line.get('event') or [None, None])[1] == key)
    worker.next(lambda line: line.get('sent') == 5)
    time.sleep(3 * HEARTBEAT)  # several failed registration retries
    worker.send('exit')
    assert worker.wait(20) == 0
    errors = [line for line in worker.stderr_text(None).splitlines()
              if 'publisher registry unavailable' in line]
    assert len(errors) == 1, worker.stderr
    assert 'JetStream is not enabled' in errors[0]


def test_publisher_events_reach_the_callback(nats_server, bucket,
                                             processes, tmp_path):
    config = _config(tmp_path, [nats_server.url], bucket)
    other = _worker(processes, 'native', config, '--fork', '1')
    other_id = _ready(other)['ready']
    listening = _config(tmp_path, [nats_server.url], bucket,
                        publisher_events='true')
    worker = _worker(processes, 'eventlet', listening, '--subscribe')
    own_id = _ready(worker)['ready']

    def table_event(action, key):
        return lambda line: (line.get('event') or [None] * 3)[:3] == [
            'publisher', key, action]
    _, line = worker.next(table_event('create', other_id))
    value = json.loads(line['event'][3])
    assert set(value) == {'id', 'uri', 'last_activity_timestamp'}
    assert value['id'] == other_id
    worker.next(table_event('create', own_id))
    other.kill()
    _, line = worker.next(table_event('delete', other_id), timeout=TTL + 5)
    assert line['event'][3] is None


def test_watch_survives_a_server_restart(fresh_nats_server, bucket,
                                         processes, tmp_path):
    config = _config(tmp_path, [fresh_nats_server.url], bucket)
    worker = _worker(processes, 'native', config)
    publisher_id = _ready(worker)['ready']
    watcher = _watcher(processes, config)
    watcher.next(_event('present', publisher_id))
    fresh_nats_server.restart()
    time.sleep(2 * HEARTBEAT)  # both clients reconnect
    worker.send('close')
    watcher.next(_event('leave', publisher_id, left='closed'), timeout=10)
    late = _ready(_worker(processes, 'native', config, '--fork', '1'))
    watcher.next(_event('join', late['ready']), timeout=10)


async def _replicas(url, bucket):
    nc = await nats.connect(url)
    try:
        kv = await nc.jetstream().key_value(bucket)
        return (await kv.status()).stream_info.config.num_replicas
    finally:
        await nc.close()


def test_replicated_registry_on_a_cluster(nats_cluster, bucket, processes,
                                          tmp_path):
    first, second, third = nats_cluster.urls
    ids = []
    for url in (first, second):
        config = _config(tmp_path, [url], bucket, kv_replicas=3)
        ids.append(_ready(_worker(processes, 'native', config,
                                  '--fork', '1'))['ready'])
    assert asyncio.run(_replicas(third, bucket)) == 3
    listed = _list(_config(tmp_path, [third], bucket))
    assert sorted(r['id'] for r in listed) == sorted(ids)


def test_start_and_publish_while_jetstream_has_no_quorum(processes,
                                                         tmp_path):
    with NatsCluster(size=3, jetstream=True, name='df-nats-quorum') as c:
        bucket = 'quorum'
        config = _config(tmp_path, [c.urls[0]], bucket, kv_replicas=3)
        _ready(_worker(processes, 'native', config, '--fork', '1'))
        c.nodes[1].stop()
        c.nodes[2].stop()
        started = time.monotonic()
        worker = _worker(processes, 'eventlet', config, '--subscribe')
        pid = _ready(worker)['pid']
        # initialize() gave up waiting for the registry, not for NATS.
        assert time.monotonic() - started < 20
        worker.send('send', n=3)
        for seq in range(3):
            worker.next(lambda line, key='key-%d' % seq:
                        (line.get('event') or [None, None])[1] == key)
        c.nodes[1].start()
        c.nodes[2].start()
        c.wait_formed()
        deadline = time.monotonic() + 30
        # The CLI may fail while the stream elects its leader again.
        while pid not in [r['pid'] for r in _list(config, may_fail=True)]:
            assert time.monotonic() < deadline, 'never registered'
            time.sleep(1)
