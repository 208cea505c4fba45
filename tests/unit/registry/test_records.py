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

"""The registry's key layout and what a reader accepts, without a server."""

import json

from nats.js import kv as nats_kv
import pytest

from df_nats.registry import records

HOST = 'net-1.example.net'
ID = records.publisher_uuid('neutron-server', HOST, 3)


def _record(**changes):
    record = {'id': ID, 'role': 'neutron-server', 'host': HOST, 'pid': 42,
              'process': 'neutron-server', 'slot': 3,
              'uri': 'df-nats:dragonflow/' + ID, 'started_at': 1.5,
              'last_activity_timestamp': 2, 'version': '1.0.0'}
    record.update(changes)
    return record


def _value(**changes):
    return json.dumps(_record(**changes)).encode()


def _parse(value, key=None, headers=None, max_size=4096):
    return records.parse(key or records.key(HOST, ID), value, headers,
                         max_size)


@pytest.mark.parametrize('host, token', [
    ('net-1.example.net', 'net-1=2Eexample=2Enet'),
    ('NET-1.Example.NET', 'net-1=2Eexample=2Enet'),
    ('under_score', 'under_score'),
    ('a=2Eb', 'a=3D2eb'),
    ('h\u00e9te', 'h=C3=A9te'),
])
def test_host_token_is_a_valid_key_token(host, token):
    assert records.host_token(host) == token
    assert nats_kv._is_key_valid(records.key(host, ID))
    assert records.split_key(records.key(host, ID)) == (token, ID)


def test_host_tokens_of_distinct_names_are_distinct():
    # '=' is escaped itself, so no name can spell another's escape.
    names = ['a.b', 'a=2Eb', 'a-b', 'a_b', 'ab', 'a.b.', '.a.b']
    assert len({records.host_token(n) for n in names}) == len(names)


@pytest.mark.parametrize('key', ['', 'a.b.c', '.x', 'x.', 'a..b'])
def test_split_key_refuses_other_shapes(key):
    with pytest.raises(ValueError):
        records.split_key(key)


def test_split_key_of_the_old_layout():
    assert records.split_key(ID) == (None, ID)


def test_parse_accepts_a_record_of_its_key():
    record, why = _parse(_value())
    assert why is None and record == _record()


def test_parse_keeps_only_the_known_fields():
    record, why = _parse(_value(pad='x' * 2000, nested={'a': [1, 2]}))
    assert why is None and set(record) == set(_record())


@pytest.mark.parametrize('value', [
    b'', b'not json', b'[]', b'null', b'"id"', b'{"id": 7}',
    b'[' * 2000 + b']' * 2000,                 # deep: RecursionError
    b'{"a":' * 600 + b'1' + b'}' * 600,
    _value(id=None), _value(pid=True), _value(pid='42'), _value(pid=-1),
    _value(slot=256), _value(slot=1.0), _value(host=''),
    _value(host='h' * 256), _value(role=['x']), _value(id='not-a-uuid'),
    _value(started_at='now'), _value(started_at=True),
    _value(version='v' * 65),
    json.dumps({k: v for k, v in _record().items() if k != 'slot'}).encode(),
])
def test_parse_drops_what_is_not_a_record(value):
    assert _parse(value) == (None, records.MALFORMED)


def test_parse_drops_nan():
    value = _value().replace(b'1.5', b'NaN')
    assert _parse(value) == (None, records.MALFORMED)


def test_parse_drops_an_oversized_record_before_reading_it():
    value = _value(pad='x' * 5000)
    assert _parse(value) == (None, records.OVERSIZED)
    assert _parse(b'\xff' * 5000) == (None, records.OVERSIZED)


def test_parse_drops_a_record_with_a_ttl_of_its_own():
    assert _parse(_value(), headers={'Nats-TTL': 'never'}) == (
        None, records.MALFORMED)


def test_parse_drops_a_record_under_another_hosts_key():
    # Host B's user writes A's record (A's id) under B's own token.
    key = records.key('net-2.example.net', ID)
    assert _parse(_value(), key=key) == (None, records.FORGED)


def test_parse_drops_a_record_whose_id_is_not_its_own():
    other = records.publisher_uuid('neutron-server', HOST, 4)
    assert _parse(_value(id=other),
                  key=records.key(HOST, other)) == (None, records.FORGED)
    assert _parse(_value(), key=records.key(HOST, other)) == (
        None, records.FORGED)
    assert _parse(_value(slot=4)) == (None, records.FORGED)


def test_parse_drops_a_record_claiming_another_host():
    # A record of host B under its own key, claiming to be on host A.
    b_id = records.publisher_uuid('neutron-server', 'net-2.example.net')
    value = _value(id=b_id, slot=0)
    assert _parse(value, key=records.key('net-2.example.net', b_id)) == (
        None, records.FORGED)


def test_parse_accepts_the_old_layout_as_legacy():
    record, why = _parse(_value(), key=ID)
    assert why is None and record == dict(_record(), legacy=True)
    assert _parse(_value(), key=records.publisher_uuid('x', HOST)) == (
        None, records.FORGED)


def test_parse_drops_other_key_shapes():
    assert _parse(_value(), key='a.b.' + ID) == (None, records.MALFORMED)
