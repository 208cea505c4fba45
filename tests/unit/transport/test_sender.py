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

"""The sender's drain: batches, numbers, marks, limits (no server).

The drain runs on the real loop thread against a stand-in for nats-py's
client that records what would be published.
"""

import time

from nats import errors as nats_errors
import pytest

from df_nats.conf import options
from df_nats import errors
from df_nats.pubsub import process_context
from df_nats.transport import connection
from df_nats.transport import outbox
from df_nats.transport import sender
from df_nats.wire import codec
from df_nats.wire import send_time
from df_nats.wire import sequence


@pytest.fixture(autouse=True)
def _no_send_time(monkeypatch):
    # The send time varies: its field is tested in test_messages.py.
    monkeypatch.setattr(send_time, 'stamp', lambda value, now_us: value)


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
    conn = connection.Connection(conf.conf,
                                 process_context.current().bridge)
    nc = _NatsClient(max_payload)
    conn._nc = nc
    conn.sender.read_max_payload(nc)
    return conn, nc


def _drain(conn):
    conn.bridge.run(conn.sender._drain(), timeout=10)


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
        conn.sender._outbox.put(stream, _event(i), 'lport')
    _drain(conn)
    assert len(nc.sent) == 1
    subject, payload, headers = nc.sent[0]
    assert subject == 'p.topic.T'
    assert headers == {'Df-Seq': 'pub-1 inc0.1', 'Df-Events': '40 lport'}
    assert _keys(payload) == ['k%d' % i for i in range(40)]
    assert conn.sender._outbox.waiting_bytes == 0
    assert conn.stats['published'] == 40 and conn.stats['messages'] == 1


def test_single_event_is_a_plain_map_and_mixed_tables_unnamed(conf):
    conn, nc = _connection(conf)
    stream = sequence.Stream('s', 'p', 'i')
    conn.sender._outbox.put(stream, _event(0), 'lport')
    _drain(conn)
    conn.sender._outbox.put(stream, _event(1, 'lport'), 'lport')
    conn.sender._outbox.put(stream, _event(2, 'lswitch'), 'lswitch')
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
        conn.sender._outbox.put(stream, _event(i), 'lport')
    _drain(conn)
    assert [(s, h['Df-Seq'], _keys(p)) for s, p, h in nc.sent] == [
        ('t', 'p i.1', ['k0', 'k1']), ('u', 'p i.1', ['k2']),
        ('t', 'p i.2', ['k3'])]


def test_raw_bodies_never_mixed_into_batches(conf):
    conn, nc = _connection(conf)
    s = sequence.Stream('s', 'p', 'i')
    conn.sender._outbox.put(s, _event(0), 'lport')
    conn.sender._outbox.put(s, b'\xc1raw', outbox.RAW)
    conn.sender._outbox.put(s, _event(1), 'lport')
    _drain(conn)
    assert [(p, h) for _, p, h in nc.sent] == [
        (_event(0), {'Df-Seq': 'p i.1', 'Df-Events': '1 lport'}),
        (b'\xc1raw', {'Df-Seq': 'p i.2'}),
        (_event(1), {'Df-Seq': 'p i.3', 'Df-Events': '1 lport'})]


def test_batches_stay_within_max_payload(conf):
    conn, nc = _connection(conf, max_payload=4096)
    s = sequence.Stream('s', 'p', 'i')
    for i in range(200):
        conn.sender._outbox.put(s, _event(i), 'lport')
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
    with pytest.raises(errors.EventTooLarge,
                       match=r'event of 3000 bytes .*max_payload is 2048'):
        conn.sender.send(s, b'x' * 3000, 'lport')
    assert not conn.sender._outbox and s.n == 0


def test_not_sent_while_reconnecting_keeps_events_and_numbers(conf):
    conn, nc = _connection(conf)
    s = sequence.Stream('s', 'p', 'i')
    for i in range(3):
        conn.sender._outbox.put(s, _event(i), 'lport')
    nc.fail_with = nats_errors.ConnectionReconnectingError()
    _drain(conn)
    assert len(conn.sender._outbox) == 3 and s.n == 0
    nc.fail_with = None
    _drain(conn)
    assert [(h['Df-Seq'], _keys(p)) for _, p, h in nc.sent] == [
        ('p i.1', ['k0', 'k1', 'k2'])]


