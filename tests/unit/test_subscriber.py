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

"""Subscriptions and delivery of the subscriber, on a fake connection.

The fake stands in for the NATS connection only; what a real server does
with queue groups is checked in tests/functional/test_listeners.py.
"""

import types

import pytest

from df_nats import codec
from df_nats import connection as df_connection
from df_nats import options
from df_nats import sequence
from df_nats import subscriber as df_subscriber


class _World:
    """Runs what the subscriber posts to the caller's world at once."""

    @staticmethod
    def post(fn, *args):
        fn(*args)


class _Service:
    """Keeps the subscribers' counters the process's service would show."""

    def __init__(self):
        self.subscribers = []

    def subscriber_joined(self, stats):
        self.subscribers.append(stats)

    def subscriber_left(self, stats):
        self.subscribers.remove(stats)


class _Connection:
    """Records subscriptions instead of making them."""

    def __init__(self, conf):
        self.conf = conf
        self.bridge = types.SimpleNamespace(world=_World())
        self.service = _Service()
        self.connected = True
        self.subscribed = []    # (subject, queue) of every SUB
        self.unsubscribed = []  # the same, for every UNSUB
        self.users = 0

    def acquire(self):
        self.users += 1

    def release(self):
        self.users -= 1

    def subscribe(self, subject, handler, queue=''):
        self.subscribed.append((subject, queue))
        return (subject, queue, len(self.subscribed))

    def unsubscribe(self, sub):
        self.unsubscribed.append(sub[:2])

    def add_listener(self, listener):
        pass

    def remove_listener(self, listener):
        pass


@pytest.fixture
def fake_conn(conf, monkeypatch):
    conf.config(group=options.GROUP, subject_prefix='p')

    def make(**values):
        conf.config(group=options.GROUP, **values)
        conn = _Connection(options.validate(conf.conf))
        monkeypatch.setattr(df_connection, 'get_connection', lambda: conn)
        return conn
    return make


class _Collector:
    def __init__(self):
        self.calls = []

    def __call__(self, table, key, action, value, topic):
        self.calls.append((table, key, action, value, topic))


def _subscriber(topics=()):
    sub = df_subscriber.NatsSubscriber()
    got = _Collector()
    sub.initialize(got)
    for topic in topics:
        assert sub.register_topic(topic) is True
    return sub, got


SHARED = ('p.listeners', 'df-listeners')


def test_listener_topics_share_one_queue_subscription(fake_conn):
    conn = fake_conn()
    sub, _ = _subscriber(['listener_a', 'D'])
    sub.daemonize()
    assert sorted(conn.subscribed) == [SHARED, ('p.topic.D', '')]
    # Registered after daemonize(): no second subscription.
    assert sub.register_topic('listener_b') is True
    assert sub.register_topic(b'listener_c') is True
    assert sub.register_topic('listener_b') is False
    assert conn.subscribed.count(SHARED) == 1
    # Unsubscribed with the last listener topic only.
    sub.unregister_topic('listener_a')
    sub.unregister_topic(b'listener_b')
    assert conn.unsubscribed == []
    sub.unregister_topic('listener_c')
    assert conn.unsubscribed == [SHARED]
    # And joined again for a new one.
    sub.register_topic('listener_d')
    assert conn.subscribed.count(SHARED) == 2
    sub.close()
    assert sorted(conn.unsubscribed) == [SHARED, SHARED, ('p.topic.D', '')]
    assert conn.users == 0


def test_close_ends_the_shared_subscription_once(fake_conn):
    conn = fake_conn()
    sub, _ = _subscriber(['listener_a', 'listener_b', 'listener_c'])
    sub.daemonize()
    sub.close()
    assert conn.subscribed == [SHARED]
    assert conn.unsubscribed == [SHARED]
    assert sub._shared == {}


def test_without_the_option_each_listener_topic_on_its_own(fake_conn):
    conn = fake_conn(listener_queue_group=False)
    sub, _ = _subscriber(['listener_a', 'listener_b'])
    sub.daemonize()
    assert sorted(conn.subscribed) == [('p.topic.listener_a', ''),
                                       ('p.topic.listener_b', '')]
    sub.unregister_topic('listener_a')
    assert conn.unsubscribed == [('p.topic.listener_a', '')]
    sub.close()


def _numbered(n, mark=False):
    headers = {sequence.HEADER_SEQ: sequence.seq_header('abcd', n,
                                                        'compute-1')}
    if mark:
        headers[sequence.HEADER_MARK] = '1'
    return headers


def _status(key, topic):
    return codec.pack_event({'table': 'lport', 'key': key,
                             'action': 'update', 'value': 'ACTIVE',
                             'topic': topic})


def test_shared_subject_holes_are_not_gaps(fake_conn):
    fake_conn()
    sub, got = _subscriber(['listener_a'])
    sub.daemonize()
    # This member's share of one publisher's stream: 1, 4, 9 (the other
    # members had the rest), then a mark after the publisher's reconnect.
    for n in (1, 4, 9):
        sub._deliver('p.listeners', _numbered(n),
                     _status('port-%d' % n, 'listener_b'))
    sub._deliver('p.listeners', _numbered(9, mark=True), b'')
    sub._deliver('p.listeners', _numbered(30, mark=True), b'')
    assert got.calls == [('lport', 'port-%d' % n, 'update', 'ACTIVE',
                          'listener_b') for n in (1, 4, 9)]
    assert sub.stats['gaps'] == sub.stats['syncs'] == 0
    assert sub.stats['malformed'] == 0
    assert sub.stats['marks'] == 2
    assert sub.stats['received'] == 3
    sub.close()


def test_the_same_holes_elsewhere_are_gaps(fake_conn):
    # The control: on an ordinary subject these numbers mean loss.
    fake_conn()
    sub, got = _subscriber(['D'])
    sub.daemonize()
    for n in (1, 4, 9):
        sub._deliver('p.topic.D', _numbered(n), _status('k%d' % n, 'D'))
    assert sub.stats['gaps'] == 2 and sub.stats['missed'] == 6
    assert sub.stats['syncs'] >= 1
    assert got.calls.count((None, None, 'sync', None, None)) >= 1
    sub.close()


def test_malformed_on_the_shared_subject_is_still_counted(fake_conn):
    fake_conn()
    sub, got = _subscriber(['listener_a'])
    sub.daemonize()
    sub._deliver('p.listeners', _numbered(1), b'\xc1not msgpack')
    sub._deliver('p.listeners', None, b'')  # no headers, no body
    assert sub.stats['malformed'] == 2
    assert got.calls == []
    sub.close()


def test_a_failed_daemonize_leaves_no_shared_count_behind(fake_conn):
    conn = fake_conn()
    sub, _ = _subscriber(['listener_a', 'listener_b', 'T'])
    real_subscribe = conn.subscribe

    def refuse_plain(subject, handler, queue=''):
        if not queue:
            raise RuntimeError('refused (expected)')
        return real_subscribe(subject, handler, queue)
    conn.subscribe = refuse_plain
    with pytest.raises(RuntimeError):
        sub.daemonize()
    conn.subscribe = real_subscribe
    sub.daemonize()
    sub.unregister_topic('listener_a')
    sub.unregister_topic('listener_b')
    assert conn.unsubscribed[-1:] == [SHARED]
    sub.close()


def test_running_subscribers_counters_shown_by_the_process_service(
        fake_conn):
    conn = fake_conn()
    sub, _ = _subscriber(['D'])
    sub.daemonize()
    assert conn.service.subscribers == [sub.stats]
    sub.close()
    assert conn.service.subscribers == []
