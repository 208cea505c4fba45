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

"""The registry watch's bounds and its view of ids, without a server."""

import asyncio
import collections
import json
import types

from df_nats.conf import options
from df_nats.registry import records
from df_nats.registry import watch as registry_watch


def _conn(max_records=100):
    conf = types.SimpleNamespace(registry_bucket='b',
                                 registry_max_record_size=4096,
                                 registry_max_records=max_records)
    world = types.SimpleNamespace(post=lambda fn, *args: fn(*args))
    return types.SimpleNamespace(conf=conf, bridge=types.SimpleNamespace(
        world=world, on_loop_thread=lambda: True))


def _watch(max_records=100):
    events = []
    watch = registry_watch.PublisherWatch(
        _conn(max_records), on_change=lambda kind, r: events.append(
            (kind, r['id'], r.get('left'))), stats=collections.Counter())
    watch._snapshot = None  # running, past its snapshot
    return watch, events


def _message(key, host='h.example.net', slot=0, headers=None, **fields):
    publisher_id = records.publisher_uuid('p', host, slot)
    record = {'id': publisher_id, 'role': 'r', 'host': host, 'pid': 7,
              'process': 'p', 'slot': slot}
    record.update(fields)
    if key is None:
        key = records.key(host, publisher_id)
    return types.SimpleNamespace(
        subject='$KV.b.' + key, data=json.dumps(record).encode(),
        headers=headers, metadata=types.SimpleNamespace(num_pending=0))


def _deliver(watch, msg):
    asyncio.run(watch._on_message(msg))


def test_held_records_are_bounded_in_count_and_per_host():
    held = registry_watch._Held(limit=5, host_limit=2)
    assert held.admit('a.1', {}) and held.admit('a.2', {})
    assert not held.admit('a.3', {})       # host a is full
    assert held.admit('a.1', {'new': 1})   # a refresh always goes in
    assert held.admit('b.1', {}) and held.admit('legacy', {})
    assert held.admit('c.1', {})
    assert not held.admit('d.1', {})       # 5 held
    assert held.remove('a.1') == {'new': 1}
    assert held.admit('a.3', {})


def test_held_dicts_are_rebuilt_when_they_shrink():
    held = registry_watch._Held(limit=10000, host_limit=10000)
    for i in range(4000):
        held.admit('h.%d' % i, {})
    for i in range(3500):
        held.remove('h.%d' % i)
    before = held.records
    assert held.compact() and held.records is not before
    assert len(held.records) == 500 and not held.compact()


def test_watch_drops_and_counts_what_it_cannot_hold():
    watch, events = _watch(max_records=options.MIN_RECORDS)
    for slot in range(40):
        _deliver(watch, _message(None, host='h%d' % slot))
    assert len(watch._known.records) == options.MIN_RECORDS
    assert watch.stats['registry_over_limit'] == 40 - options.MIN_RECORDS
    assert watch.stats['registry_joins'] == options.MIN_RECORDS


def test_watch_holds_at_most_max_host_records_of_one_host():
    watch, events = _watch(max_records=10000)
    for process in range(5):
        for slot in range(256):
            msg = _message(None, slot=slot, process='p%d' % process)
            record = json.loads(msg.data)
            record['id'] = records.publisher_uuid('p%d' % process,
                                                  record['host'], slot)
            msg.data = json.dumps(record).encode()
            msg.subject = '$KV.b.' + records.key(record['host'],
                                                 record['id'])
            _deliver(watch, msg)
    assert len(watch._known.records) == options.MAX_HOST_RECORDS
    assert watch.stats['registry_over_limit'] == 5 * 256 - 1024


def test_watch_counts_each_kind_of_bad_record():
    watch, events = _watch()
    _deliver(watch, _message('x.y.z'))
    _deliver(watch, _message(None, pad='x' * 5000))
    forged = _message(records.key('other.example.net',
                                  records.publisher_uuid('p', 'h.example.net',
                                                         0)))
    _deliver(watch, forged)
    assert (watch.stats['registry_malformed'],
            watch.stats['registry_oversized'],
            watch.stats['registry_forged']) == (1, 1, 1)
    assert events == [] and watch._known.records == {}


def test_a_forged_copy_deleted_is_no_leave_of_the_real_publisher():
    watch, events = _watch()
    real = _message(None)
    _deliver(watch, real)
    publisher_id = json.loads(real.data)['id']
    # The same record under another host's key: ignored, and so is its
    # deletion.
    copy = _message(records.key('b.example.net', publisher_id))
    _deliver(watch, copy)
    copy.headers, copy.data = {'KV-Operation': 'DEL'}, b''
    _deliver(watch, copy)
    assert events == [('join', publisher_id, None)]
    assert watch.stats['registry_forged'] == 1