def test_failed_publish_uses_its_number(conf):
    # The events are dropped and logged: subscribers see the gap.
    conn, nc = _connection(conf)
    s = sequence.Stream('s', 'p', 'i')
    conn.sender._outbox.put(s, _event(0), 'lport')
    nc.fail_with = nats_errors.MaxPayloadError()
    _drain(conn)
    nc.fail_with = None
    conn.sender._outbox.put(s, _event(1), 'lport')
    _drain(conn)
    assert [h['Df-Seq'] for _, _, h in nc.sent] == ['p i.2']
    assert conn.stats['publish_errors'] == 1
    # Counted as the direct write counts it: dropped, not published.
    assert conn.stats['published'] == 1 and conn.stats['messages'] == 1
    assert conn.sender._outbox.waiting_bytes == 0


def test_marks_go_before_queued_events(conf):
    conn, nc = _connection(conf)
    s = sequence.Stream('s', 'p', 'i')
    s.n = 5
    conn.sender._outbox.put(s, _event(0), 'lport')
    conn.sender._marks[s] = None
    _drain(conn)
    assert [(p, h) for _, p, h in nc.sent] == [
        (b'', {'Df-Seq': 'p i.5', 'Df-Mark': '1'}),
        (_event(0), {'Df-Seq': 'p i.6', 'Df-Events': '1 lport'})]


def test_refused_while_disconnected_skips_and_marks(conf):
    conn, nc = _connection(conf)
    conn.sender._outbox.limit = 100
    s = sequence.Stream('s', 'p', 'i')
    conn.sender._outbox.put(s, b'x' * 90, outbox.RAW)
    nc.is_connected = False
    with pytest.raises(errors.PublishBufferFull):
        conn.sender.send(s, b'y' * 20, 'lport')
    assert conn.stats['rejected'] == 1
    nc.is_connected = True
    _drain(conn)
    # The refused event took number 1: the mark says so, before the raw
    # body queued earlier goes out as 2.
    assert [h for _, _, h in nc.sent] == [
        {'Df-Seq': 'p i.1', 'Df-Mark': '1'}, {'Df-Seq': 'p i.2'}]


class _SocketWriter:
    """nats-py's stream writer, as far as ``_send_now_on_loop`` uses it."""

    def __init__(self):
        self.transport = self
        self.buffered = 0
        self.written = []

    def get_write_buffer_size(self):
        return self.buffered

    def write(self, data):
        self.written.append(data)

    def writelines(self, lines):
        self.written.extend(lines)


class _WritableClient(_NatsClient):
    """A client whose socket ``_send_now_on_loop`` may write to directly."""

    def __init__(self):
        super().__init__()
        self._pending = []
        self.stats = {'out_msgs': 0, 'out_bytes': 0}
        self._transport = type('T', (), {})()
        self._transport._io_writer = _SocketWriter()

    @property
    def written(self):
        return self._transport._io_writer.written


def _writable_connection(conf):
    conn = connection.Connection(conf.conf,
                                 process_context.current().bridge)
    nc = _WritableClient()
    conn._nc = nc
    conn.sender.read_max_payload(nc)
    return conn, nc


def _request_drain(conn):
    # As send() does: on the loop thread, then let a drain task finish.
    async def request():
        conn.sender.request_drain_on_loop()
        if conn.sender._draining_on_loop():
            await conn.sender._drain_task
    conn.bridge.run(request(), timeout=10)


def _hpub(data):
    """(subject, headers, body) of one HPUB, checked field by field."""
    line, _, rest = data.partition(b'\r\n')
    op, subject, header_len, total_len = line.split(b' ')
    assert op == b'HPUB'
    header_len, total_len = int(header_len), int(total_len)
    assert len(rest) == total_len + 2 and rest.endswith(b'\r\n')
    block, body = rest[:header_len], rest[header_len:total_len]
    assert block.startswith(b'NATS/1.0\r\n') and block.endswith(b'\r\n\r\n')
    headers = dict(line.split(': ', 1) for line in
                   block.decode().split('\r\n')[1:-2])
    return subject.decode(), headers, body


def test_lone_event_written_to_the_socket_in_the_same_turn(conf):
    conn, nc = _writable_connection(conf)
    s = sequence.Stream('p.topic.T', 'pub-1', 'inc0')
    conn.sender._outbox.put(s, _event(0), 'lport')
    _request_drain(conn)
    assert nc.sent == [] and conn.sender._drain_task is None
    assert [_hpub(data) for data in nc.written] == [
        ('p.topic.T', {'Df-Seq': 'pub-1 inc0.1', 'Df-Events': '1 lport'},
         _event(0))]
    assert s.n == 1 and not conn.sender._outbox
    assert conn.sender._outbox.waiting_bytes == 0
    assert conn.stats['published'] == 1 and conn.stats['messages'] == 1
    assert nc.stats == {'out_msgs': 1, 'out_bytes': len(_event(0))}


