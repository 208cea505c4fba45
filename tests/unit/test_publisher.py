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

from df_nats import codec
from df_nats import outbox
from df_nats import publisher as df_publisher
from df_nats import pubsub_api
from df_nats import subjects


class _Connection:
    """Stands in for the connection: keeps what would be queued."""

    def __init__(self):
        self.queued = []
        self.marks = []

    def send(self, stream, body, label=outbox.RAW):
        self.queued.append((stream, body, label))

    def queue_mark(self, stream):
        self.marks.append(stream)


def _publisher():
    pub = df_publisher.NatsPublisher()
    pub._conn = _Connection()
    pub._subjects = subjects.SubjectMap('p')
    pub.publisher_id = 'pub-1'
    return pub


def test_events_queued_packed_with_their_table_no_number_yet():
    pub = _publisher()
    for key in ('a', 'b', 'c'):
        pub.send_event(pubsub_api.DbUpdate('lport', key, 'create', '{}',
                                           topic='T'))
    queued = pub._conn.queued
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
        pub.send_event(pubsub_api.DbUpdate('lport', 'k', 'set', '{}'),
                       topic=topic)
    streams = [stream for stream, _, _ in pub._conn.queued]
    assert streams[0] is streams[1] and streams[2] is not streams[0]
    assert [s.subject for s in streams] == ['p.topic.T', 'p.topic.T',
                                            'p.topic.U']


def test_topic_defaults_to_the_update_then_send_all():
    pub = _publisher()
    pub.send_event(pubsub_api.DbUpdate('lport', 'k', 'set', '{}', topic='X'))
    pub.send_event(pubsub_api.DbUpdate('lport', 'k', 'set', '{}'))
    assert [s.subject for s, _, _ in pub._conn.queued] == [
        'p.topic.X', 'p.topic.D']


def test_raw_bodies_are_labelled_raw():
    pub = _publisher()
    pub._send_event(b'\x01\x02', b'T')
    assert pub._conn.queued[0][1:] == (b'\x01\x02', outbox.RAW)


def test_reconnect_marks_the_subjects_used_or_refused():
    pub = _publisher()
    pub.send_event(pubsub_api.DbUpdate('lport', 'k', 'set', '{}',
                                       topic='T'))
    pub.send_event(pubsub_api.DbUpdate('lport', 'k', 'set', '{}',
                                       topic='U'))
    t, u = (s for s, _, _ in pub._conn.queued)
    t.n = 1             # sent
    u.skip()            # refused, never sent
    pub._send_event(b'', 'V')   # queued, never sent: nothing to mark
    pub._on_reconnected()
    assert pub._conn.marks == [t, u]


def test_listener_topics_go_to_the_shared_subject_without_marks():
    pub = _publisher()
    pub._subjects = subjects.SubjectMap('p', listener_queue_group=True)
    for topic in ('listener_a', 'listener_b', 'D'):
        pub.send_event(pubsub_api.DbUpdate('lport', 'k', 'update',
                                           'ACTIVE', topic=topic))
    streams = [s for s, _, _ in pub._conn.queued]
    assert [s.subject for s in streams] == [
        'p.listeners', 'p.listeners', 'p.topic.D']
    # The body keeps the topic the publisher picked.
    assert codec.unpack_event(pub._conn.queued[1][1])['topic'] == (
        'listener_b')
    for stream in streams:
        stream.n = 1
    # After a reconnect: a mark on D, none on the queue group's subject.
    pub._on_reconnected()
    assert [s.subject for s in pub._conn.marks] == ['p.topic.D']


def test_unsafe_publisher_id_cannot_break_the_header_line():
    pub = _publisher()
    pub.publisher_id = 'evil\r\nDf-Mark: 1'
    pub.send_event(pubsub_api.DbUpdate('lport', 'k', 'set', '{}'))
    header = pub._conn.queued[0][0].header(1)
    assert '\r' not in header and '\n' not in header
