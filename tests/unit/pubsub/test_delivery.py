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


"""The receive path's gauges (lag, queue depth, resyncs by cause) and
bounds (memory per queued message, time per slice of the queue).

On fake connections; the lag across processes on a real server is in
tests/functional/test_stats.py, the bounds in hostile_scenarios.py.
"""

import asyncio
import collections
import logging
import time
import tracemalloc
import types

import pytest

from df_nats.conf import options
from df_nats.conf import timeouts
from df_nats.pubsub import delivery
from df_nats.pubsub import work_budget
from df_nats.wire import codec
from df_nats.wire import send_time
from df_nats.wire import sequence
from df_nats.wire import subjects
from tests.unit import fakes
from tests.unit.pubsub.test_subscriber import _event
from tests.unit.pubsub.test_subscriber import _message
from tests.unit.pubsub.test_subscriber import _numbered
from tests.unit.pubsub.test_subscriber import _running
from tests.unit.pubsub.test_subscriber import fake_conn  # noqa: F401


@pytest.fixture(autouse=True)
def _every_message(monkeypatch):
    # Every message measured here; the sampling has a test of its own.
    monkeypatch.setattr(send_time, 'SAMPLE_NS', 0)


def _stamped(n, sent_us):
    headers = _numbered(n)
    headers[codec.HEADER_EVENTS] = send_time.stamp('1 lport', sent_us)
    return headers


def test_lag_from_the_send_time_last_average_and_max(fake_conn):  # noqa
    _, sub, got = _running(fake_conn)
    now = time.time_ns() // 1000
    d = sub._delivery
    d.deliver('p.topic.D', _stamped(1, now - 200000), _event('a'))
    d.deliver('p.topic.D', _stamped(2, now - 1000), _event('b'))
    gauges = d.gauges()
    assert 1000 <= gauges['lag_last_us'] < 1000 + 5000000
    assert 200000 <= gauges['lag_max_us'] < 200000 + 5000000
    assert gauges['lag_last_us'] < gauges['lag_avg_us'] < (
        gauges['lag_max_us'])
    assert gauges['lag_measured'] == 2 and gauges['lag_ignored'] == 0
    assert len(got.calls) == 2


def test_absurd_or_hostile_send_times_are_ignored(fake_conn):  # noqa
    _, sub, got = _running(fake_conn)
    d = sub._delivery
    now = time.time_ns() // 1000
    values = ['1 lport t=%d' % (now + 3600 * 10 ** 6),   # an hour ahead
              '1 lport t=5',                              # 1970
              '1 lport t=' + '9' * 5000,                  # huge
              '1 lport t=-5', '1 lport t=1e9', 't=', 'x' * 100000,
              '1 lport t=\u0661\u0662']                   # not ASCII
    for n, value in enumerate(values, 1):
        headers = _numbered(n)
        headers[codec.HEADER_EVENTS] = value
        d.deliver('p.topic.D', headers, _event('k%d' % n))
    gauges = d.gauges()
    assert gauges['lag_measured'] == 0 and gauges['lag_ignored'] == 2
    assert gauges['lag_max_us'] == 0
    assert len(got.calls) == len(values)   # every event delivered
    # A little skew between two hosts' clocks: no negative lag.
    d.deliver('p.topic.D', _stamped(len(values) + 1, now + 300000),
              _event('skewed'))
    assert d.gauges()['lag_last_us'] == 0
    assert d.gauges()['lag_measured'] == 1


def test_a_burst_is_sampled(fake_conn, monkeypatch):  # noqa
    monkeypatch.setattr(send_time, 'SAMPLE_NS', 3600 * 10 ** 9)
    _, sub, got = _running(fake_conn)
    now = time.time_ns() // 1000
    for n in range(1, 101):
        sub._delivery.deliver('p.topic.D', _stamped(n, now - n), _event('a'))
    assert sub._delivery.gauges()['lag_measured'] == 1
    assert len(got.calls) == 100