def test_what_accumulated_written_at_once_as_one_batch(conf):
    conn, nc = _writable_connection(conf)
    s = sequence.Stream('s', 'p', 'i')
    for i in range(3):
        conn.sender._outbox.put(s, _event(i), 'lport')
    _request_drain(conn)
    ((subject, headers, body),) = [_hpub(data) for data in nc.written]
    assert headers == {'Df-Seq': 'p i.1', 'Df-Events': '3 lport'}
    assert _keys(body) == ['k0', 'k1', 'k2'] and nc.sent == []


def test_with_a_linger_what_is_sent_meanwhile_goes_as_one_message(conf):
    conf.config(group=options.GROUP, publish_linger=0.5)
    conn, nc = _writable_connection(conf)
    s = sequence.Stream('s', 'p', 'i')
    start = time.monotonic()
    for i in range(3):
        conn.sender.send(s, _event(i), 'lport')
    while not nc.written and time.monotonic() - start < 10:
        time.sleep(0.01)
    # The first event waited for the others, and no longer than needed.
    assert time.monotonic() - start >= 0.5
    ((subject, headers, body),) = [_hpub(data) for data in nc.written]
    assert headers == {'Df-Seq': 'p i.1', 'Df-Events': '3 lport'}
    assert _keys(body) == ['k0', 'k1', 'k2'] and nc.sent == []
    assert conn.sender._linger_timer is None


def test_the_rest_goes_through_a_drain_task_in_order(conf):
    conn, nc = _writable_connection(conf)
    t = sequence.Stream('t', 'p', 'i')
    u = sequence.Stream('u', 'p', 'i')
    for stream, i in ((t, 0), (u, 1), (t, 2)):
        conn.sender._outbox.put(stream, _event(i), 'lport')
    _request_drain(conn)
    first = [_hpub(data) for data in nc.written]
    assert [(s, h['Df-Seq'], _keys(b)) for s, h, b in first] == [
        ('t', 'p i.1', ['k0'])]
    assert [(s, h['Df-Seq'], _keys(p)) for s, p, h in nc.sent] == [
        ('u', 'p i.1', ['k1']), ('t', 'p i.2', ['k2'])]
    assert not conn.sender._outbox and conn.sender._outbox.waiting_bytes == 0


@pytest.mark.parametrize('state', ['mark owed', 'socket busy',
                                   'nats-py pending', 'disconnected'])
def test_not_written_past_what_is_queued_before(conf, state):
    conn, nc = _writable_connection(conf)
    s = sequence.Stream('s', 'p', 'i')
    if state == 'mark owed':
        s.n = 4
        conn.sender._marks[s] = None
    elif state == 'socket busy':
        nc._transport._io_writer.buffered = 1
    elif state == 'nats-py pending':
        nc._pending.append(b'PING\r\n')
    conn.sender._outbox.put(s, _event(0), 'lport')
    if state == 'disconnected':
        nc.is_connected = False
        _request_drain(conn)
        assert nc.written == [] and nc.sent == []
        assert len(conn.sender._outbox) == 1
        return
    _request_drain(conn)
    assert not [data for data in nc.written if data.startswith(b'HPUB')]
    assert [h['Df-Seq'] for _, _, h in nc.sent][-1] == (
        'p i.5' if state == 'mark owed' else 'p i.1')


def test_failed_write_uses_its_number_and_is_counted(conf):
    conn, nc = _writable_connection(conf)
    s = sequence.Stream('s', 'p', 'i')

    def refuse(data):
        raise RuntimeError('Cannot call write() after write_eof()')
    nc._transport._io_writer.write = refuse
    conn.sender._outbox.put(s, _event(0), 'lport')
    _request_drain(conn)
    assert s.n == 1 and not conn.sender._outbox
    assert conn.sender._outbox.waiting_bytes == 0
    assert conn.stats['publish_errors'] == 1
    assert conn.stats['published'] == 0


# -- resends: what a lost server may have swallowed goes again (issue 18) --

class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def _clocked_connection(conf, max_payload=1024 * 1024):
    conn, nc = _connection(conf, max_payload)
    clock = _Clock()
    conn.sender._clock = clock
    return conn, nc, clock


def _send_one(conn, stream, body, label='lport'):
    conn.sender._outbox.put(stream, body, label)
    _drain(conn)


def _lose(conn):
    conn.bridge.run(conn._on_disconnected(), timeout=10)


def test_resend_keeps_fewer_than_the_duplicate_window():
    # Subscribers must recognise every resent message they had.
    assert sender.RESEND_MAX_MESSAGES < sequence._WINDOW


