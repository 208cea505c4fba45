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

"""Registry ids, records and watch events, without a server."""

import json
import os
import time
import uuid

import pytest

from df_nats.registry import registration
from df_nats.registry import watch


def test_slot_zero_is_dragonflows_publisher_uuid():
    # dragonflow.db.pub_sub_api.generate_publisher_uuid()
    expected = str(uuid.uuid5(uuid.NAMESPACE_DNS,
                              'neutron-server.node1.example.org'))
    assert registration.publisher_uuid('neutron-server',
                                       'node1.example.org') == expected


def test_slots_and_hosts_give_distinct_stable_ids():
    ids = {registration.publisher_uuid(p, h, s)
           for p in ('neutron-server', 'df-local-controller')
           for h in ('a.example.org', 'b.example.org') for s in range(3)}
    assert len(ids) == 12
    assert (registration.publisher_uuid('x', 'h', 2)
            == registration.publisher_uuid('x', 'h', 2))


@pytest.mark.parametrize('process, role', [
    ('neutron-server', 'neutron-server'),
    ('neutron-server: api worker', 'neutron-server'),
    ('df-local-controller', 'df-local-controller'),
    ('df-publisher-service', 'df-publisher-service'),
])
def test_default_role(process, role):
    assert registration.default_role(process) == role


@pytest.mark.parametrize('value', [
    b'', b'not json', b'[]', b'{"role": "x"}', b'{"id": 7}', None])
def test_decode_record_rejects_what_is_not_a_record(value):
    assert registration.decode_record(value) is None


def test_decode_record():
    record = {'id': 'abc', 'role': 'r', 'pid': 1}
    assert registration.decode_record(json.dumps(record).encode()) == record


def test_pid_alive_tells_the_living_from_the_dead_and_zombies():
    assert registration._pid_alive(os.getpid())
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    # Killed but not reaped yet: a zombie, which is dead for the registration.
    for _ in range(500):
        with open('/proc/%d/stat' % pid) as stat:
            if stat.read().rsplit(')', 1)[1].split()[0] == 'Z':
                break
        time.sleep(0.01)
    assert not registration._pid_alive(pid)
    os.waitpid(pid, 0)
    assert not registration._pid_alive(pid)
    assert not registration._pid_alive('not a pid')


@pytest.mark.parametrize('headers, reason', [
    ({'KV-Operation': 'DEL'}, 'closed'),
    ({'KV-Operation': 'PURGE'}, 'purged'),
    ({'Nats-Marker-Reason': 'MaxAge', 'Nats-TTL': '1s'}, 'expired'),
    ({'Nats-Marker-Reason': 'Remove'}, 'removed'),
    ({}, None),
    ({'Nats-Marker-Reason': 'Future'}, None),
])
def test_leave_reasons(headers, reason):
    assert watch._leave_reason(headers) == reason


def test_a_heartbeat_is_not_a_change():
    old = {'id': 'a', 'pid': 1, 'last_activity_timestamp': 1.0}
    assert watch._same_publisher(
        old, dict(old, last_activity_timestamp=9.0))
    assert not watch._same_publisher(old, dict(old, pid=2))


def test_publisher_value_has_dragonflows_publisher_shape():
    record = {'id': 'a', 'uri': 'df-nats:dragonflow/a', 'role': 'r',
              'last_activity_timestamp': 5.0, 'pid': 3}
    value = json.loads(watch._publisher_value(record))
    assert value == {'id': 'a', 'uri': 'df-nats:dragonflow/a',
                     'last_activity_timestamp': 5.0}