def test_messages_of_older_publishers_have_no_lag(fake_conn):  # noqa
    _, sub, got = _running(fake_conn)
    headers = _numbered(1)
    headers[codec.HEADER_EVENTS] = '1 lport'
    sub._delivery.deliver('p.topic.D', headers, _event('a'))
    sub._delivery.deliver('p.topic.D', None, _event('b'))
    assert sub._delivery.gauges()['lag_measured'] == 0
    assert len(got.calls) == 2


def test_queue_depth_in_messages_and_bytes(fake_conn):  # noqa
    conn, sub, _ = _running(fake_conn)
    conn.bridge.world.deferred = True
    body = _event('a')
    for _ in range(3):
        asyncio.run(sub._delivery.on_message(_message('p.topic.D', body)))
    gauges = sub._delivery.gauges()
    assert gauges['queue_messages'] == 3
    assert gauges['queue_bytes'] >= 3 * len(body)
    conn.bridge.world.run()
    gauges = sub._delivery.gauges()
    assert (gauges['queue_messages'], gauges['queue_bytes']) == (0, 0)


def test_resyncs_are_counted_by_cause_with_the_last_time(fake_conn):  # noqa
    conn, sub, got = _running(fake_conn)
    d = sub._delivery
    assert d.gauges()['last_sync'] == 0
    d.deliver('p.topic.D', _numbered(1), _event('a'))
    d.deliver('p.topic.D', _numbered(5), _event('e'))      # a gap
    for listener in conn.listeners:                        # a reconnect
        listener()
    d.request_sync('delivery queue full')
    d.request_sync('something new')
    assert sub.stats['sync_gap'] == 1
    assert sub.stats['sync_reconnect'] == 1
    assert sub.stats['sync_overflow'] == 1
    assert sub.stats[delivery.SYNC_OTHER] == 1
    assert sub.stats['syncs'] >= 1
    assert abs(d.gauges()['last_sync'] - time.time()) < 5


SYNC = (None, None, 'sync', None, None)


class _Collector:
    def __init__(self, clock=None, seconds=0.0):
        self.calls = []
        self._clock = clock
        self._seconds = seconds

    def __call__(self, *event):
        if self._clock is not None:
            self._clock.now += int(self._seconds * 1e9)   # a slow callback
        self.calls.append(event)


def _path(conf, callback, **values):
    conf.config(group=options.GROUP, subject_prefix='p', **values)
    conn = fakes.Connection(options.validate(conf.conf))
    conn.bridge.world.deferred = True
    path = delivery.Delivery()
    path.callback = callback
    path.attach(conn, subjects.SubjectMap('p', True))
    path.start()
    return conn, path


def _msg(data, headers=None, subject='p.topic.D'):
    return types.SimpleNamespace(subject=subject, data=data, headers=headers)


def _packed(key, **fields):
    event = {'table': 'lport', 'key': key, 'action': 'set', 'value': '{}',
             'topic': 'D'}
    event.update(fields)
    return codec.pack_event(event)


# -- memory: the bytes bound counts what a message costs (issue 19, 5) ------

def _nats_py_message(i, body, headers):
    """A message as nats-py hands it over: fresh objects each time."""
    subject = b'dragonflow.topic.D'.decode()
    data = bytes(bytearray(body))
    if headers:
        headers = {name.encode().decode(): value.replace('{i}', str(i))
                   for name, value in headers.items()}
    return _msg(data, headers or None, subject)


