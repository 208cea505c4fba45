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

"""The wire codec: Dragonflow's msgpack map, packed with today's msgpack."""

import msgpack
import pytest

from df_nats import errors
from df_nats.wire import codec


def test_round_trip_with_str_keys():
    event = {'table': 'lport', 'key': 'k', 'action': 'create',
             'value': '{"a": "ü"}', 'topic': 'D', 'timestamp': 'dropped'}
    data = codec.pack_event(event)
    decoded = codec.unpack_event(data)
    assert decoded == {'table': 'lport', 'key': 'k', 'action': 'create',
                       'value': '{"a": "ü"}', 'topic': 'D'}


def test_body_is_what_dragonflow_nodes_decode():
    # A Dragonflow node decodes with plain msgpack into a dict of str.
    data = codec.pack_event({'table': 't', 'key': 'k', 'action': 'set',
                             'value': None, 'topic': None})
    assert msgpack.unpackb(data) == {'table': 't', 'key': 'k',
                                     'action': 'set', 'value': None,
                                     'topic': None}


@pytest.mark.parametrize('data,problem', [
    (b'\xc1', 'not msgpack'),
    (b'', 'not msgpack'),
    (msgpack.packb([1, 2]), 'not a map but list'),
    (msgpack.packb({'table': 't'}), 'missing key, action, value, topic'),
    (msgpack.packb({1: 2}), 'not msgpack'),   # non-str map key
])
def test_malformed_bodies_say_what_is_wrong(data, problem):
    with pytest.raises(errors.MalformedEvent, match=problem):
        codec.unpack_event(data)


def test_events_header_never_breaks_the_protocol_line():
    for table in ('t\r\nX-Evil: 1', b'a\x00' + b'x' * 500):
        value = codec.events_header(1, table)
        assert value.isprintable() and value.isascii()
        assert '\r' not in value and '\n' not in value
        assert len(value) <= 2 + 128


def _event(key, table='lport'):
    return {'table': table, 'key': key, 'action': 'set', 'value': '{}',
            'topic': 'D'}


def test_update_packed_from_its_fields_as_to_dict_would():
    from df_nats.pubsub import api
    update = api.DbUpdate('lport', 'k', 'create', '{"a": 1}',
                          topic='T')
    assert codec.pack_update(update) == codec.pack_event(update.to_dict())


@pytest.mark.parametrize('count', [1, 2, 15, 16, 300, 65535])
def test_batch_is_an_array_of_the_packed_maps(count):
    bodies = [codec.pack_event(_event('k%d' % i)) for i in range(count)]
    body = codec.batch_body(bodies)
    # Nothing re-packed: the maps are there byte for byte.
    assert body.endswith(b''.join(bodies))
    assert len(body) - len(b''.join(bodies)) == (1 if count < 16 else 3)
    assert msgpack.unpackb(body) == [_event('k%d' % i)
                                     for i in range(count)]
    events, dropped, problem = codec.unpack_events(body)
    assert [e['key'] for e in events] == ['k%d' % i for i in range(count)]
    assert (dropped, problem) == (0, None)


def test_batch_larger_than_the_bound_is_refused():
    with pytest.raises(ValueError, match='65536 events'):
        codec.batch_body([b'\xc0'] * 65536)


def test_single_event_body_still_a_plain_map():
    body = codec.pack_event(_event('k'))
    assert codec.unpack_events(body) == ([_event('k')], 0, None)


