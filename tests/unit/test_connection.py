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

"""The connection's drain: batches, numbers, marks, limits (no server).

The drain runs on the real loop thread against a stand-in for nats-py's
client that records what would be published.
"""

from nats import errors as nats_errors
import pytest

from df_nats import codec
from df_nats import connection as df_connection
from df_nats import outbox
from df_nats import process_context
from df_nats import sequence


class _NatsClient:
    """What the drain uses of nats-py's client."""

    def __init__(self, max_payload=1024 * 1024):
        self.is_connected = True
        self.max_payload = max_payload
        self.sent = []
        self.fail_with = None

    async def publish(self, subject, payload, headers=None):
        if self.fail_with is not None:
            raise self.fail_with
        if len(payload) > self.max_payload:
            raise nats_errors.MaxPayloadError
        self.sent.append((subject, payload, dict(headers or {})))


def _connection(conf, max_payload=1024 * 1024):
    conn = df_connection.Connection(conf.conf,
                                    process_context.current().bridge)
    nc = _NatsClient(max_payload)
    conn._nc = nc
    conn._read_max_payload(nc)
    return conn, nc


def _drain(conn):
    conn.bridge.run(conn._drain(), timeout=10)


def _event(i, table='lport'):
    return codec.pack_event({'table': table, 'key': 'k%d' % i,
                             'action': 'set', 'value': '{}', 'topic': 'T'})


def _keys(payload):
    events, dropped, _ = codec.unpack_events(payload)
    assert dropped == 0
    return [e['key'] for e in events]


def test_what_accumulated_goes_as_one_numbered_message(conf):
    conn, nc = _connection(conf)
    stream = sequence.Stream('p.topic.T', 'pub-1', 'inc0')
    for i in range(40):
        conn._outbox.put(stream, _event(i), 'lport')
    _drain(conn)
    assert len(nc.sent) == 1
    subject, payload, headers = nc.sent[0]
    assert subject == 'p.topic.T'
    assert headers == {'Df-Seq': 'pub-1 inc0.1', 'Df-Events': '40 lport'}
    assert _keys(payload) == ['k%d' % i for i in range(40)]
    assert conn._outbox.waiting_bytes == 0
    assert conn.stats['published'] == 40 and conn.stats['messages'] == 1


def test_single_event_is_a_plain_map_and_mixed_tables_unnamed(conf):
    conn, nc = _connection(conf)
    stream = sequence.Stream('s', 'p', 'i')
    conn._outbox.put(stream, _event(0), 'lport')
    _drain(conn)
    conn._outbox.put(stream, _event(1, 'lport'), 'lport')
    conn._outbox.put(stream, _event(2, 'lswitch'), 'lswitch')
    _drain(conn)
    (_, single, h1), (_, batch, h2) = nc.sent
    assert single == _event(0)           # what Dragonflow nodes decode
    assert h1 == {'Df-Seq': 'p i.1', 'Df-Events': '1 lport'}
    assert h2 == {'Df-Seq': 'p i.2', 'Df-Events': '2'}
    assert _keys(batch) == ['k1', 'k2']


def test_streams_interleaved_keep_order_and_own_numbers(conf):
    conn, nc = _connection(conf)
    t = sequence.Stream('t', 'p', 'i')
    u = sequence.Stream('u', 'p', 'i')
    for stream, i in ((t, 0), (t, 1), (u, 2), (t, 3)):
        conn._outbox.put(stream, _event(i), 'lport')
    _drain(conn)
    assert [(s, h['Df-Seq'], _keys(p)) for s, p, h in nc.sent] == [
        ('t', 'p i.1', ['k0', 'k1']), ('u', 'p i.1', ['k2']),
        ('t', 'p i.2', ['k3'])]


