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

"""What the drain puts on the wire: a group's message."""

import pytest

from df_nats.transport import messages
from df_nats.transport import outbox
from df_nats.wire import codec
from df_nats.wire import send_time
from df_nats.wire import sequence


@pytest.fixture(autouse=True)
def _no_send_time(monkeypatch):
    # The send time varies: its field is tested in test_messages.py.
    monkeypatch.setattr(send_time, 'stamp', lambda value, now_us: value)


def _stream():
    return sequence.Stream('p.topic.T', 'pub-1', 'inc0')


def _event(key, table='lport'):
    return codec.pack_event({'table': table, 'key': key, 'action': 'set',
                             'value': '{}', 'topic': 'T'})


def test_one_event_goes_as_it_is_with_its_table():
    body = _event('a')
    sent, headers, size = messages.message(_stream(), 7, [
        (None, body, 'lport')])
    assert sent is body and size == len(body)
    assert headers == {'Df-Seq': 'pub-1 inc0.7', 'Df-Events': '1 lport'}


def test_a_raw_body_carries_no_events_header():
    sent, headers, size = messages.message(_stream(), 1, [
        (None, b'\x01\x02', outbox.RAW)])
    assert (sent, headers, size) == (b'\x01\x02',
                                     {'Df-Seq': 'pub-1 inc0.1'}, 2)


def test_a_batch_is_one_array_counted_in_outbox_bytes():
    bodies = [_event('a'), _event('b'), _event('c')]
    sent, headers, size = messages.message(
        _stream(), 2, [(None, b, 'lport') for b in bodies])
    events, dropped, _ = codec.unpack_events(sent)
    assert [e['key'] for e in events] == ['a', 'b', 'c'] and dropped == 0
    assert headers == {'Df-Seq': 'pub-1 inc0.2', 'Df-Events': '3 lport'}
    # Bytes the outbox counted: the bodies, not the array header.
    assert size == sum(map(len, bodies))


def test_a_batch_of_several_tables_names_none():
    group = [(None, _event('a', 'lport'), 'lport'),
             (None, _event('b', 'lswitch'), 'lswitch')]
    _, headers, _ = messages.message(_stream(), 3, group)
    assert headers['Df-Events'] == '2'


def test_the_send_time_is_the_last_field_of_df_events(monkeypatch):
    monkeypatch.undo()
    monkeypatch.setattr(messages.time, 'time_ns', lambda: 1733327749388783123)
    _, headers, _ = messages.message(_stream(), 1, [
        (None, _event('a'), 'lport'), (None, _event('b'), 'lport')])
    assert headers['Df-Events'] == '2 lport t=1733327749388783'
    assert send_time.sent_us(headers) == 1733327749388783
    # Readers of the first field (the count) are unaffected.
    assert int(headers['Df-Events'].split()[0]) == 2
    _, raw, _ = messages.message(_stream(), 2, [(None, b'x', outbox.RAW)])
    assert send_time.sent_us(raw) is None