@pytest.mark.parametrize('body, headers', [
    (b'\x80' * 41, {}),                                 # tiny, bare
    (b'\x80' * 41, {'Df-Seq': 'compute-1-5d1e4ac0-8a52-4b8c-a6d5-'
                              '6b0f3c1a2e77 1f2e3d4c.{i}'}),
    (b'\x80' * 41, {'Df-Seq': 'compute-1 1f2e3d4c.{i}',
                    'Df-Events': '1 lport'}),
    (b'\x80' * 41, {'X-%d' % h: 'v{i}' for h in range(20)}),
    (b'\x80' * 41, {'Df-Seq': '\U0001f600' * 30 + ' a.{i}'}),  # 4 B/char
    (b'\x80' * 4000, {'Df-Seq': 'compute-1 1f2e3d4c.{i}'}),
])
def test_queued_bytes_count_what_messages_cost_in_memory(
        conf, body, headers):
    # What the queue holds, measured: the posted calls and what they
    # keep alive. Counted at least that, and not much more.
    _, path = _path(conf, _Collector(), delivery_queue_size=2 ** 30)
    world = path._conn.bridge.world
    count = 5000
    # The caller's world's queue is a deque of (fn, args).
    world.posted = collections.deque()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(count):
            _run(path.on_message(_nats_py_message(i, body, headers)))
        cost = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    counted = path._queued_in
    assert len(world.posted) == count
    assert counted >= cost, (counted / count, cost / count)
    assert counted <= 1.3 * cost, (counted / count, cost / count)
    print('counted %.0f B, costs %.0f B a message' % (counted / count,
                                                      cost / count))


def _run(coro):
    # on_message awaits nothing: one step runs it to its end.
    try:
        coro.send(None)
    except StopIteration:
        return
    raise AssertionError('on_message awaited')


def test_a_bound_method_is_posted_not_made_per_message(conf):
    _, path = _path(conf, _Collector())
    for _ in range(3):
        _run(path.on_message(_msg(_packed('k'))))
    fns = [fn for fn, _ in path._conn.bridge.world.posted]
    assert fns[0] is fns[1] is fns[2]


# -- time: a budget per slice of the queue (issue 19, 4) ---------------------

class _Clock:
    # delivery._clock (time.time_ns) and work_budget._cpu_clock
    def __init__(self):
        self.now = 100 * 10 ** 9

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    # The work the tests make is CPU time: it moves both clocks.
    clock = _Clock()
    monkeypatch.setattr(delivery, '_clock', clock)
    monkeypatch.setattr(work_budget, '_cpu_clock', clock)
    return clock


def _expensive_decoding(monkeypatch, clock, seconds):
    unpack = codec.unpack_events

    def slow(data):
        clock.now += int(seconds * 1e9)
        return unpack(data)
    monkeypatch.setattr(codec, 'unpack_events', slow)


def _malformed(key):
    # An event with a table that is not UTF-8: dropped as malformed.
    return _packed(key).replace(b'\xa5lport', b'\xa5l\xffort')


def _flood_then_real(conf, clock, monkeypatch):
    # 20 malformed messages that take 0.3 s each to decode, then a real
    # event queued behind them; the world then works the queue off.
    got = _Collector()
    conn, path = _path(conf, got)
    _expensive_decoding(monkeypatch, clock, 0.3)
    for i in range(20):
        _run(path.on_message(_msg(_malformed('flood-%d' % i))))
    _run(path.on_message(_msg(_packed('real'))))
    conn.bridge.world.run()
    return got, conn, path


def test_a_flood_expensive_to_decode_ends_in_an_overflow_and_one_sync(
        conf, clock, monkeypatch):
    got, conn, path = _flood_then_real(conf, clock, monkeypatch)
    # Over the budget after the fourth (1.2 s of work): the other 16 and
    # the real event queued behind them go, and a resync covers them.
    assert path.stats['malformed'] == 4
    assert path.stats['over_budget'] == 1
    assert path.stats['overflow'] == 17
    assert got.calls == [SYNC]
    assert path._queued_in == path._queued_out
    # What comes next is a new slice, delivered.
    _run(path.on_message(_msg(_packed('after'))))
    conn.bridge.world.run()
    assert got.calls[-1][1] == 'after'
    assert timeouts.DELIVERY_WORK_BUDGET == 1.0