@pytest.mark.parametrize('bad,problem', [
    (msgpack.packb({1: 2}), 'int is not allowed for map key'),
    (msgpack.packb({'table': 't'}), 'missing key, action'),
    (msgpack.packb(7), 'not a map but int'),
    (b'\xa2\xff\xfe', 'not a map but str'),    # a str that is not UTF-8
    (msgpack.packb([_event('nested')]), 'not a map but list'),
    (codec.pack_event(_event('k')).replace(b'\xa5lport', b'\xa5l\xffort'),
     'table is not valid UTF-8'),
    (codec.pack_event(_event('k')).replace(b'\xa1k', b'\xa1\xff'),
     'key is not valid UTF-8'),
    (b'\xc7\x03\xff\x00\x00\x00', 'not msgpack'),  # a bad timestamp
])
def test_malformed_element_dropped_neighbours_kept(bad, problem):
    good = [codec.pack_event(_event('k%d' % i)) for i in range(4)]
    body = codec.batch_body(good[:2] + [bad] + good[2:])
    events, dropped, why = codec.unpack_events(body)
    assert [e['key'] for e in events] == ['k0', 'k1', 'k2', 'k3']
    assert dropped == 1
    assert problem in why


def test_cut_batch_keeps_what_came_before_the_cut():
    body = codec.batch_body([codec.pack_event(_event('k%d' % i))
                             for i in range(3)])
    events, dropped, problem = codec.unpack_events(body[:-5])
    assert [e['key'] for e in events] == ['k0', 'k1']
    assert dropped == 1 and 'cut at element 2' in problem


@pytest.mark.parametrize('body,problem', [
    (b'', 'empty body'),
    (b'hello', 'not msgpack'),
    (b'\xc1', 'not msgpack'),
    (b'\x90', 'empty batch'),
    (b'\xdd\xff\xff\xff\xff', 'at most 65535'),   # claims 4 billion
])
def test_bodies_that_are_no_events(body, problem):
    assert codec.unpack_events(body)[:2] == ([], 1)
    assert problem in codec.unpack_events(body)[2]


def test_batch_claiming_more_than_it_holds():
    # Five announced, one nil there: the nil and the four missing.
    events, dropped, problem = codec.unpack_events(b'\xdc\x00\x05\xc0')
    assert events == [] and dropped == 5
    assert problem.startswith('a batch of 5 elements in 4 bytes: too small')


def test_batch_of_more_elements_than_its_bytes_hold_events_costs_nothing():
    # Issue 19 item 4: 65,535 two-byte strings that are not UTF-8 took
    # 147 ms each; too small to be events, they are refused unread.
    body = codec.batch_body([b'\xa1\xff'] * 65535)
    events, dropped, problem = codec.unpack_events(body)
    assert (events, dropped) == ([], 65535)
    assert 'too small for events' in problem
    good = codec.pack_event(_event('k'))
    assert len(good) >= codec.MIN_EVENT_BYTES
    assert codec.MIN_ELEMENT_BYTES == codec.MIN_EVENT_BYTES // 2
    smallest = codec.pack_event({'table': '', 'key': None, 'action': 'set',
                                 'value': None, 'topic': None})
    assert len(smallest) == codec.MIN_EVENT_BYTES
    assert codec.unpack_events(codec.batch_body([smallest] * 20))[1] == 0


def test_invalid_utf8_costs_one_more_decoding_not_one_per_element():
    good = codec.pack_event(_event('k'))
    bad = good.replace(b'\xa5lport', b'\xa5l\xffort')
    body = codec.batch_body([bad, good] * 1000)
    events, dropped, problem = codec.unpack_events(body)
    assert len(events) == 1000 and dropped == 1000
    assert problem == 'batch element: table is not valid UTF-8'
    # Escaped text never passes as an event, whatever the field.
    for field in ('table', 'key', 'value', 'topic'):
        assert codec._escaped_field(_event('k') | {field: 'a\udcff'}) == (
            field)
    assert codec._escaped_field(_event('k') | {'value': 'ü\U0001f600'}) \
        is None


def test_undecodable_elements_stop_the_batch_after_a_few():
    good = codec.pack_event(_event('k'))
    # A map with an int key (refused: they collide by design), as big
    # as an event.
    bad = msgpack.packb({1: 'x' * 40})
    body = codec.batch_body([good] + [bad] * 100 + [good])
    events, dropped, problem = codec.unpack_events(body)
    assert len(events) == 1 and dropped == 101
    assert 'the rest of the batch dropped' in problem


