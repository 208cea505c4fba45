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

from df_nats import codec


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
    with pytest.raises(codec.MalformedEvent, match=problem):
        codec.unpack_event(data)


def test_headers_label_table_and_action():
    assert codec.event_headers('lport', 'create') == {
        'Df-Table': 'lport', 'Df-Action': 'create'}
    assert codec.event_headers(None, 'sync') == {'Df-Action': 'sync'}


def test_headers_never_break_the_protocol_line():
    headers = codec.event_headers('t\r\nX-Evil: 1', b'a\x00' + b'x' * 500)
    for value in headers.values():
        assert value.isprintable() and value.isascii()
        assert '\r' not in value and '\n' not in value
        assert len(value) <= 128
