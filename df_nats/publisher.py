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
import threading
import uuid

from oslo_log import log as logging

from df_nats import codec
from df_nats import connection as df_connection
from df_nats import pubsub_api
from df_nats import registry
from df_nats import sequence
from df_nats import subjects

LOG = logging.getLogger(__name__)


class NatsPublisher(pubsub_api.PublisherApi):
    """Publishes ``DbUpdate`` events on the process's NATS connection.

    ``send_event`` packs in the caller's greenthread or thread and hands the
    message to the loop thread; it does not wait for the network.
    """

    def __init__(self):
        super().__init__()
        self._conn = None
        self._subjects = None
        # This process's id in the publisher registry (set by initialize).
        self.publisher_id = None
        self._pid = None
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

    def _connection(self):
        conn = self._conn
        if conn is None:
            raise RuntimeError('df-nats publisher used before initialize()'
                               ' or after close()')
        return conn

    # -- sequence numbers and fork safety ---------------------------------

    def _start_stream(self):
        """Begin a new sequence stream: a new incarnation, counters at 0.

        Called when the publisher starts in a process; the lock is new too,
        as one inherited through fork may be held by a parent's thread.
        """
        self._pid = os.getpid()
        self._incarnation = sequence.new_incarnation()
        self._seqs = {}
        self._seq_lock = threading.Lock()

    def _after_fork(self):
        """Move an inherited publisher to this (child) process.

        The parent's connection and loop thread are not ours: forget them
        without a single call on them, then connect this process's own.
        """
        conn = self._conn
        self._pid = os.getpid()
        if conn is None:
            return  # never initialized, or closed: nothing to move
        LOG.info('df-nats: publisher used in forked process %d,'
                 ' reconnecting', self._pid)
        self._conn = None
        self.initialize()

    def _publish(self, topic, payload, headers):
        if self._pid != os.getpid():
            self._after_fork()
        conn = self._connection()
        subject = self._subjects.subject(topic)
        publisher = self.publisher_id or self._own_id
        # Numbering and queueing happen together, so that the numbers go
        # on the wire in order whatever greenthreads or threads race here.
        # A number taken by an event that is then refused (buffer full) is
        # a gap for subscribers: they resync, the event is not lost
        # silently.
        with self._seq_lock:
            n = self._seqs.get(subject, 0) + 1
            self._seqs[subject] = n
            # A new dict: the label headers are shared (codec caches them)
            # and the outbox keeps this one until it is sent.
            conn.publish(subject, payload, {
                **headers, sequence.HEADER_PUBLISHER: publisher,
                sequence.HEADER_SEQ: sequence.seq_header(self._incarnation,
                                                         n)})

    def _on_reconnected(self):
        # Loop thread: the marks are numbered under the (possibly green)
        # sequence lock, so they are queued from the caller's world.
        conn = self._conn
        if conn is not None:
            conn.bridge.world.post(self._send_marks, conn)

    def _send_marks(self, conn):
        """Queue a mark on every subject used, behind its events.

        Events the old connection swallowed leave a gap that the mark
        shows the subscribers even if nothing else is published for long.
        """
        if self._conn is not conn or self._pid != os.getpid():
            return
        publisher = self.publisher_id or self._own_id
        with self._seq_lock:
            try:
                for subject, n in self._seqs.items():
                    if self._subjects.is_shared(subject):
                        continue  # a queue group: nobody checks numbers
                    conn.publish(subject, b'', {
                        sequence.HEADER_PUBLISHER: publisher,
                        sequence.HEADER_SEQ: sequence.seq_header(
                            self._incarnation, n),
                        sequence.HEADER_MARK: '1'})
            except df_connection.PublishBufferFull:
                pass  # down again: the next reconnect sends marks again

    # -- publishing -------------------------------------------------------

    def send_event(self, update, topic=None):
        """Publish a ``DbUpdate`` on ``topic``, its own topic, or 'D'.

        Raises ``PublishBufferFull`` when NATS is unreachable and
        ``reconnect_buffer_size`` bytes are already waiting.
        """
        if topic is None:
            topic = update.topic or pubsub_api.SEND_ALL_TOPIC
        payload = codec.pack_event(update.to_dict())
        self._publish(topic, payload,
                      codec.event_headers(update.table, update.action))

    def _send_event(self, data, topic):
        """Publish an already packed body to ``topic``."""
        self._publish(topic, data, {})

    def flush(self, timeout=5.0):
        """Wait until events sent so far reached the server."""
        if self._pid != os.getpid():
            self._after_fork()
        return self._connection().flush(timeout)

    def close(self):
        """Flush what is queued (bounded) and leave the connection."""
        if self._pid != os.getpid():
            # Inherited from the parent and never used here: the parent's
            # connection is not ours to flush or close.
            self._conn = None
            self._pid = os.getpid()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.remove_listener(self._on_reconnected)
            conn.flush(conn.conf.close_timeout)
            registry.get_registration().release()
            conn.release()
