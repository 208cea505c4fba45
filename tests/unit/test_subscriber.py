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


class _Loop:
    """Keeps the timers the subscriber sets; ``fire()`` runs the due ones."""

    def __init__(self):
        self.now = 0.0
        self.timers = []   # (when, fn, args)

    def call_later(self, delay, fn, *args):
        self.timers.append((self.now + delay, fn, args))

    def fire(self, seconds):
        self.now += seconds
        due = [t for t in self.timers if t[0] <= self.now]
        self.timers = [t for t in self.timers if t[0] > self.now]
        for _, fn, args in due:
            fn(*args)


class _Connection:
    """Records subscriptions instead of making them."""

    def __init__(self, conf):
        self.conf = conf
        self.bridge = types.SimpleNamespace(
            world=_World(), loop=_Loop(),
            call_soon=lambda fn, *args: fn(*args))
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


# -- hostile input (issue 11) -------------------------------------------------

class _QueueWorld:
    """Holds what is posted until ``drain()``: a slow caller's world."""

    def __init__(self):
        self.calls = []

    def post(self, fn, *args):
        self.calls.append((fn, args))

    def drain(self):
        while self.calls:
            fn, args = self.calls.pop(0)
            fn(*args)


def _paced(conn, sub):
    # The pacer reads the fake loop's clock.
    sub._pacer._clock = lambda: conn.bridge.loop.now


def _syncs(got):
    return got.calls.count((None, None, 'sync', None, None))


def _event(key, action='set', **fields):
    event = {'table': 'lport', 'key': key, 'action': action,
             'value': '{}', 'topic': 'D'}
    event.update(fields)
    return codec.pack_event(event)


def test_forged_jump_keeps_the_publisher_delivered(fake_conn):
    conn = fake_conn()
    sub, got = _subscriber(['D'])
    sub.daemonize()
    _paced(conn, sub)
    sub._deliver('p.topic.D', _numbered(1), _event('k1'))
    sub._deliver('p.topic.D', _numbered(10 ** 12, mark=True), b'')
    for n in range(2, 102):
        sub._deliver('p.topic.D', _numbered(n), _event('k%d' % n))
    keys = [c[1] for c in got.calls if c[2] == 'set']
    assert keys == ['k%d' % n for n in range(1, 102)]
    assert sub.stats['jumps'] == 1 and sub.stats['duplicates'] == 0
    assert _syncs(got) == 1
    sub.close()


def test_duplicates_dropped_counted_and_logged_once_a_second(fake_conn,
                                                             caplog):
    fake_conn()
    sub, got = _subscriber(['D'])
    sub.daemonize()
    for n in (1, 2, 3):
        sub._deliver('p.topic.D', _numbered(n), _event('k%d' % n))
    for _ in range(50):
        sub._deliver('p.topic.D', _numbered(2), _event('copy'))
    assert sub.stats['duplicates'] == 50
    assert 'copy' not in [c[1] for c in got.calls]
    logged = [r for r in caplog.records if 'duplicate on' in r.getMessage()]
    assert len(logged) == 1
    assert 'compute-1 abcd.2' in logged[0].getMessage()
    sub.close()


def test_overlong_header_untracked_and_shown_short(fake_conn, caplog):
    fake_conn()
    sub, got = _subscriber(['D'])
    sub.daemonize()
    huge = {sequence.HEADER_SEQ: 'x' * 900000 + ' abcd.1'}
    sub._deliver('p.topic.D', huge, _event('k'))
    assert [c[1] for c in got.calls] == ['k']
    assert sub.stats['bad_headers'] == 1 and len(sub._tracker) == 0
    [line] = [r.getMessage() for r in caplog.records
              if 'bad-header' in r.getMessage()]
    assert len(line) < 300
    sub.close()


def test_syncs_paced_first_at_once_rest_at_the_interval_end(fake_conn):
    conn = fake_conn(resync_interval=5.0)
    sub, got = _subscriber(['D'])
    sub.daemonize()
    _paced(conn, sub)
    loop = conn.bridge.loop
    sub._deliver('p.topic.D', _numbered(1), _event('k'))
    n = 1
    for _ in range(100):        # a trickle of forged gaps
        n += 2
        sub._deliver('p.topic.D', _numbered(n), _event('k%d' % n))
        loop.fire(0.01)
    assert _syncs(got) == 1     # the first, at once
    assert sub.stats['syncs_suppressed'] + sub.stats['syncs_delayed'] == 99
    loop.fire(5.0)
    assert _syncs(got) == 2     # the rest, once, at the interval's end
    loop.fire(60.0)
    assert _syncs(got) == 2 and sub.stats['syncs'] == 2
    sub.close()


