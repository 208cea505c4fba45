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
from df_nats import publisher as df_publisher
from df_nats import pubsub_api
from df_nats import sequence
from df_nats import subjects


class _Outbox:
    """Stands in for the connection: keeps what would be queued."""

    def __init__(self):
        self.queued = []

    def publish(self, subject, payload, headers):
        self.queued.append((subject, payload, headers))


def _publisher():
    pub = df_publisher.NatsPublisher()
    pub._conn = _Outbox()
    pub._subjects = subjects.SubjectMap('p')
    pub.publisher_id = 'pub-1'
    return pub


def test_queued_events_keep_their_own_sequence_headers():
    pub = _publisher()
    for key in ('a', 'b', 'c'):
        pub.send_event(pubsub_api.DbUpdate('lport', key, 'create', '{}',
                                           topic='T'))
    headers = [h for _, _, h in pub._conn.queued]
    # The outbox holds these until they are sent: one dict per event.
    seqs = [sequence.parse(h) for h in headers]
    assert [s[2] for s in seqs] == [1, 2, 3]
    assert {s[0] for s in seqs} == {'pub-1'}
    assert len({id(h) for h in headers}) == 3
    assert all(h[codec.HEADER_TABLE] == 'lport' for h in headers)
    # The shared label headers were not touched.
    assert sequence.HEADER_SEQ not in codec.event_headers('lport', 'create')


def test_each_subject_counts_on_its_own():
    pub = _publisher()
    for topic in ('T', 'U', 'T'):
        pub.send_event(pubsub_api.DbUpdate('lport', 'k', 'set', '{}',
                                           topic=topic))
    numbers = [(s, sequence.parse(h)[2]) for s, _, h in pub._conn.queued]
    assert numbers == [('p.topic.T', 1), ('p.topic.U', 1),
                       ('p.topic.T', 2)]


def test_listener_topics_go_to_the_shared_subject_without_marks():
    pub = _publisher()
    pub._subjects = subjects.SubjectMap('p', listener_queue_group=True)
    for topic in ('listener_a', 'listener_b', 'D'):
        pub.send_event(pubsub_api.DbUpdate('lport', 'k', 'update',
                                           'ACTIVE', topic=topic))
    assert [s for s, _, _ in pub._conn.queued] == [
        'p.listeners', 'p.listeners', 'p.topic.D']
    # The body keeps the topic the publisher picked.
    assert codec.unpack_event(pub._conn.queued[1][1])['topic'] == (
        'listener_b')
    # After a reconnect: a mark on D, none on the queue group's subject.
    pub._conn.queued.clear()
    pub._send_marks(pub._conn)
    assert [(s, h.get(sequence.HEADER_MARK)) for s, _, h
            in pub._conn.queued] == [('p.topic.D', '1')]
