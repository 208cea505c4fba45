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

"""What the drain puts on the wire: a group's message, written at once."""

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


class _Writer:
    def __init__(self, buffered):
        self.lines = []
        self.transport = self
        self._buffered = buffered

    def get_write_buffer_size(self):
        return self._buffered

    def writelines(self, lines):
        self.lines.extend(lines)


class _PendingClient:
    """nats-py's client as far as ``write_pending_now`` looks."""

    def __init__(self, buffered=0, connected=True):
        self.is_connected = connected
        self._pending = [b'PUB a 1\r\nx\r\n']
        self._pending_data_size = 12
        self._transport = type('T', (), {})()
        self._transport._io_writer = _Writer(buffered)


def test_pending_written_at_once_when_the_socket_took_all():
    nc = _PendingClient()
    messages.write_pending_now(nc)
    assert nc._transport._io_writer.lines == [b'PUB a 1\r\nx\r\n']
    assert nc._pending == [] and nc._pending_data_size == 0


@pytest.mark.parametrize('nc', [_PendingClient(buffered=1),
                                _PendingClient(connected=False)],
                         ids=['back-pressure', 'disconnected'])
def test_pending_left_to_the_flusher(nc):
    messages.write_pending_now(nc)
    assert nc._transport._io_writer.lines == []
    assert nc._pending and nc._pending_data_size == 12


def test_pending_left_alone_by_another_transport():
    nc = _PendingClient()
    del nc._transport._io_writer
    messages.write_pending_now(nc)
    assert nc._pending and nc._pending_data_size == 12


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
