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


"""The receive path's gauges: lag, queue depth, resyncs by cause.

On the fake connection of test_subscriber.py; the lag across processes
on a real server is in tests/functional/test_stats.py.
"""

import asyncio
import time

import pytest

from df_nats.pubsub import delivery
from df_nats.wire import codec
from df_nats.wire import send_time
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
