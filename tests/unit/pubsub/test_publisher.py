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

"""What the publisher hands to the connection, without a server."""

import asyncio
import types

import pytest

from df_nats.conf import timeouts
from df_nats import errors
from df_nats.pubsub import api
from df_nats.pubsub import process_context
from df_nats.pubsub import publisher
from df_nats.transport import capture_stream
from df_nats.transport import outbox
from df_nats.wire import codec
from tests.unit import fakes


class _Registration:
    def __init__(self, publisher_id='pub-1'):
        self.publisher_id = publisher_id
        self.users = 0

    def acquire(self):
        self.users += 1
        return self.publisher_id

    def release(self):
        self.users -= 1


def _context(listener_queue_group=False):
    conf = types.SimpleNamespace(
        subject_prefix='p', listener_queue_group=listener_queue_group,
        close_timeout=1.0, replay_stream='')
    return process_context.ProcessContext(
        bridge=object(), connection=fakes.Connection(conf),
        registration=_Registration())


def _publisher(**conn_options):
    pub = publisher.NatsPublisher(context=_context(**conn_options))
    pub.initialize()
    return pub


def test_events_queued_packed_with_their_table_no_number_yet():
    pub = _publisher()
    for key in ('a', 'b', 'c'):
        pub.send_event(api.DbUpdate('lport', key, 'create', '{}',
                                    topic='T'))
    queued = pub._conn.sender.queued
    assert [codec.unpack_event(body)['key'] for _, body, _ in queued] == [
        'a', 'b', 'c']
    assert {label for _, _, label in queued} == {'lport'}
    # Numbers are taken when the loop sends, not per event here.
    assert {stream.n for stream, _, _ in queued} == {0}
    stream = queued[0][0]
    assert stream.subject == 'p.topic.T'
    assert stream.header(1).startswith('pub-1 ')


def test_one_stream_per_subject_whatever_the_topic_type():
    pub = _publisher()
    for topic in ('T', b'T', 'U'):
        pub.send_event(api.DbUpdate('lport', 'k', 'set', '{}'),
                       topic=topic)
    streams = [stream for stream, _, _ in pub._conn.sender.queued]
    assert streams[0] is streams[1] and streams[2] is not streams[0]
    assert [s.subject for s in streams] == ['p.topic.T', 'p.topic.T',
                                            'p.topic.U']


def test_topic_defaults_to_the_update_then_send_all():
    pub = _publisher()
    pub.send_event(api.DbUpdate('lport', 'k', 'set', '{}', topic='X'))
    pub.send_event(api.DbUpdate('lport', 'k', 'set', '{}'))
    assert [s.subject for s, _, _ in pub._conn.sender.queued] == [
        'p.topic.X', 'p.topic.D']


def test_raw_bodies_are_labelled_raw():
    pub = _publisher()
    pub._send_event(b'\x01\x02', b'T')
    assert pub._conn.sender.queued[0][1:] == (b'\x01\x02', outbox.RAW)


def test_reconnect_marks_the_subjects_used_or_refused():
    pub = _publisher()
    pub.send_event(api.DbUpdate('lport', 'k', 'set', '{}',
                                topic='T'))
    pub.send_event(api.DbUpdate('lport', 'k', 'set', '{}',
                                topic='U'))
    t, u = (s for s, _, _ in pub._conn.sender.queued)
    t.n = 1             # sent
    u.skip()            # refused, never sent
    pub._send_event(b'', 'V')   # queued, never sent: nothing to mark
    pub._reconnected_on_loop()
    assert pub._conn.sender.marks == [t, u]


def test_listener_topics_go_to_the_shared_subject_without_marks():
    pub = _publisher(listener_queue_group=True)
    for topic in ('listener_a', 'listener_b', 'D'):
        pub.send_event(api.DbUpdate('lport', 'k', 'update',
                                    'ACTIVE', topic=topic))
    streams = [s for s, _, _ in pub._conn.sender.queued]
    assert [s.subject for s in streams] == [
        'p.listeners', 'p.listeners', 'p.topic.D']
    # The body keeps the topic the publisher picked.
    assert codec.unpack_event(pub._conn.sender.queued[1][1])['topic'] == (
        'listener_b')
    for stream in streams:
        stream.n = 1
    # After a reconnect: a mark on D, none on the queue group's subject.
    pub._reconnected_on_loop()
    assert [s.subject for s in pub._conn.sender.marks] == ['p.topic.D']


def test_only_streams_outside_the_queue_group_are_resent():
    # Nobody drops duplicates on the listeners' shared subject.
    pub = _publisher(listener_queue_group=True)
    for topic in ('listener_a', 'D'):
        pub.send_event(api.DbUpdate('lport', 'k', 'update',
                                    'ACTIVE', topic=topic))
    shared, own = (s for s, _, _ in pub._conn.sender.queued)
    assert (shared.subject, shared.resend) == ('p.listeners', False)
    assert (own.subject, own.resend) == ('p.topic.D', True)


def test_unsafe_publisher_id_cannot_break_the_header_line():
    context = _context()
    context.registration.publisher_id = 'evil\r\nDf-Mark: 1'
    pub = publisher.NatsPublisher(context=context)
    pub.initialize()
    pub.send_event(api.DbUpdate('lport', 'k', 'set', '{}'))
    header = pub._conn.sender.queued[0][0].header(1)
    assert '\r' not in header and '\n' not in header