def test_recent_messages_bounded_by_count(conf):
    conn, nc, _ = _clocked_connection(conf)
    s = sequence.Stream('s', 'p', 'i')
    for i in range(sender.RESEND_MAX_MESSAGES + 72):
        _send_one(conn, s, _event(i))
    recent = conn.sender._recent
    assert len(recent) == sender.RESEND_MAX_MESSAGES
    assert [e[3]['Df-Seq'] for e in (recent[0], recent[-1])] == [
        'p i.73', 'p i.200']
    assert conn.sender._recent_bytes == sum(e[4] for e in recent)


def test_recent_messages_bounded_by_bytes(conf):
    conn, nc, _ = _clocked_connection(conf, max_payload=16 * 1024 * 1024)
    s = sequence.Stream('s', 'p', 'i')
    body = b'x' * (900 * 1024)
    for i in range(12):
        _send_one(conn, s, body, outbox.RAW)
    recent = conn.sender._recent
    # 9 x 900 KiB fit in 8 MiB, 10 do not: the newest 9 are kept.
    assert len(recent) == 9 and recent[-1][3]['Df-Seq'] == 'p i.12'
    assert conn.sender._recent_bytes == 9 * len(body)
    # A body above the bound alone is not kept at all.
    _send_one(conn, s, b'y' * (sender.RESEND_MAX_BYTES + 1), outbox.RAW)
    assert not recent and conn.sender._recent_bytes == 0


def test_resends_span_the_window_before_the_loss_not_the_reconnect(conf):
    conn, nc, clock = _clocked_connection(conf)
    s = sequence.Stream('s', 'p', 'i')
    for at, i in ((0.0, 1), (1.5, 2), (2.5, 3), (3.0, 4)):
        clock.now = 1000.0 + at
        _send_one(conn, s, _event(i))
    clock.now = 1000.0 + 4.4     # lost: 2 s back is 2.4
    _lose(conn)
    assert [e[3]['Df-Seq'] for e in conn.sender._resends] == [
        'p i.3', 'p i.4']
    assert not conn.sender._recent and conn.sender._recent_bytes == 0
    clock.now = 1000.0 + 60.0    # a long outage: still sent
    del nc.sent[:]
    _drain(conn)
    assert [h['Df-Seq'] for _, _, h in nc.sent] == ['p i.3', 'p i.4']
    assert conn.stats['resent'] == 2


def test_resends_then_marks_then_the_outbox_exactly_as_sent(conf):
    conn, nc, _ = _clocked_connection(conf)
    s = sequence.Stream('s', 'p', 'i')
    t = sequence.Stream('t', 'p', 'i')
    _send_one(conn, s, _event(0))
    _send_one(conn, t, b'\xc1raw', outbox.RAW)
    _send_one(conn, s, _event(1))
    before = list(nc.sent)
    _lose(conn)
    kept = [entry[3] for entry in conn.sender._resends]
    conn.sender._marks[s] = conn.sender._marks[t] = None
    conn.sender._outbox.put(s, _event(2), 'lport')
    del nc.sent[:]
    _drain(conn)
    # The very body and headers, said to be resent: subscribers that had
    # them see duplicates (same digest), the others get them.
    assert nc.sent == [
        (subject, body, dict(headers, **{'Df-Resent': '1'}))
        for subject, body, headers in before] + [
        ('s', b'', {'Df-Seq': 'p i.2', 'Df-Mark': '1'}),
        ('t', b'', {'Df-Seq': 'p i.1', 'Df-Mark': '1'}),
        ('s', _event(2), {'Df-Seq': 'p i.3', 'Df-Events': '1 lport'})]
    for (subject, body, headers), (_, body2, headers2) in zip(
            nc.sent[:3], before):
        assert sequence.digest(headers, body) == sequence.digest(
            headers2, body2)
    # The headers kept (the ones the first send used) are left as they
    # were.
    assert [h['Df-Seq'] for h in kept] == ['p i.1', 'p i.1', 'p i.2']
    assert not [h for h in kept if 'Df-Resent' in h]
    assert conn.stats['resent'] == 3 and conn.stats['marks'] == 2
    # Sent once again only: the ring refills from new sends.
    assert not conn.sender._resends
    assert [e[3]['Df-Seq'] for e in conn.sender._recent] == ['p i.3']


