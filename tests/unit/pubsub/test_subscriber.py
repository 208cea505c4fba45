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

import asyncio
import types

import msgpack
import pytest

from df_nats.conf import options
from df_nats import errors
from df_nats.pubsub import process_context
from df_nats.pubsub import subscriber
from df_nats.wire import codec
from df_nats.wire import sequence
from tests.unit import fakes


@pytest.fixture
def fake_conn(conf, monkeypatch):
    # Without a capture stream: what is lost costs a resync, as before
    # replay (test_catch_up.py has the catch-up).
    conf.config(group=options.GROUP, subject_prefix='p', replay_stream='')

    def make(**values):
        conf.config(group=options.GROUP, **values)
        conn = fakes.Connection(options.validate(conf.conf))
        context = process_context.ProcessContext(bridge=conn.bridge,
                                                 connection=conn)
        monkeypatch.setattr(process_context, 'current', lambda: context)
        return conn
    return make


class _Collector:
    def __init__(self):
        self.calls = []

    def __call__(self, table, key, action, value, topic):
        self.calls.append((table, key, action, value, topic))


def _subscriber(topics=()):
    sub = subscriber.NatsSubscriber()
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
        sub._delivery.deliver('p.listeners', _numbered(n),
                              _status('port-%d' % n, 'listener_b'))
    sub._delivery.deliver('p.listeners', _numbered(9, mark=True), b'')
    sub._delivery.deliver('p.listeners', _numbered(30, mark=True), b'')
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
        sub._delivery.deliver('p.topic.D', _numbered(n),
                              _status('k%d' % n, 'D'))
    assert sub.stats['gaps'] == 2 and sub.stats['missed'] == 6
    assert sub.stats['syncs'] >= 1
    assert got.calls.count((None, None, 'sync', None, None)) >= 1
    sub.close()


def test_malformed_on_the_shared_subject_is_still_counted(fake_conn):
    fake_conn()
    sub, got = _subscriber(['listener_a'])
    sub.daemonize()
    sub._delivery.deliver('p.listeners', _numbered(1), b'\xc1not msgpack')
    sub._delivery.deliver('p.listeners', None, b'')  # no headers, no body
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


# -- delivery and resync ----------------------------------------------------

SYNC = (None, None, 'sync', None, None)


def _event(key, table='lport', topic='D'):
    return codec.pack_event({'table': table, 'key': key, 'action': 'set',
                             'value': '{}', 'topic': topic})


def _running(fake_conn, topics=('D',)):
    conn = fake_conn()
    sub, got = _subscriber(topics)
    sub.daemonize()
    return conn, sub, got


def test_a_batch_is_delivered_in_order_one_call_per_event(fake_conn):
    _, sub, got = _running(fake_conn)
    body = codec.batch_body([_event('a'), _event('b', 'lswitch'),
                             _event('c')])
    sub._delivery.deliver('p.topic.D', _numbered(1), body)
    assert got.calls == [('lport', 'a', 'set', '{}', 'D'),
                         ('lswitch', 'b', 'set', '{}', 'D'),
                         ('lport', 'c', 'set', '{}', 'D')]
    assert sub.stats['received'] == 3


def test_a_malformed_element_is_dropped_without_its_neighbours(fake_conn):
    _, sub, got = _running(fake_conn)
    not_an_event = msgpack.packb({'table': 'lport'})
    body = codec.batch_body([_event('a'), not_an_event, _event('c')])
    sub._delivery.deliver('p.topic.D', _numbered(1), body)
    assert [key for _, key, _, _, _ in got.calls] == ['a', 'c']
    assert sub.stats['malformed'] == 1 and sub.stats['received'] == 2


def test_duplicates_are_dropped_and_counted(fake_conn):
    # A duplicate is the very same message again: body and headers.
    _, sub, got = _running(fake_conn)
    for n, key in ((1, 'a'), (2, 'b'), (2, 'b'), (1, 'a'), (3, 'c')):
        sub._delivery.deliver('p.topic.D', _numbered(n), _event(key))
    assert [key for _, key, _, _, _ in got.calls] == ['a', 'b', 'c']
    assert sub.stats['duplicates'] == 2
    assert sub.stats['gaps'] == sub.stats['syncs'] == 0


