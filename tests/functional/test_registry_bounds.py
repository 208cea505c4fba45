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
from nats.js import api as js_api
import pytest

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
    name = '%s.%s' % (process, host) + ('.%d' % slot if slot else '')
    publisher_id = str(uuid.uuid5(uuid.NAMESPACE_DNS, name))
    record = {'id': publisher_id, 'role': 'neutron-server', 'host': host,
              'pid': 1, 'process': process, 'slot': slot,
              'uri': 'df-nats:dragonflow/%s' % publisher_id,
              'started_at': time.time(),
              'last_activity_timestamp': time.time(), 'version': '9.9.9'}
    if pad:
        record['pad'] = 'x' * pad
    return publisher_id, record


def owned_key(host, publisher_id):
    """The key of ``publisher_id`` on ``host`` (a name of letters, digits,
    "-" and "."), spelt out: df_nats.registry.records.key().
    """
    return '%s.%s' % (host.lower().replace('.', '=2E'), publisher_id)


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


async def create_unlimited_bucket(url, bucket, ttl, storage=None):
    """The bucket as an earlier df-nats made it: nats-py's defaults, no
    size limit, limit markers (and so rollups and message TTLs) on.
    """
    nc = await nats.connect(url, connect_timeout=5, allow_reconnect=False)
    try:
        await nc.jetstream().create_key_value(
            bucket=bucket, history=1, ttl=ttl, limit_marker_ttl=1.0,
            storage=storage)
    finally:
        await nc.close()


def _subscriber_counters(url, pid):
    """The subscriber counters process ``pid`` shows (``df-nats stats``)."""
    from tests.functional.test_stats import _stats_json
    for record in _stats_json(url):
        if record.get('pid') == pid:
            return record['subscriber']
    raise AssertionError('process %d not listed by df-nats stats' % pid)


@pytest.mark.parametrize('world', WORLDS)
def test_flood_of_a_bucket_without_limits_is_dropped_and_counted(
        world, fresh_nats_server, bucket_name, processes, tmp_path):
    """A bucket of an earlier df-nats stores the 18,000 records of 64 KiB;
    the watching controller drops each unread, counts it, and stays
    under 100 MB.
    """
    server, bucket = fresh_nats_server, bucket_name
    # Held in the server's memory: a file store takes at most 75% of the
    # disk that is free, and a CI machine may have less than the 1.1 GB.
    asyncio.run(create_unlimited_bucket(server.url, bucket, 60.0,
                                        storage=js_api.StorageType.MEMORY))
    config = write_config(tmp_path, servers=server.url,
                          registry_bucket=bucket, publisher_ttl=60.0,
                          heartbeat_interval=3.0, publisher_events='true')
    controller = _worker(processes, world, config, '--subscribe')
    _ready(controller)
    before = rss_mib(controller.pid)
    seconds = asyncio.run(flood(server.url, bucket,
                                _big_records(18000, 64 * 1024)))
    # Every record the server stored but the controller's own is dropped;
    # the wait ends when the count stops moving for a minute.
    peak, counted, moved = 0.0, -1, time.monotonic()
    while True:
        peak = max(peak, rss_mib(controller.pid))
        counters = _subscriber_counters(server.url, controller.pid)
        if counters['registry_oversized'] >= 18000:
            break
        if counters['registry_oversized'] != counted:
            counted, moved = counters['registry_oversized'], time.monotonic()
        assert time.monotonic() - moved < 60, (
            'counted %d oversized records, then nothing for 60 s; the'
            ' bucket holds %d messages' % (
                counted, asyncio.run(stream_state(server.url, bucket))[0]))
        time.sleep(1.0)
    peak = max(peak, rss_mib(controller.pid, 'VmHWM'))
    messages, stored, _ = asyncio.run(stream_state(server.url, bucket))
    figures = {'world': world, 'written': 18000, 'seconds': round(seconds, 1),
               'stored_messages': messages,
               'stored_mib': round(stored / MIB, 1),
               'controller_rss_mib': [round(before, 1), round(peak, 1),
                                      round(rss_mib(controller.pid), 1)],
               'oversized': counters['registry_oversized']}
    print('UNLIMITED %s' % json.dumps(figures, sort_keys=True))
    assert counters['registry_oversized'] == 18000, figures
    assert peak < 100, figures
    # No publisher event for any of them.
    assert _publisher_events(controller, 'create') == 0
    err = controller.stderr_text(None)
    assert 'registry_max_bytes' in err and 'nats kv del %s' % bucket in err


