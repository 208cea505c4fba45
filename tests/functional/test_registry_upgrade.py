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

"""Upgrading to the bounded, host-owned registry (issue 19).

An earlier df-nats made the bucket with nats-py's defaults (no size
limit, limit markers and so rollups and message TTLs) and wrote records
under ``<publisher id>``. This df-nats uses such a bucket with one
warning naming the options, makes it again with its limits once the
operator deletes it, and lists records of the old layout (once per id)
while the upgrade runs.
"""

import asyncio
import json
import time
import uuid

import nats
import pytest

from df_nats.testing.worker_process import WorkerProcess

from tests.functional.test_driver import ROOT
from tests.functional.test_driver import WORLDS
from tests.functional.test_registry import _config
from tests.functional.test_registry import _event
from tests.functional.test_registry import _list
from tests.functional.test_registry import _ready
from tests.functional.test_registry import _watcher
from tests.functional.test_registry import _worker
from tests.functional.test_registry import HEARTBEAT
from tests.functional.test_registry import TTL
from tests.functional.test_registry_bounds import create_unlimited_bucket
from tests.functional.test_registry_bounds import owned_key


@pytest.fixture
def bucket():
    return 'reg_%s' % uuid.uuid4().hex[:10]


@pytest.fixture
def start():
    """start(module, args, world) a worker, or start(argv=[...]) a
    command; all are killed at the end.
    """
    started = []

    def run(module=None, args=(), world='native', argv=None):
        process = WorkerProcess(module, args, world=world, argv=argv,
                                paths=[ROOT], cwd=ROOT, new_session=True)
        started.append(process)
        return process
    yield run
    for process in started:
        process.kill()


async def _stream_config(url, bucket):
    nc = await nats.connect(url, connect_timeout=5, allow_reconnect=False)
    try:
        return (await nc.jetstream().stream_info('KV_' + bucket)).config
    finally:
        await nc.close()


async def _delete_bucket(url, bucket):
    nc = await nats.connect(url, connect_timeout=5, allow_reconnect=False)
    try:
        await nc.jetstream().delete_key_value(bucket)
    finally:
        await nc.close()


async def _put(url, bucket, key, record):
    nc = await nats.connect(url, connect_timeout=5, allow_reconnect=False)
    try:
        await nc.jetstream().publish('$KV.%s.%s' % (bucket, key),
                                     json.dumps(record).encode())
    finally:
        await nc.close()


def _warnings(worker):
    return [line for line in worker.stderr_text(None).splitlines()
            if 'WARNING' in line and 'registry bucket' in line]


@pytest.mark.parametrize('world', WORLDS)
def test_a_bucket_of_an_earlier_df_nats_is_used_with_one_warning(
        world, fresh_nats_server, bucket, start, tmp_path):
    server = fresh_nats_server
    asyncio.run(create_unlimited_bucket(server.url, bucket, TTL))
    config = _config(tmp_path, [server.url], bucket)
    worker = _worker(start, world, config)
    publisher_id = _ready(worker)['ready']
    assert [r['id'] for r in _list(config)] == [publisher_id]
    time.sleep(3 * HEARTBEAT)
    [warning] = _warnings(worker)
    for needle in ('registry_max_bytes', 'registry_max_record_size',
                   'rollup headers allowed', 'per-message TTLs allowed',
                   'nats kv del %s' % bucket):
        assert needle in warning, warning


def test_deleting_the_bucket_has_it_made_again_with_its_limits(
        fresh_nats_server, bucket, start, tmp_path):
    server = fresh_nats_server
    asyncio.run(create_unlimited_bucket(server.url, bucket, TTL))
    config = _config(tmp_path, [server.url], bucket)
    worker = _worker(start, 'native', config)
    publisher_id = _ready(worker)['ready']
    watcher = _watcher(start, config)
    watcher.next(_event('present', publisher_id))
    asyncio.run(_delete_bucket(server.url, bucket))
    # The publisher's next heartbeats make it again, with the limits.
    deadline = time.monotonic() + 10 * HEARTBEAT
    while True:
        try:
            stream = asyncio.run(_stream_config(server.url, bucket))
            if publisher_id in [r['id'] for r in _list(config)]:
                break
        except Exception:
            pass  # not made again yet
        assert time.monotonic() < deadline, 'the bucket was not made again'
        time.sleep(0.5)
    assert stream.max_bytes == 64 * 1024 * 1024
    assert stream.max_msg_size == 4096
    assert not stream.allow_rollup_hdrs and not stream.allow_msg_ttl
    # The watch goes on: it sees the publisher close.
    worker.send('close')
    watcher.next(_event('leave', publisher_id, left='closed'), timeout=20)


def _old_record(host, process='neutron-server', slot=0, pid=4242):
    name = '%s.%s' % (process, host) + ('.%d' % slot if slot else '')
    publisher_id = str(uuid.uuid5(uuid.NAMESPACE_DNS, name))
    return publisher_id, {
        'id': publisher_id, 'role': 'neutron-server', 'host': host,
        'pid': pid, 'process': process, 'slot': slot,
        'uri': 'df-nats:dragonflow/%s' % publisher_id,
        'started_at': time.time(), 'last_activity_timestamp': time.time(),
        'version': '0.0.1'}


def test_records_of_the_old_layout_are_listed_once_per_id(
        fresh_nats_server, bucket, start, tmp_path):
    server = fresh_nats_server
    config = _config(tmp_path, [server.url], bucket)
    worker = _worker(start, 'native', config)
    _ready(worker)   # the bucket, made by this df-nats
    # A publisher not upgraded yet, under its id alone ...
    old_id, old = _old_record('net-old.example.net')
    asyncio.run(_put(server.url, bucket, old_id, old))
    # ... and one restarted during the upgrade: both layouts, one id.
    both_id, both = _old_record('net-new.example.net')
    asyncio.run(_put(server.url, bucket, both_id, both))
    asyncio.run(_put(server.url, bucket,
                     owned_key('net-new.example.net', both_id),
                     dict(both, pid=4343)))
    listed = {r['id']: r for r in _list(config)}
    assert listed[old_id]['legacy'] is True
    assert listed[old_id]['host'] == 'net-old.example.net'
    assert 'legacy' not in listed[both_id]
    assert listed[both_id]['pid'] == 4343
    assert len(listed) == 3, listed
