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

"""The publisher: Dragonflow events to NATS subjects."""

import os
import uuid

from oslo_log import log as logging

from df_nats import codec
from df_nats import connection as df_connection
from df_nats import outbox
from df_nats import pubsub_api
from df_nats import registry
from df_nats import sequence
from df_nats import subjects

LOG = logging.getLogger(__name__)

# Forks this process has gone through: a publisher notices that it was
# inherited by comparing, instead of calling os.getpid() per event.
_forks = 0


def _count_fork():
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_count_fork)

# Topics whose streams are looked up without building the subject again.
_MAX_CACHED_TOPICS = 65536


class NatsPublisher(pubsub_api.PublisherApi):
    """Publishes ``DbUpdate`` events on the process's NATS connection.

    ``send_event`` packs in the caller's greenthread or thread and hands the
    event to the loop thread; it does not wait for the network. The loop
    sends the events queued since its last turn, consecutive ones of a
    topic as one message, and numbers the messages (``sequence.Stream``).
    """

    def __init__(self):
        super().__init__()
        self._conn = None
        self._subjects = None
        # This process's id in the publisher registry (set by initialize).
        self.publisher_id = None
        self._forks = _forks
        # Used as the publisher id until (unless) ``publisher_id`` is set.
        self._own_id = str(uuid.uuid4())
        self._start_stream()

    def initialize(self):
        """Connect (or join this process's connection) and register."""
        if self._conn is not None:
            return
        conn = df_connection.get_connection()
        conn.acquire()
        try:
            self.publisher_id = registry.get_registration().acquire()
        except Exception:
            conn.release()
            raise
        self._subjects = subjects.SubjectMap(conn.conf.subject_prefix,
                                             conn.conf.listener_queue_group)
        self._conn = conn
        self._start_stream()
        conn.add_listener(self._on_reconnected)
        conn.service.publisher_joined(self.publisher_id)

    def _connection(self):
        conn = self._conn
        if conn is None:
            raise RuntimeError('df-nats publisher used before initialize()'
                               ' or after close()')
        return conn

    # -- sequence numbers and fork safety ---------------------------------

    def _start_stream(self):
        """Begin new sequence streams: a new incarnation, counters at 0."""
        self._incarnation = sequence.new_incarnation()
        self._streams = {}      # topic -> Stream (a cache)
        self._by_subject = {}   # subject -> Stream: one numbering each

    def _new_stream(self, topic):
        subject = self._subjects.subject(topic)
        publisher = codec.header_value(self.publisher_id or self._own_id)
        # setdefault: str and bytes topics of one subject, or two threads
        # racing here, end up with the one stream.
        stream = self._by_subject.setdefault(
            subject, sequence.Stream(subject, publisher, self._incarnation))
        if len(self._streams) >= _MAX_CACHED_TOPICS:
            self._streams.clear()
        self._streams[topic] = stream
        return stream

    def _after_fork(self):
        """Move an inherited publisher to this (child) process.

        The parent's connection and loop thread are not ours: forget them
        without a single call on them, then connect this process's own.
        """
        conn = self._conn
        self._forks = _forks
        if conn is None:
            return  # never initialized, or closed: nothing to move
        LOG.info('df-nats: publisher used in forked process %d,'
                 ' reconnecting', os.getpid())
        self._conn = None
        self.initialize()

    def _on_reconnected(self):
        """Mark every subject used, before the events still queued.

        Loop thread. Messages the old connection swallowed leave a gap
        that the mark shows the subscribers even if nothing else is
        published for long.
        """
        conn = self._conn
        if conn is None or self._forks != _forks:
            return
        for stream in list(self._by_subject.values()):
            if self._subjects.is_shared(stream.subject):
                continue  # a queue group: nobody checks numbers there
            if stream.n or stream.refused:
                conn.queue_mark(stream)

    # -- publishing -------------------------------------------------------

    def send_event(self, update, topic=None):
        """Publish a ``DbUpdate`` on ``topic``, its own topic, or 'D'.

        Raises ``PublishBufferFull`` when NATS is unreachable and
        ``reconnect_buffer_size`` bytes are already waiting, and
        ``EventTooLarge`` for an event above the server's max_payload.
        """
        if self._forks != _forks:
            self._after_fork()
        conn = self._conn
        if conn is None:
            self._connection()
        if topic is None:
            topic = update.topic or pubsub_api.SEND_ALL_TOPIC
        try:
            stream = self._streams[topic]
        except KeyError:
            stream = self._new_stream(topic)
        conn.send(stream, codec.pack_update(update), update.table)

    def _send_event(self, data, topic):
        """Publish an already packed body to ``topic``, as a message alone.

        df-nats cannot vouch that it is an event, so it is never batched.
        """
        if self._forks != _forks:
            self._after_fork()
        conn = self._connection()
        try:
            stream = self._streams[topic]
        except KeyError:
            stream = self._new_stream(topic)
        conn.send(stream, data, outbox.RAW)

    def flush(self, timeout=5.0):
        """Wait until events sent so far reached the server."""
        if self._forks != _forks:
            self._after_fork()
        return self._connection().flush(timeout)

    def close(self):
        """Flush what is queued (bounded) and leave the connection."""
        if self._forks != _forks:
            # Inherited from the parent and never used here: the parent's
            # connection is not ours to flush or close.
            self._conn = None
            self._forks = _forks
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.remove_listener(self._on_reconnected)
            conn.service.publisher_left(self.publisher_id)
            conn.flush(conn.conf.close_timeout)
            registry.get_registration().release()
            conn.release()