def test_control_actions_from_the_wire_never_reach_the_callback(fake_conn):
    fake_conn()
    sub, got = _subscriber(['D'])
    sub.daemonize()
    for action in sorted(codec.CONTROL_ACTIONS) * 100:
        sub._deliver('p.topic.D', None, _event(None, action=action))
    sub._deliver('p.topic.D', None, _event('good'))
    assert got.calls == [('lport', 'good', 'set', '{}', 'D')]
    assert sub.stats['malformed'] == 500 and sub.stats['syncs'] == 0
    sub.close()


def _message(subject, data, headers=None):
    return types.SimpleNamespace(subject=subject, data=data,
                                 headers=headers)


def test_delivery_queue_bounded_in_bytes_overflow_is_one_resync(fake_conn):
    import asyncio
    conn = fake_conn(delivery_queue_size=options.MIN_DELIVERY_QUEUE_SIZE)
    world = conn.bridge.world = _QueueWorld()
    sub, got = _subscriber(['D'])
    sub.daemonize()
    body = _event('v', value='x' * 10000)
    for _ in range(300):        # 3 MB for a queue of 1 MiB
        asyncio.run(sub._on_message(_message('p.topic.D', body)))
    queued = sub._queued_in - sub._queued_out
    assert queued <= options.MIN_DELIVERY_QUEUE_SIZE
    posted_messages = sum(1 for fn, _ in world.calls
                          if fn == sub._deliver)
    assert posted_messages < 110
    world.drain()
    assert sub.stats['overflow'] == 300 - posted_messages
    assert sub.stats['received'] == posted_messages
    assert _syncs(got) == 1
    assert sub._queued_in == sub._queued_out
    # Room again: messages are taken.
    asyncio.run(sub._on_message(_message('p.topic.D', body)))
    world.drain()
    assert sub.stats['received'] == posted_messages + 1
    sub.close()


def test_headers_count_toward_the_queue_bytes(fake_conn):
    import asyncio
    conn = fake_conn(delivery_queue_size=options.MIN_DELIVERY_QUEUE_SIZE)
    world = conn.bridge.world = _QueueWorld()
    sub, _ = _subscriber(['D'])
    sub.daemonize()
    headers = {sequence.HEADER_SEQ: 'p' * 500000 + ' a.1'}
    for _ in range(10):
        asyncio.run(sub._on_message(_message('p.topic.D', b'', headers)))
    assert sub._queued_in - sub._queued_out <= (
        options.MIN_DELIVERY_QUEUE_SIZE)
    world.drain()
    assert sub.stats['overflow'] == 8
    sub.close()


def test_registered_publishers_known_to_the_tracker(fake_conn):
    fake_conn()
    sub, got = _subscriber(['D'])
    sub.daemonize()
    sub._on_publisher_event('publisher', 'compute-1', 'create', '{}', None)
    sub._deliver('p.topic.D', _numbered(1), _event('k'))
    assert sub._tracker.known_count() == 1
    sub._on_publisher_event('publisher', 'compute-1', 'delete', None, None)
    assert 'compute-1' not in sub._tracker._known_publishers
    assert got.calls[0][:3] == ('publisher', 'compute-1', 'create')
    sub.close()


def test_fork_forgets_the_parents_queue_and_resync(fake_conn, monkeypatch):
    import os
    fake_conn()
    sub, _ = _subscriber(['D'])
    sub.daemonize()
    # The parent had posted bytes and asked for a resync, never run here.
    sub._queued_in = options.MIN_DELIVERY_QUEUE_SIZE * 10
    sub._pacer.request()
    monkeypatch.setattr(os, 'getpid', lambda: sub._pid + 1)
    sub._check_fork()
    assert sub._queued_in == sub._queued_out == 0
    assert not sub._pacer.pending or sub.stats['syncs'] == 1
    sub.close()