def _own_id(worker):
    return [m for m in worker.received() if m.get('type') == 'ready'][0][
        'ready']


def _valid_records(count, size, batch=0):
    # Records each of a host of its own, as valid as a reader can tell
    # (on a server that lets anyone write any key), padded to ``size``
    # with a field df-nats does not know.
    for i in range(count):
        host = 'forged-%d-%d.example.net' % (batch, i)
        publisher_id, record = forged_record(host)
        value = json.dumps(record).encode()
        record['pad'] = 'x' * (size - len(value) - len(', "pad": ""'))
        yield owned_key(host, publisher_id), json.dumps(record).encode()


def _publisher_events(worker, action):
    """How many ``publisher`` events ``action`` of others ``worker`` got."""
    own_id = _own_id(worker)
    return sum(1 for m in worker.received()
               if (m.get('event') or [None])[0] == 'publisher'
               and m['event'][2] == action and m['event'][1] != own_id)


def _flood_and_expire(server, bucket, controller, batch):
    """18,000 records of 4 KiB, then their expiry; the figures."""
    before = rss_mib(controller.pid)
    created = _publisher_events(controller, 'create')
    seconds = asyncio.run(flood(server.url, bucket,
                                _valid_records(18000, 4000, batch)))
    messages, stored, config_ = asyncio.run(stream_state(server.url,
                                                         bucket))
    server_rss, server_disk = rss_mib(server.pid), disk_mib(server.store_dir)
    peak = 0.0
    deadline = time.monotonic() + 180
    # This batch's publishers joined, then expired: no new one for 2 s,
    # and as many left.
    last, steady = created, time.monotonic()
    while True:
        peak = max(peak, rss_mib(controller.pid))
        joined = _publisher_events(controller, 'create')
        left = _publisher_events(controller, 'delete')
        if joined != last:
            last, steady = joined, time.monotonic()
        elif (joined > created and left == joined
              and time.monotonic() - steady > 2.0):
            break
        assert time.monotonic() < deadline, (joined, left)
        time.sleep(0.5)
    time.sleep(2.0)   # the trim runs every half second
    return {'written': 18000, 'seconds': round(seconds, 1),
            'stored_messages': messages, 'stored_mib': round(stored / MIB, 1),
            'max_bytes_mib': round(config_.max_bytes / MIB, 1),
            'held': joined - created,
            'controller_rss_mib': [round(before, 1), round(peak, 1),
                                   round(rss_mib(controller.pid), 1)],
            'server_rss_mib': round(server_rss, 1),
            'server_disk_mib': round(server_disk, 1)}


@pytest.mark.parametrize('world', WORLDS)
def test_watch_holds_bounded_records_and_gives_memory_back(
        world, fresh_nats_server, bucket_name, processes, tmp_path):
    """18,000 valid records of 4 KiB, twice: the bucket keeps what fits in
    max_bytes, the controller holds them in less than 100 MB, and what
    the first batch took is what the second one reuses.
    """
    server, bucket = fresh_nats_server, bucket_name
    config = write_config(tmp_path, servers=server.url,
                          registry_bucket=bucket, publisher_ttl=20.0,
                          heartbeat_interval=3.0, publisher_events='true')
    controller = _worker(processes, world, config, '--subscribe')
    _ready(controller)
    time.sleep(2.0)
    first = _flood_and_expire(server, bucket, controller, 0)
    print('HELD %s %s' % (world, json.dumps(first, sort_keys=True)))
    second = _flood_and_expire(server, bucket, controller, 1)
    print('HELD %s %s' % (world, json.dumps(second, sort_keys=True)))
    for figures in (first, second):
        assert figures['stored_mib'] <= figures['max_bytes_mib'], figures
        assert figures['server_disk_mib'] < figures['max_bytes_mib'] + 8
        # What fitted in max_bytes, all held (one host each).
        assert 10000 < figures['held'] < 18000, figures
        assert figures['controller_rss_mib'][1] < 100, figures
    before, _, after = first['controller_rss_mib']
    # Before the fix 1.1 GB stayed. What stays now is Python's arenas and
    # the allocator's free lists: 14-24 MB measured (the eventlet world
    # the most, under load), reused by the next batch as checked below.
    assert after < before + 35, first
    # Memory comes back to the allocator: the second batch reuses it.
    assert second['controller_rss_mib'][2] < after + 5, second