def test_initialize_joins_the_context_once_and_close_leaves_it():
    context = _context()
    pub = publisher.NatsPublisher(context=context)
    pub.initialize()
    pub.initialize()
    conn, registration = context.connection, context.registration
    assert (conn.users, registration.users) == (1, 1)
    assert pub.publisher_id == 'pub-1'
    assert conn.listeners == [pub._reconnected_on_loop]
    assert conn.service.publishers == ['pub-1']   # the role it shows
    pub.close()
    pub.close()
    assert (conn.users, registration.users) == (0, 0)
    assert conn.listeners == [] and conn.sender.flushed == [1.0]
    assert conn.service.publishers == []


def test_a_failed_registration_leaves_the_connection():
    context = _context()

    def refuse():
        raise errors.ConfigError('publisher_ttl', 'bucket disagrees')
    context.registration.acquire = refuse
    pub = publisher.NatsPublisher(context=context)
    with pytest.raises(errors.ConfigError):
        pub.initialize()
    assert context.connection.users == 0


@pytest.mark.parametrize('use', [
    lambda pub: pub.send_event(api.DbUpdate('t', 'k', 'set', '{}')),
    lambda pub: pub._send_event(b'x', 'T'),
    lambda pub: pub.flush(1.0),
], ids=['send_event', '_send_event', 'flush'])
def test_use_before_initialize_or_after_close_names_the_mistake(use):
    pub = publisher.NatsPublisher(context=_context())
    with pytest.raises(errors.UsageError, match='before initialize'):
        use(pub)
    pub.initialize()
    pub.close()
    with pytest.raises(errors.UsageError, match='after close'):
        use(pub)


def test_an_inherited_publisher_moves_without_touching_the_parent(
        monkeypatch):
    parent, child = _context(), _context()
    child.registration.publisher_id = 'pub-2'
    monkeypatch.setattr(process_context, 'current', lambda: parent)
    pub = publisher.NatsPublisher()
    pub.initialize()
    pub.send_event(api.DbUpdate('t', 'k', 'set', '{}', topic='T'))
    old_stream = parent.connection.sender.queued[0][0]
    # What a fork does: the parent's context is inherited, and the
    # process's context is the child's own.
    parent.inherited = True
    monkeypatch.setattr(process_context, 'current', lambda: child)
    pub.send_event(api.DbUpdate('t', 'k2', 'set', '{}', topic='T'))
    assert len(parent.connection.sender.queued) == 1
    assert parent.connection.users == 1
    assert parent.connection.sender.flushed == []
    assert parent.registration.users == 1
    stream = child.connection.sender.queued[0][0]
    assert stream is not old_stream and stream.header(1).startswith('pub-2')
    assert pub.publisher_id == 'pub-2' and child.connection.users == 1


def test_closing_an_inherited_publisher_leaves_the_parent_alone():
    parent = _context()
    pub = publisher.NatsPublisher(context=parent)
    pub.initialize()
    parent.inherited = True
    pub.close()
    assert parent.connection.users == 1
    assert parent.connection.sender.flushed == []
    assert parent.registration.users == 1


def _stream_attempts(monkeypatch, outcomes, on_sleep=None):
    """Run a publisher's attempts at the capture stream: ``outcomes`` in
    turn; what each attempt was (quiet or not) and the waits between.
    """
    pub = _publisher()
    conn = pub._conn
    conn.nc = object()
    conn.conf.replay_replicas, conn.conf.kv_replicas = 0, 3
    attempts, waits = [], []

    async def ensure(nc, conf, replicas, timeout, quiet=False):
        assert replicas == 3
        attempts.append(quiet)
        return outcomes.pop(0)

    async def sleep(seconds):
        waits.append(seconds)
        if on_sleep:
            on_sleep(conn)
    monkeypatch.setattr(capture_stream, 'ensure_on_loop', ensure)
    monkeypatch.setattr(publisher.asyncio, 'sleep', sleep)
    asyncio.run(pub._keep_trying_stream(conn))
    return attempts, waits


def test_the_capture_stream_is_tried_again_until_made(monkeypatch):
    # A cluster starting with us: no JetStream peers for it at first.
    attempts, waits = _stream_attempts(monkeypatch, [
        capture_stream.FAILED, capture_stream.FAILED,
        capture_stream.CREATED])
    assert attempts == [False, True, True]   # warned once
    assert waits == [timeouts.STREAM_RETRY, 2 * timeouts.STREAM_RETRY]


def test_the_waits_between_attempts_are_bounded(monkeypatch):
    attempts, waits = _stream_attempts(
        monkeypatch, [capture_stream.FAILED] * 9 + [capture_stream.UNCHANGED])
    assert len(attempts) == 10 and max(waits) == timeouts.STREAM_RETRY_MAX


@pytest.mark.parametrize('outcome', [capture_stream.NO_JETSTREAM,
                                     capture_stream.KEPT])
def test_what_retrying_cannot_change_is_not_retried(monkeypatch, outcome):
    # No JetStream: tried again after a reconnect, not on a timer.
    assert _stream_attempts(monkeypatch, [outcome]) == ([False], [])


def test_no_attempt_once_the_connection_is_lost(monkeypatch):
    def lost(conn):
        conn.connected = False
    attempts, _ = _stream_attempts(monkeypatch, [capture_stream.FAILED],
                                   on_sleep=lost)
    assert attempts == [False]