def test_trailing_bytes_after_a_batch_counted():
    body = codec.batch_body([codec.pack_event(_event('k'))]) + b'\xc0'
    events, dropped, problem = codec.unpack_events(body)
    assert [e['key'] for e in events] == ['k']
    assert dropped == 1 and 'after the batch' in problem


def test_events_header_counts_and_names_a_shared_table():
    assert codec.events_header(1, 'lport') == '1 lport'
    assert codec.events_header(40, 'lport') == '40 lport'
    assert codec.events_header(40, None) == '40'
    assert codec.events_header(2, 'a b\r\nX: 1') == '2 a_b??X:_1'
    assert codec.events_header(2, ['unhashable']) == "2 ['unhashable']"


def test_events_header_labels_equal_but_different_tables_apart():
    assert codec.events_header(1, 1) == '1 1'
    assert codec.events_header(1, True) == '1 True'


# -- field types (issue 11, defect 6) ----------------------------------------

def _ev(**fields):
    event = {'table': 'lport', 'key': 'k', 'action': 'set',
             'value': '{}', 'topic': 'D'}
    event.update(fields)
    return event


GOOD_EVENTS = [
    _ev(), _ev(key=None, value=None, topic=None), _ev(action='create'),
    _ev(action='delete', value=None), _ev(action='update', value='ACTIVE'),
    _ev(action='log', table='testing'), _ev(value=b'{}', topic=b'D'),
    # Dragonflow 4.0.0's table monitors send etcd3gw's bytes keys.
    _ev(key=b'chassis-1', table='chassis'),
    _ev(extra='ignored'),
]


@pytest.mark.parametrize('event', GOOD_EVENTS)
def test_events_of_the_expected_types_pass(event):
    assert codec.is_event(event)
    body = msgpack.packb(event, use_bin_type=True)
    assert codec.unpack_events(body) == ([event], 0, None)


BAD_EVENTS = [
    (_ev(table=42), 'table is int'),
    (_ev(table=None), 'table is NoneType'),
    (_ev(table=b'lport'), 'table is bytes'),
    (_ev(key=['a']), 'key is list'),
    (_ev(key=7), 'key is int'),
    (_ev(value={'a': 1}), 'value is dict'),
    (_ev(value=msgpack.Timestamp(1, 0)), 'value is Timestamp'),
    (_ev(value=1.5), 'value is float'),
    (_ev(topic=['D']), 'topic is list'),
    (_ev(action='bogus'), "unknown action 'bogus'"),
    (_ev(action=None), 'action is NoneType'),
    (_ev(action=['set']), 'action is list'),
    (_ev(action=b'set'), 'action is bytes'),
    (_ev(action='x' * 1000), "unknown action '" + 'x' * 31),
]


@pytest.mark.parametrize('event,problem', BAD_EVENTS)
def test_events_of_other_types_are_malformed(event, problem):
    assert not codec.is_event(event)
    events, dropped, said = codec.unpack_events(codec.pack_event(event))
    assert (events, dropped) == ([], 1)
    assert said.startswith(problem), said
    assert len(said) < 80


@pytest.mark.parametrize('action', sorted(codec.CONTROL_ACTIONS))
def test_control_actions_never_come_from_the_wire(action):
    # Each makes a controller resync, reconnect or clear its store.
    events, dropped, problem = codec.unpack_events(
        codec.pack_event(_ev(table=None, key=None, value=None, topic=None,
                             action=action)))
    assert (events, dropped) == ([], 1)
    assert 'never comes from the wire' in problem


def test_badly_typed_event_in_a_batch_dropped_alone():
    good = [_ev(key='k%d' % i) for i in range(4)]
    body = codec.batch_body([codec.pack_event(good[0]),
                             codec.pack_event(_ev(table=42)),
                             codec.pack_event(good[1]),
                             codec.pack_event(_ev(action='sync')),
                             codec.pack_event(good[2]),
                             codec.pack_event(good[3])])
    events, dropped, problem = codec.unpack_events(body)
    assert events == good and dropped == 2
    assert problem == 'batch element: table is int'
