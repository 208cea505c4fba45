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

"""The publisher registry under a flood of records (issue 19, item 2).

A writer with a publisher's rights on the bucket (a raw nats-py client in
this process: what anyone allowed to publish on ``$KV.<bucket>.>`` can
do) floods it while a controller with ``publisher_events`` watches it
(tests/functional/registry_worker.py, in both worlds). The bucket's
limits refuse or bound what is stored, the controller's memory stays
bounded and comes back when the records go, and what it drops is counted
in the counters its df-nats service shows. Each test prints its figures
(``pytest -s``).
"""

import asyncio
import json
import os
import time
import uuid

import nats
import pytest

from df_nats.registry import registration
from df_nats.testing.worker_process import WorkerProcess

from tests.functional.test_driver import ROOT
from tests.functional.test_driver import WORLDS
from tests.functional.test_registry import _ready
from tests.functional.test_registry import _worker
from tests.functional.test_registry import write_config

MIB = 1024 * 1024


@pytest.fixture
def processes():
    """start(module, args, world): a worker, killed at the end."""
    started = []

    def start(module, args=(), world='native'):
        process = WorkerProcess(module, args, world=world, paths=[ROOT],
                                cwd=ROOT, new_session=True)
        started.append(process)
        return process
    yield start
    for process in started:
        process.kill()


@pytest.fixture
def bucket_name():
    return 'reg_%s' % uuid.uuid4().hex[:10]


def rss_mib(pid, field='VmRSS'):
    """Resident memory of process ``pid`` (or its peak, VmHWM) in MiB."""
    with open('/proc/%d/status' % pid) as status:
        for line in status:
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024.0
    raise AssertionError('no %s for pid %d' % (field, pid))


def disk_mib(path):
    """Bytes of the files under ``path``, in MiB."""
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(directory, name))
            except OSError:
                pass  # removed meanwhile
    return total / MIB


def forged_record(host, process='neutron-server', slot=0, pad=0):
    """A record as a df-nats publisher writes it, ``pad`` bytes longer."""
    publisher_id = registration.publisher_uuid(process, host, slot)
    record = {'id': publisher_id, 'role': 'neutron-server', 'host': host,
              'pid': 1, 'process': process, 'slot': slot,
              'uri': 'df-nats:dragonflow/%s' % publisher_id,
              'started_at': time.time(),
              'last_activity_timestamp': time.time(), 'version': '9.9.9'}
    if pad:
        record['pad'] = 'x' * pad
    return publisher_id, record


async def flood(url, bucket, items, user=None, password=None):
    """Publish ``items`` ((key, bytes) pairs) into ``bucket``'s subjects
    as plain NATS messages, as fast as the server takes them; the seconds
    it took.
    """
    nc = await nats.connect(url, user=user, password=password,
                            connect_timeout=5, allow_reconnect=False,
                            pending_size=64 * MIB)
    started = time.monotonic()
    try:
        for count, (key, value) in enumerate(items, 1):
            await nc.publish('$KV.%s.%s' % (bucket, key), value)
            if count % 200 == 0:
                await nc.flush(timeout=60)
        await nc.flush(timeout=60)
    finally:
        await nc.close()
    return time.monotonic() - started


async def stream_state(url, bucket):
    """(messages, bytes, config) of the bucket's stream."""
    nc = await nats.connect(url, connect_timeout=5, allow_reconnect=False)
    try:
        info = await nc.jetstream().stream_info('KV_' + bucket)
        return info.state.messages, info.state.bytes, info.config
    finally:
        await nc.close()


def _big_records(count, size):
    # Valid records but for their size, each under a key of its own, as
    # the writer sent them (the key layout does not matter: the
    # bucket refuses them whatever their key).
    for i in range(count):
        publisher_id, record = forged_record('flood-%d.example.net' % i)
        value = json.dumps(record).encode()
        record['pad'] = 'x' * (size - len(value) - len(', "pad": ""'))
        yield publisher_id, json.dumps(record).encode()


def _watch_rss(pid, seconds, every=0.25):
    """The highest RSS of ``pid`` seen within ``seconds``."""
    peak = 0.0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        peak = max(peak, rss_mib(pid))
        time.sleep(every)
    return peak


@pytest.mark.parametrize('world', WORLDS)
def test_flood_of_big_records_is_refused(world, fresh_nats_server,
                                         bucket_name, processes, tmp_path):
    """18,000 records of 64 KiB: the bucket refuses them; the watching
    controller stays under 100 MB, the server's store under max_bytes.
    """
    server, bucket = fresh_nats_server, bucket_name
    # A TTL longer than the flood: without limits it would all be held.
    config = write_config(tmp_path, servers=server.url,
                          registry_bucket=bucket, publisher_ttl=60.0,
                          heartbeat_interval=3.0, publisher_events='true')
    controller = _worker(processes, world, config, '--subscribe')
    own_id = _ready(controller)['ready']
    before = rss_mib(controller.pid)
    server_before = rss_mib(server.pid)
    seconds = asyncio.run(flood(server.url, bucket,
                                _big_records(18000, 64 * 1024)))
    peak = max(_watch_rss(controller.pid, 5.0), rss_mib(controller.pid,
                                                        'VmHWM'))
    messages, stored, config_ = asyncio.run(stream_state(server.url, bucket))
    figures = {
        'world': world, 'written': 18000, 'seconds': round(seconds, 1),
        'stored_messages': messages, 'stored_mib': round(stored / MIB, 2),
        'max_bytes_mib': round(config_.max_bytes / MIB, 2)
        if config_.max_bytes and config_.max_bytes > 0 else None,
        'controller_rss_mib': [round(before, 1), round(peak, 1)],
        'server_rss_mib': [round(server_before, 1),
                           round(rss_mib(server.pid), 1)],
        'server_disk_mib': round(disk_mib(server.store_dir), 1)}
    print('FLOOD %s' % json.dumps(figures, sort_keys=True))
    assert config_.max_bytes and 0 < config_.max_bytes <= 64 * MIB
    assert stored <= config_.max_bytes
    # Nothing of 64 KiB got in: only the controller's own record.
    assert messages == 1, figures
    assert peak < 100, figures
    assert disk_mib(server.store_dir) < config_.max_bytes / MIB + 8, figures
    # The controller's own registration survived the flood.
    controller.send('send', n=1)
    controller.next(lambda line: line.get('sent') == 1)
    assert own_id