def test_another_message_under_a_delivered_number_is_a_conflict(fake_conn):
    # Issue 18: a forger that sends the publisher's next number first
    # must not make the real message a duplicate.
    _, sub, got = _running(fake_conn)
    sub._delivery.deliver('p.topic.D', _numbered(1), _event('a'))
    sub._delivery.deliver('p.topic.D', _numbered(2), _event('forged'))
    sub._delivery.deliver('p.topic.D', _numbered(2), _event('real'))
    sub._delivery.deliver('p.topic.D', _numbered(3), _event('next'))
    # The real one's copy is a duplicate; the forged one's again a
    # conflict (delivered: it may be the real one).
    sub._delivery.deliver('p.topic.D', _numbered(2), _event('real'))
    assert [c[1] for c in got.calls if c[2] == 'set'] == [
        'a', 'forged', 'real', 'next']
    assert sub.stats['conflicts'] == 1 and sub.stats['duplicates'] == 1
    assert got.calls.count(SYNC) == 1
    # Other headers make another message too.
    headers = dict(_numbered(4), **{codec.HEADER_EVENTS: '1 lport'})
    sub._delivery.deliver('p.topic.D', headers, _event('d'))
    sub._delivery.deliver('p.topic.D', headers, _event('d'))
    sub._delivery.deliver('p.topic.D', _numbered(4), _event('d'))
    assert sub.stats['duplicates'] == 2 and sub.stats['conflicts'] == 2


def test_a_gap_delivers_the_event_then_one_sync(fake_conn):
    _, sub, got = _running(fake_conn)
    sub._delivery.deliver('p.topic.D', _numbered(1), _event('a'))
    sub._delivery.deliver('p.topic.D', _numbered(5), _event('e'))
    assert got.calls[0][1] == 'a' and got.calls[1][1] == 'e'
    assert got.calls[2:] == [SYNC]
    assert (sub.stats['gaps'], sub.stats['missed'],
            sub.stats['syncs']) == (1, 3, 1)


def test_syncs_asked_for_before_one_runs_are_delivered_once(fake_conn):
    conn, sub, got = _running(fake_conn)
    conn.bridge.world.deferred = True
    sub._delivery.deliver('p.topic.D', _numbered(1), _event('a'))
    sub._delivery.deliver('p.topic.D', _numbered(3), _event('c'))   # a gap
    sub._delivery.deliver('p.topic.D', _numbered(6), _event('f'))   # another
    conn.bridge.world.run()
    assert [c[1] for c in got.calls] == ['a', 'c', 'f', None]
    assert got.calls[-1] == SYNC
    assert sub.stats['gaps'] == 2 and sub.stats['syncs'] == 1
    # A later gap gets a sync of its own, paced: at the end of
    # resync_interval after the last one.
    sub._delivery.deliver('p.topic.D', _numbered(9), _event('i'))
    conn.bridge.world.run()
    assert got.calls.count(SYNC) == 1
    conn.bridge.loop.fire(sub._delivery._pacer.interval)
    conn.bridge.world.run()
    assert got.calls.count(SYNC) == 2


def test_a_reconnect_and_a_gap_before_the_sync_share_it(fake_conn, caplog):
    conn, sub, got = _running(fake_conn)
    conn.bridge.world.deferred = True
    for listener in conn.listeners:   # heard on the loop thread
        listener()
    sub._delivery.deliver('p.topic.D', _numbered(1), _event('a'))
    sub._delivery.deliver('p.topic.D', _numbered(3), _event('c'))
    conn.bridge.world.run()
    assert got.calls.count(SYNC) == 1 and sub.stats['syncs'] == 1
    assert 'missed (gap, reconnect)' in caplog.text


def test_marks_deliver_nothing_and_a_mark_past_the_last_is_a_gap(fake_conn):
    _, sub, got = _running(fake_conn)
    sub._delivery.deliver('p.topic.D', _numbered(1), _event('a'))
    sub._delivery.deliver('p.topic.D', _numbered(1, mark=True), b'')
    assert [c[1] for c in got.calls] == ['a'] and sub.stats['syncs'] == 0
    sub._delivery.deliver('p.topic.D', _numbered(4, mark=True), b'')
    assert got.calls[1:] == [SYNC]
    assert sub.stats['marks'] == 2 and sub.stats['gaps'] == 1


def test_a_failing_callback_is_counted_and_the_next_event_delivered(
        fake_conn):
    _, sub, _ = _running(fake_conn)
    seen = []

    def callback(table, key, action, value, topic):
        seen.append(key)
        if key == 'a':
            raise ValueError('expected')
    sub.initialize(callback)
    body = codec.batch_body([_event('a'), _event('b')])
    sub._delivery.deliver('p.topic.D', _numbered(1), body)
    assert seen == ['a', 'b'] and sub.stats['callback_errors'] == 1