def test_raw_bodies_never_mixed_into_batches(conf):
    conn, nc = _connection(conf)
    s = sequence.Stream('s', 'p', 'i')
    conn._outbox.put(s, _event(0), 'lport')
    conn._outbox.put(s, b'\xc1raw', outbox.RAW)
    conn._outbox.put(s, _event(1), 'lport')
    _drain(conn)
    assert [(p, h) for _, p, h in nc.sent] == [
        (_event(0), {'Df-Seq': 'p i.1', 'Df-Events': '1 lport'}),
        (b'\xc1raw', {'Df-Seq': 'p i.2'}),
        (_event(1), {'Df-Seq': 'p i.3', 'Df-Events': '1 lport'})]


def test_batches_stay_within_max_payload(conf):
    conn, nc = _connection(conf, max_payload=4096)
    s = sequence.Stream('s', 'p', 'i')
    for i in range(200):
        conn._outbox.put(s, _event(i), 'lport')
    _drain(conn)
    assert len(nc.sent) > 1
    keys = []
    for _, payload, headers in nc.sent:
        header_bytes = sum(len(k) + len(v) + 4 for k, v in headers.items())
        assert len(payload) + header_bytes + 12 <= 4096
        keys += _keys(payload)
    assert keys == ['k%d' % i for i in range(200)]


def test_event_above_max_payload_refused_naming_both(conf):
    conn, nc = _connection(conf, max_payload=2048)
    s = sequence.Stream('s', 'p', 'i')
    with pytest.raises(df_connection.EventTooLarge,
                       match=r'event of 3000 bytes .*max_payload is 2048'):
        conn.send(s, b'x' * 3000, 'lport')
    assert not conn._outbox and s.n == 0


def test_not_sent_while_reconnecting_keeps_events_and_numbers(conf):
    conn, nc = _connection(conf)
    s = sequence.Stream('s', 'p', 'i')
    for i in range(3):
        conn._outbox.put(s, _event(i), 'lport')
    nc.fail_with = nats_errors.ConnectionReconnectingError()
    _drain(conn)
    assert len(conn._outbox) == 3 and s.n == 0
    nc.fail_with = None
    _drain(conn)
    assert [(h['Df-Seq'], _keys(p)) for _, p, h in nc.sent] == [
        ('p i.1', ['k0', 'k1', 'k2'])]


def test_failed_publish_uses_its_number(conf):
    # The events are dropped and logged: subscribers see the gap.
    conn, nc = _connection(conf)
    s = sequence.Stream('s', 'p', 'i')
    conn._outbox.put(s, _event(0), 'lport')
    nc.fail_with = nats_errors.MaxPayloadError()
    _drain(conn)
    nc.fail_with = None
    conn._outbox.put(s, _event(1), 'lport')
    _drain(conn)
    assert [h['Df-Seq'] for _, _, h in nc.sent] == ['p i.2']
    assert conn.stats['publish_errors'] == 1
    assert conn._outbox.waiting_bytes == 0


def test_marks_go_before_queued_events(conf):
    conn, nc = _connection(conf)
    s = sequence.Stream('s', 'p', 'i')
    s.n = 5
    conn._outbox.put(s, _event(0), 'lport')
    conn._marks[s] = None
    _drain(conn)
    assert [(p, h) for _, p, h in nc.sent] == [
        (b'', {'Df-Seq': 'p i.5', 'Df-Mark': '1'}),
        (_event(0), {'Df-Seq': 'p i.6', 'Df-Events': '1 lport'})]


def test_refused_while_disconnected_skips_and_marks(conf):
    conn, nc = _connection(conf)
    conn._outbox.limit = 100
    s = sequence.Stream('s', 'p', 'i')
    conn._outbox.put(s, b'x' * 90, outbox.RAW)
    nc.is_connected = False
    with pytest.raises(df_connection.PublishBufferFull):
        conn.send(s, b'y' * 20, 'lport')
    assert conn.stats['rejected'] == 1
    nc.is_connected = True
    _drain(conn)
    # The refused event took number 1: the mark says so, before the raw
    # body queued earlier goes out as 2.
    assert [h for _, _, h in nc.sent] == [
        {'Df-Seq': 'p i.1', 'Df-Mark': '1'}, {'Df-Seq': 'p i.2'}]