def test_time_waiting_for_a_cpu_is_not_charged(conf, clock, monkeypatch):
    # A loaded machine: copies take 0.3 s each on the wall clock, but
    # the thread spends almost no CPU time on them (it waits for a CPU).
    monkeypatch.setattr(work_budget, '_cpu_clock', lambda: 5 * 10 ** 9)
    got, conn, path = _flood_then_real(conf, clock, monkeypatch)
    assert path.stats['malformed'] == 20
    assert path.stats['over_budget'] == path.stats['overflow'] == 0
    assert got.calls[-1][1] == 'real'


def test_the_budget_restarts_when_the_queue_empties(conf, clock,
                                                    monkeypatch):
    got = _Collector()
    conn, path = _path(conf, got)
    _expensive_decoding(monkeypatch, clock, 0.3)
    for i in range(20):
        # Taken as they come: the queue is empty after each.
        _run(path.on_message(_msg(_malformed('k%d' % i))))
        conn.bridge.world.run()
        _run(path.on_message(_msg(_packed('k%d' % i))))
        conn.bridge.world.run()
    assert len(got.calls) == 20 and path.stats['malformed'] == 20
    assert path.stats['over_budget'] == path.stats['overflow'] == 0


def test_delivered_events_are_not_charged_to_the_budget(conf, clock,
                                                        monkeypatch):
    # A backlog of good events, however long it takes to decode and
    # deliver, is Dragonflow's load: bounded by the queue's bytes.
    got = _Collector(clock, seconds=0.01)
    conn, path = _path(conf, got)
    _expensive_decoding(monkeypatch, clock, 0.3)
    for i in range(50):
        _run(path.on_message(_msg(_packed('k%d' % i))))
    conn.bridge.world.run()
    assert len(got.calls) == 50
    assert path.stats['over_budget'] == path.stats['overflow'] == 0


def test_a_slow_callback_between_wasted_messages_is_not_charged(
        conf, clock, monkeypatch):
    got = _Collector(clock, seconds=0.5)
    conn, path = _path(conf, got)
    _expensive_decoding(monkeypatch, clock, 0.1)
    for i in range(50):
        _run(path.on_message(_msg(_malformed('bad-%d' % i))))
        _run(path.on_message(_msg(_packed('k%d' % i))))
    conn.bridge.world.run()
    assert len(got.calls) == 50
    assert path.stats['over_budget'] == path.stats['overflow'] == 0


# -- catch-up's entry points (issue 18) ---------------------------------------

def _seq(n, publisher='pub'):
    return {sequence.HEADER_SEQ: sequence.seq_header('abcd1234', n,
                                                     publisher)}


def _syncs(got):
    return got.calls.count(SYNC)


def test_an_unpaced_sync_is_at_once_and_replaces_a_paced_one(conf):
    got = _Collector()
    conn, path = _path(conf, got, resync_interval=5.0)
    path.request_sync('gap')
    conn.bridge.world.run()
    assert _syncs(got) == 1
    path.request_sync('gap')                 # paced: waits 5 s
    conn.bridge.world.run()
    assert _syncs(got) == 1 and path.stats['syncs_delayed'] == 1
    path.request_sync('reconnect', paced=False)
    path.request_sync('reconnect', paced=False)   # one is posted
    conn.bridge.world.run()
    assert _syncs(got) == 2 and path.stats['syncs_suppressed'] == 1
    # The paced one, when its time comes, finds it was answered.
    conn.bridge.loop.fire(5.0)
    conn.bridge.world.run()
    assert _syncs(got) == 2
    assert path.stats['sync_gap'] == 2 and path.stats['sync_reconnect'] == 2


def test_slow_consumer_without_a_stream_is_one_paced_sync(conf):
    got = _Collector()
    conn, path = _path(conf, got, replay_stream='')
    for _ in range(3):
        path.slow_consumer_on_loop()
    assert len(conn.bridge.world.posted) == 1
    conn.bridge.world.run()
    assert _syncs(got) == 1 and path.stats['sync_slow_consumer'] == 1
    # Heard again later: posted again.
    path.slow_consumer_on_loop()
    conn.bridge.world.run()
    assert path.stats['sync_slow_consumer'] == 2
    assert path.stats['syncs_delayed'] == 1