def test_resends_are_received_as_duplicates_or_in_step(conf):
    # A subscriber that had the first two of four lost ones: duplicates,
    # then the two it missed in step, then the mark: no gap, no resync.
    conn, nc, _ = _clocked_connection(conf)
    s = sequence.Stream('s', 'p', 'i')
    for i in range(4):
        _send_one(conn, s, _event(i))
    tracker = sequence.SequenceTracker()
    for subject, body, headers in nc.sent[:2]:
        assert tracker.check(subject, headers, body)[0] in (
            sequence.FIRST, sequence.NEXT)
    _lose(conn)
    conn.sender._marks[s] = None
    del nc.sent[:]
    _drain(conn)
    assert [tracker.check(subject, headers, body)[0]
            for subject, body, headers in nc.sent] == [
        sequence.DUPLICATE, sequence.DUPLICATE, sequence.NEXT,
        sequence.NEXT, sequence.MARK]


def test_shared_subjects_not_kept_nor_resent(conf):
    conn, nc, _ = _clocked_connection(conf)
    shared = sequence.Stream('p.listeners', 'p', 'i')
    shared.resend = False
    own = sequence.Stream('p.topic.D', 'p', 'i')
    _send_one(conn, shared, _event(0))
    _send_one(conn, own, _event(1))
    _lose(conn)
    del nc.sent[:]
    _drain(conn)
    assert [(subject, h['Df-Seq']) for subject, _, h in nc.sent] == [
        ('p.topic.D', 'p i.1')]
    assert conn.stats['resent'] == 1


def test_resends_left_for_the_next_reconnect_if_lost_again(conf):
    conn, nc, _ = _clocked_connection(conf)
    s = sequence.Stream('s', 'p', 'i')
    for i in range(3):
        _send_one(conn, s, _event(i))
    _lose(conn)
    del nc.sent[:]
    nc.fail_with = nats_errors.ConnectionReconnectingError()
    conn.sender._outbox.put(s, _event(3), 'lport')
    _drain(conn)
    assert len(conn.sender._resends) == 3 and s.n == 3
    assert len(conn.sender._outbox) == 1
    nc.fail_with = None
    _drain(conn)
    assert [h['Df-Seq'] for _, _, h in nc.sent] == [
        'p i.1', 'p i.2', 'p i.3', 'p i.4']


def test_resends_owed_go_before_a_direct_write(conf):
    conn, nc = _writable_connection(conf)
    s = sequence.Stream('s', 'p', 'i')
    conn.sender._outbox.put(s, _event(0), 'lport')
    _request_drain(conn)
    assert len(nc.written) == 1
    _lose(conn)
    conn.sender._outbox.put(s, _event(1), 'lport')
    _request_drain(conn)
    assert len(nc.written) == 1   # nothing written past the resend
    assert [h['Df-Seq'] for _, _, h in nc.sent] == ['p i.1', 'p i.2']
    assert conn.stats['resent'] == 1


def test_resends_queued_ahead_of_what_nats_py_held(conf):
    # nats-py writes what it held first thing on the new connection:
    # the resends go before it, not after (a gap at every subscriber).
    conn, nc = _writable_connection(conf)
    nc._pending_data_size = 0
    s = sequence.Stream('s', 'p', 'i')
    for i in range(2):
        _send_one(conn, s, _event(i))
    sent = list(nc.sent)
    del nc.sent[:]
    held = b'HPUB s 30 40\r\n...\r\n'
    nc._pending = [held]
    nc._pending_data_size = len(held)
    _lose(conn)
    assert nc._pending[-1] == held and len(nc._pending) == 3
    assert [_hpub(data) for data in nc._pending[:2]] == [
        (subject, dict(headers, **{'Df-Resent': '1'}), body)
        for subject, body, headers in sent]
    assert nc._pending_data_size == sum(map(len, nc._pending))
    assert conn.stats['resent'] == 2
    # Nothing left for the drain to send again after the reconnect.
    assert not conn.sender._resends
    _drain(conn)
    assert nc.sent == [] and nc.written == []


def test_flush_waits_for_the_resends(conf):
    conn, nc, _ = _clocked_connection(conf)
    nc.flush = _no_flush
    s = sequence.Stream('s', 'p', 'i')
    _send_one(conn, s, _event(0))
    _lose(conn)
    del nc.sent[:]
    assert conn.sender.flush(5.0)
    assert [h['Df-Seq'] for _, _, h in nc.sent] == ['p i.1']


async def _no_flush(timeout=None):
    return None


def test_disconnect_listeners_called_after_the_resends_are_kept(conf):
    # The subscriber's hold (catch_up.CatchUp.hold_until_reconnect)
    # starts here, on the loop thread, before nats-py reconnects.
    conn, nc = _connection(conf)
    heard = []

    def listener():
        assert conn.bridge.on_loop_thread()
        heard.append(conn.stats['disconnects'])
    conn.add_disconnect_listener(listener)
    _lose(conn)
    assert heard == [1]
    conn.remove_listener(listener)
    _lose(conn)
    assert heard == [1]
