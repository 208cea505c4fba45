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

import asyncio
import uuid

from df_nats.conf import options
from df_nats.conf import timeouts
from df_nats import errors
from df_nats.loop import log
from df_nats.pubsub import api
from df_nats.pubsub import process_context
from df_nats.transport import capture_stream
from df_nats.transport import outbox
from df_nats.wire import codec
from df_nats.wire import sequence
from df_nats.wire import subjects

LOG = log.get_logger(__name__)

# Topics whose streams are looked up without building the subject again.
_MAX_CACHED_TOPICS = 65536


class NatsPublisher(api.PublisherApi):
    """Publishes ``DbUpdate`` events on the process's NATS connection.

    ``send_event`` packs in the caller's greenthread or thread and hands the
    event to the loop thread; it does not wait for the network. The loop
    sends the events queued since its last turn, consecutive ones of a
    topic as one message, and numbers the messages (``sequence.Stream``).
    """

    def __init__(self, context=None):
        """``context``: a ``process_context.ProcessContext`` to use rather
        than the process's own (tests); Dragonflow passes none.
        """
        super().__init__()
        self._given_context = context
        self._context = None  # the one initialize() joined
        self._conn = None
        self._subjects = None
        # This process's id in the publisher registry (set by initialize).
        self.publisher_id = None
        # Used as the publisher id until (unless) ``publisher_id`` is set.
        self._own_id = str(uuid.uuid4())
        self._stream_task = None   # loop thread: making the capture stream
        self._start_stream()

    def initialize(self):
        """Connect (or join this process's connection) and register."""
        if self._conn is not None and not self._context.inherited:
            return
        context = self._given_context or process_context.current()
        conn = context.connection
        conn.acquire()
        try:
            self.publisher_id = context.registration.acquire()
        except Exception:
            conn.release()
            raise
        self._subjects = subjects.SubjectMap(conn.conf.subject_prefix,
                                             conn.conf.listener_queue_group)
        self._context = context
        self._conn = conn
        self._start_stream()
        conn.add_listener(self._reconnected_on_loop)
        conn.service.publisher_joined(self.publisher_id)
        if conn.conf.replay_stream and conn.conf.replay_stream_create:
            conn.bridge.call_soon(self._ensure_stream_on_loop, conn)

    def _ensure_stream_on_loop(self, conn):
        """Have the capture stream created or updated, in the background
        (loop thread): nothing waits for it; it says what went wrong.
        """
        assert conn.bridge.on_loop_thread()
        if conn.nc is None or not conn.connected:
            return   # again after the reconnect
        if self._stream_task is not None and not self._stream_task.done():
            return   # one at a time; it tries again by itself
        self._stream_task = conn.bridge.loop.create_task(
            self._keep_trying_stream(conn))

    async def _keep_trying_stream(self, conn):
        # Loop thread. A failure that may pass (no answer; a cluster that
        # starts with us and has no JetStream peers yet) is tried again,
        # less and less often, while this publisher keeps its connection:
        # without the stream every lost message costs a full resync.
        delay = timeouts.STREAM_RETRY
        quiet = False
        while self._conn is conn and conn.connected and conn.nc is not None:
            outcome = await capture_stream.ensure_on_loop(
                conn.nc, conn.conf, options.replay_replicas(conn.conf),
                timeouts.JETSTREAM_REQUEST, quiet=quiet)
            if outcome != capture_stream.FAILED:
                return
            quiet = True   # said once; the rest at debug level
            await asyncio.sleep(delay)
            delay = min(2 * delay, timeouts.STREAM_RETRY_MAX)

    def _connection(self):
        """The connection, moved to this process first after a fork."""
        context = self._context
        if context is not None and context.inherited:
            self._after_fork()
        conn = self._conn
        if conn is None:
            raise errors.UsageError('df-nats publisher used before'
                                    ' initialize() or after close()')
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
        if self._subjects.is_shared(subject):
            # A queue group: nobody drops duplicates there, so nothing is
            # sent twice.
            stream.resend = False
        if len(self._streams) >= _MAX_CACHED_TOPICS:
            self._streams.clear()
        self._streams[topic] = stream
        return stream

    def _after_fork(self):
        """Move an inherited publisher to this (child) process.

        The parent's connection and loop thread are not ours: forget them
        without a single call on them, then connect this process's own.
        """
        LOG.info('df-nats: publisher used in a forked process,'
                 ' reconnecting')
        self._context = self._conn = None
        self.initialize()

    def _reconnected_on_loop(self):
        """Mark every subject used, before the events still queued.

        Loop thread. Messages the old connection swallowed leave a gap
        that the mark shows the subscribers even if nothing else is
        published for long.
        """
        conn, context = self._conn, self._context
        if conn is None or context is None or context.inherited:
            return
        assert conn.bridge.on_loop_thread()
        for stream in list(self._by_subject.values()):
            if self._subjects.is_shared(stream.subject):
                continue  # a queue group: nobody checks numbers there
            if stream.n or stream.refused:
                conn.sender.queue_mark_on_loop(stream)
        if conn.conf.replay_stream and conn.conf.replay_stream_create:
            # The servers may have lost it, or had no JetStream at start.
            self._ensure_stream_on_loop(conn)

    # -- publishing -------------------------------------------------------

    def send_event(self, update, topic=None):
        """Publish a ``DbUpdate`` on ``topic``, its own topic, or 'D'.

        Raises ``PublishBufferFull`` when NATS is unreachable and
        ``reconnect_buffer_size`` bytes are already waiting, and
        ``EventTooLarge`` for an event above the server's max_payload.
        """
        context = self._context
        if context is None or context.inherited:
            conn = self._connection()
        else:
            conn = self._conn
        if topic is None:
            topic = update.topic or api.SEND_ALL_TOPIC
        try:
            stream = self._streams[topic]
        except KeyError:
            stream = self._new_stream(topic)
        conn.sender.send(stream, codec.pack_update(update), update.table)

    def _send_event(self, data, topic):
        """Publish an already packed body to ``topic``, as a message alone.

        df-nats cannot vouch that it is an event, so it is never batched.
        """
        conn = self._connection()
        try:
            stream = self._streams[topic]
        except KeyError:
            stream = self._new_stream(topic)
        conn.sender.send(stream, data, outbox.RAW)

    def flush(self, timeout=5.0):
        """Wait until events sent so far reached the server."""
        return self._connection().sender.flush(timeout)

    def close(self):
        """Flush what is queued (bounded) and leave the connection."""
        context, self._context = self._context, None
        conn, self._conn = self._conn, None
        if context is None or context.inherited:
            # Never initialized, closed already, or inherited from the
            # parent: the parent's connection is not ours to flush or close.
            return
        conn.remove_listener(self._reconnected_on_loop)
        task, self._stream_task = self._stream_task, None
        if task is not None:
            conn.bridge.call_soon(task.cancel)
        conn.service.publisher_left(self.publisher_id)
        conn.sender.flush(conn.conf.close_timeout)
        context.registration.release()
        conn.release()