def test_nothing_is_delivered_after_close_not_even_a_queued_sync(
        fake_conn):
    conn, sub, got = _running(fake_conn)
    conn.bridge.world.deferred = True
    sub._delivery.deliver('p.topic.D', _numbered(1), _event('a'))
    # A gap: a sync is queued.
    sub._delivery.deliver('p.topic.D', _numbered(3), _event('c'))
    sub.close()
    conn.bridge.world.run()
    sub._delivery.deliver('p.topic.D', _numbered(4), _event('d'))
    assert [c[1] for c in got.calls] == ['a', 'c']
    assert conn.users == 0 and conn.listeners == []


def test_daemonize_before_initialize_names_the_mistake(fake_conn):
    fake_conn()
    sub = subscriber.NatsSubscriber()
    with pytest.raises(errors.UsageError, match='initialize'):
        sub.daemonize()


def test_an_inherited_subscriber_moves_and_asks_for_a_sync(
        conf, monkeypatch):
    conf.config(group=options.GROUP, subject_prefix='p')
    parent_conn = fakes.Connection(options.validate(conf.conf))
    child_conn = fakes.Connection(options.validate(conf.conf))
    parent = process_context.ProcessContext(bridge=parent_conn.bridge,
                                            connection=parent_conn)
    child = process_context.ProcessContext(bridge=child_conn.bridge,
                                           connection=child_conn)
    contexts = [parent]
    sub = subscriber.NatsSubscriber()
    got = _Collector()
    sub.initialize(got)
    sub.register_topic('D')
    monkeypatch.setattr(process_context, 'current', lambda: contexts[-1])
    sub.daemonize()
    sub._delivery.deliver('p.topic.D', _numbered(1), _event('a'))
    # A fork: the parent's context inherited, the child's current.
    parent.inherited = True
    contexts.append(child)
    assert sub.register_topic('E') is True
    # Nothing was asked of the parent's connection.
    assert parent_conn.unsubscribed == [] and parent_conn.users == 1
    assert sorted(child_conn.subscribed) == [('p.topic.D', ''),
                                             ('p.topic.E', '')]
    assert got.calls[-1] == SYNC and sub.is_running
    sub.close()
    assert child_conn.users == 0 and parent_conn.users == 1


def test_closing_an_inherited_subscriber_leaves_the_parent_alone(
        fake_conn):
    conn, sub, _ = _running(fake_conn)
    process_context.current().inherited = True   # as after a fork
    sub.close()
    assert conn.unsubscribed == [] and conn.users == 1
    assert not sub.is_running


def test_running_subscribers_counters_shown_by_the_process_service(
        fake_conn):
    conn = fake_conn()
    sub, _ = _subscriber(['D'])
    sub.daemonize()
    assert conn.service.subscribers == [sub.stats]
    sub.close()
    assert conn.service.subscribers == []


# -- hostile input (issue 11) -------------------------------------------------

def _paced(conn, sub):
    # The pacer reads the fake loop's clock.
    sub._delivery._pacer._clock = lambda: conn.bridge.loop.now


def _syncs(got):
    return got.calls.count((None, None, 'sync', None, None))


def _set_event(key, action='set', **fields):
    event = {'table': 'lport', 'key': key, 'action': action,
             'value': '{}', 'topic': 'D'}
    event.update(fields)
    return codec.pack_event(event)


def test_forged_jump_keeps_the_publisher_delivered(fake_conn):
    conn = fake_conn()
    sub, got = _subscriber(['D'])
    sub.daemonize()
    _paced(conn, sub)
    sub._delivery.deliver('p.topic.D', _numbered(1), _set_event('k1'))
    sub._delivery.deliver('p.topic.D', _numbered(10 ** 12, mark=True), b'')
    for n in range(2, 102):
        sub._delivery.deliver('p.topic.D', _numbered(n), _set_event('k%d' % n))
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
        sub._delivery.deliver('p.topic.D', _numbered(n), _set_event('k%d' % n))
    for _ in range(50):
        sub._delivery.deliver('p.topic.D', _numbered(2), _set_event('k2'))
    assert sub.stats['duplicates'] == 50
    assert [c[1] for c in got.calls] == ['k1', 'k2', 'k3']
    logged = [r for r in caplog.records if 'duplicate on' in r.getMessage()]
    assert len(logged) == 1
    assert 'compute-1 abcd.2' in logged[0].getMessage()
    sub.close()