def test_an_id_held_by_both_layouts_joins_once_and_leaves_once():
    watch, events = _watch()
    new = _message(None)
    publisher_id = json.loads(new.data)['id']
    old = _message(publisher_id)          # the earlier df-nats' key
    _deliver(watch, old)
    _deliver(watch, new)
    assert events == [('join', publisher_id, None)]
    assert [r.get('legacy') for r in asyncio.run(watch._list())] == [None]
    old.headers, old.data = {'KV-Operation': 'DEL'}, b''
    _deliver(watch, old)
    assert len(events) == 1
    new.headers, new.data = {'KV-Operation': 'DEL'}, b''
    _deliver(watch, new)
    assert events[-1] == ('leave', publisher_id, 'closed')


def test_a_restarted_process_under_the_new_layout_is_a_change():
    watch, events = _watch()
    old = _message(None, pid=1)
    publisher_id = json.loads(old.data)['id']
    _deliver(watch, _message(publisher_id, pid=1))
    _deliver(watch, _message(None, pid=2))
    assert events == [('join', publisher_id, None),
                      ('change', publisher_id, None)]


class _JetStream:
    """stream_info answers with ``leader``, or raises ``error``."""

    def __init__(self, leader=None, error=None):
        self.leader, self.error = leader, error

    async def stream_info(self, name):
        assert name == 'KV_b'
        if self.error is not None:
            raise self.error
        return types.SimpleNamespace(
            cluster=types.SimpleNamespace(leader=self.leader))


def _watch_led_by(leader, answer):
    watch, events = _watch()
    watch._leader = leader
    watch._ttl = 10.0
    watch._seen = {'k1': 1.0, 'k2': 2.0}
    watch._js_on_loop = lambda: answer
    return watch, events


def test_records_expire_while_the_bucket_keeps_its_leader():
    watch, _ = _watch_led_by('n1', _JetStream('n1'))
    assert asyncio.run(watch._same_leader())
    assert watch._seen == {'k1': 1.0, 'k2': 2.0}


def test_a_new_leader_gives_every_record_a_new_ttl():
    # Nobody could write while the stream had no leader: live
    # publishers must not be taken as expired.
    watch, events = _watch_led_by('n1', _JetStream('n3'))
    assert not asyncio.run(watch._same_leader())
    assert watch._leader == 'n3'
    assert min(watch._seen.values()) > 2.0 and set(watch._seen) == {
        'k1', 'k2'}
    assert events == []
    assert asyncio.run(watch._same_leader())   # settled on n3


def test_no_answer_expires_nothing_yet():
    watch, _ = _watch_led_by('n1', _JetStream(error=TimeoutError()))
    assert not asyncio.run(watch._same_leader())
    assert watch._leader == 'n1'
    assert watch._seen == {'k1': 1.0, 'k2': 2.0}


def test_a_single_server_has_no_leader_to_change():
    info = types.SimpleNamespace(cluster=None)
    assert registry_watch._leader_of(info) == ''
    assert registry_watch._leader_of(types.SimpleNamespace()) == ''


def _resubscribed(leader_now, missing_key_seen=1.0):
    """A watch that knew two publishers and resubscribed (its own
    connection came back) to find only the first in the bucket.
    """
    watch, events = _watch_led_by('n1', _JetStream(leader_now))
    watch.conn.connected = True
    first, second = _message(None, slot=0), _message(None, slot=1)
    for msg in (first, second):
        _deliver(watch, msg)
    keys = [msg.subject[len('$KV.b.'):] for msg in (first, second)]
    del events[:]
    snapshot = watch._held()
    snapshot.admit(keys[0], watch._known.get(keys[0]))

    async def subscribe():
        watch._snapshot = snapshot
    watch._subscribe = subscribe
    asyncio.run(watch._watch_again())
    return watch, events, keys


def test_a_record_gone_while_we_were_away_leaves():
    watch, events, keys = _resubscribed('n1')
    assert [(kind, left) for kind, _, left in events] == [('leave', 'gone')]
    assert keys[1] not in watch._known.records


def test_a_record_missing_after_a_leader_change_is_left_to_the_clock():
    # While the bucket elected a leader nobody could refresh it: the
    # record may have expired on the servers with its publisher alive.
    watch, events, keys = _resubscribed('n3')
    assert events == []
    assert keys[1] in watch._known.records and keys[1] in watch._seen