def test_recover_after_stop_does_nothing(conf):
    got = _Collector()
    conn, path = _path(conf, got)
    path.stop()
    path.recover('reconnect', 0)
    conn.bridge.world.run()
    assert got.calls == [] and conn.bridge.loop.timers == []
    assert not path._catch_up.active


def test_deliver_checked_holds_back_what_is_ahead(conf):
    got = _Collector()
    conn, path = _path(conf, got)
    assert path.deliver_checked('p.topic.D', _seq(1), _packed('a')) is False
    assert path.deliver_checked('p.topic.D', _seq(3), _packed('c')) is True
    assert [c[1] for c in got.calls] == ['a']
    # Without hold_gaps: a gap, delivered, and a resync.
    assert path.deliver_checked('p.topic.D', _seq(3), _packed('c'),
                                hold_gaps=False) is False
    conn.bridge.world.run()
    assert [c[1] for c in got.calls] == ['a', 'c', None]
    assert path.stats['gaps'] == 1


def test_deliver_checked_drops_copies_and_unnumbered_replays(conf, caplog):
    got = _Collector()
    conn, path = _path(conf, got)
    for n in range(1, 401):
        path.deliver_checked('p.topic.D', _seq(n), _packed('k%d' % n))
    assert len(got.calls) == 400
    # A fetched copy: dropped quietly (a catch-up fetches some), far
    # below or not.
    with caplog.at_level(logging.WARNING):
        path.deliver_checked('p.topic.D', _seq(400), _packed('k400'),
                             replayed=True)
        path.deliver_checked('p.topic.D', _seq(2), _packed('k2'),
                             replayed=True)
    assert 'duplicate' not in caplog.text
    # Held live messages too are taken as replayed far below.
    path.deliver_checked('p.topic.D', _seq(3), _packed('other'))
    assert len(got.calls) == 400
    assert path.stats['duplicates'] == 3
    assert path.stats['rebaselines'] == 0
    # Fetched without a number: not delivered; held live: delivered.
    path.deliver_checked('p.topic.D', None, _packed('bare'),
                         replayed=True)
    path.deliver_checked('p.topic.D', {sequence.HEADER_SEQ: 'bad'},
                         _packed('bad'), replayed=True)
    assert path.stats['replay_untracked'] == 2
    path.deliver_checked('p.topic.D', None, _packed('live'))
    assert got.calls[-1][1] == 'live'
    # A fetched message in its turn is delivered and counted.
    path.deliver_checked('p.topic.D', _seq(401), _packed('k401'),
                         replayed=True)
    assert got.calls[-1][1] == 'k401' and path.stats['replayed'] == 1
    conn.bridge.world.run()
    assert _syncs(got) == 0


def test_a_gap_with_a_stream_holds_the_message_for_a_catch_up(conf):
    got = _Collector()
    conn, path = _path(conf, got)
    path.deliver('p.topic.D', _seq(1), _packed('a'))
    path.deliver('p.topic.D', _seq(3), _packed('c'))
    path.deliver('p.topic.D', _seq(4), _packed('d'))
    assert [c[1] for c in got.calls] == ['a']
    assert path._catch_up.active and path.stats['held'] == 2
    assert path.stats['catchup_gap'] == 1 and path.stats['gaps'] == 0
    # The fetch is set on the loop, at once.
    # The fetch at once (the other timer: the catch-up's deadline).
    assert 0.0 in [t[0] for t in conn.bridge.loop.timers]


@pytest.fixture(autouse=True)
def _gaps_catch_up(monkeypatch):
    # The catch-up's own logic (holes, order, fallbacks) driven by gaps,
    # the simplest trigger; live gaps start none by default.
    from df_nats.pubsub import delivery as _delivery
    monkeypatch.setattr(_delivery.Delivery, 'catch_up_gaps', True)