def test_overlong_header_untracked_and_shown_short(fake_conn, caplog):
    fake_conn()
    sub, got = _subscriber(['D'])
    sub.daemonize()
    huge = {sequence.HEADER_SEQ: 'x' * 900000 + ' abcd.1'}
    sub._delivery.deliver('p.topic.D', huge, _set_event('k'))
    assert [c[1] for c in got.calls] == ['k']
    assert sub.stats['bad_headers'] == 1 and len(sub._delivery._tracker) == 0
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
    sub._delivery.deliver('p.topic.D', _numbered(1), _set_event('k'))
    n = 1
    for _ in range(100):        # a trickle of forged gaps
        n += 2
        sub._delivery.deliver('p.topic.D', _numbered(n), _set_event('k%d' % n))
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
        sub._delivery.deliver('p.topic.D', None,
                              _set_event(None, action=action))
    sub._delivery.deliver('p.topic.D', None, _set_event('good'))
    assert got.calls == [('lport', 'good', 'set', '{}', 'D')]
    assert sub.stats['malformed'] == 500 and sub.stats['syncs'] == 0
    sub.close()


def _message(subject, data, headers=None):
    return types.SimpleNamespace(subject=subject, data=data,
                                 headers=headers)


def test_delivery_queue_bounded_in_bytes_overflow_is_one_resync(fake_conn):
    conn = fake_conn(delivery_queue_size=options.MIN_DELIVERY_QUEUE_SIZE)
    world = conn.bridge.world
    world.deferred = True
    sub, got = _subscriber(['D'])
    sub.daemonize()
    body = _set_event('v', value='x' * 10000)
    for _ in range(300):        # 3 MB for a queue of 1 MiB
        asyncio.run(sub._delivery.on_message(_message('p.topic.D', body)))
    queued = sub._delivery._queued_in - sub._delivery._queued_out
    assert queued <= options.MIN_DELIVERY_QUEUE_SIZE
    posted_messages = sum(1 for fn, _ in world.posted
                          if fn == sub._delivery.deliver)
    assert posted_messages < 110
    world.run()
    assert sub.stats['overflow'] == 300 - posted_messages
    assert sub.stats['received'] == posted_messages
    assert _syncs(got) == 1
    assert sub._delivery._queued_in == sub._delivery._queued_out
    # Room again: messages are taken.
    asyncio.run(sub._delivery.on_message(_message('p.topic.D', body)))
    world.run()
    assert sub.stats['received'] == posted_messages + 1
    sub.close()


def test_headers_count_toward_the_queue_bytes(fake_conn):
    conn = fake_conn(delivery_queue_size=options.MIN_DELIVERY_QUEUE_SIZE)
    world = conn.bridge.world
    world.deferred = True
    sub, _ = _subscriber(['D'])
    sub.daemonize()
    headers = {sequence.HEADER_SEQ: 'p' * 500000 + ' a.1'}
    for _ in range(10):
        asyncio.run(sub._delivery.on_message(
            _message('p.topic.D', b'', headers)))
    assert sub._delivery._queued_in - sub._delivery._queued_out <= (
        options.MIN_DELIVERY_QUEUE_SIZE)
    world.run()
    assert sub.stats['overflow'] == 8
    sub.close()


def test_registered_publishers_known_to_the_tracker(fake_conn):
    fake_conn()
    sub, got = _subscriber(['D'])
    sub.daemonize()
    sub._delivery.on_publisher_event('publisher', 'compute-1', 'create',
                                     '{}', None)
    sub._delivery.deliver('p.topic.D', _numbered(1), _set_event('k'))
    assert sub._delivery._tracker.known_count() == 1
    sub._delivery.on_publisher_event('publisher', 'compute-1', 'delete',
                                     None, None)
    assert 'compute-1' not in sub._delivery._tracker._known_publishers
    assert got.calls[0][:3] == ('publisher', 'compute-1', 'create')
    sub.close()


def test_fork_forgets_the_parents_queue_and_resync(fake_conn):
    conn = fake_conn()
    sub, got = _subscriber(['D'])
    sub.daemonize()
    # The parent had posted bytes and asked for a resync, never run here.
    sub._delivery._queued_in = options.MIN_DELIVERY_QUEUE_SIZE * 10
    conn.bridge.world.deferred = True
    sub._delivery.request_sync('gap')
    assert sub._delivery._pacer.pending
    sub._context.inherited = True
    child = fake_conn()
    sub.register_topic('E')
    assert sub._conn is child
    assert sub._delivery._queued_in == sub._delivery._queued_out == 0
    # The child asked for its own resync, at once.
    assert _syncs(got) == 1
    sub.close()
