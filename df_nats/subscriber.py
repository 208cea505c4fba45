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

"""The subscriber: NATS subjects to the Dragonflow callback."""

import collections
import threading
import time

from oslo_log import log as logging

from df_nats import codec
from df_nats import connection as df_connection
from df_nats import pubsub_api
from df_nats import registry_watch
from df_nats import subjects

LOG = logging.getLogger(__name__)

# Malformed messages are logged at most this often (they are all counted).
_MALFORMED_LOG_INTERVAL = 1.0


class NatsSubscriber(pubsub_api.SubscriberApi):
    """Delivers events of registered topics to the Dragonflow callback.

    The callback runs in the caller's world (a greenthread under eventlet, a
    native thread otherwise), one event at a time, in arrival order. After
    the connection comes back from an outage it is called once with
    ``(None, None, 'sync', None, None)``: events may have been missed and
    Dragonflow answers with a full resync.
    """

    def __init__(self):
        super().__init__()
        self._callback = None
        self._topics = {}  # topic bytes -> nats Subscription or None
        self._uris = []
        self._conn = None
        self._subjects = None
        self._running = False
        self._stopped = threading.Event()
        self._last_malformed_log = 0.0
        self._publisher_feed = None
        self.stats = collections.Counter()

    def initialize(self, callback):
        """Store the callback; a later call replaces it (newest wins)."""
        self._callback = callback

    # -- listen addresses: no routing meaning with a broker ---------------

    def register_listen_address(self, uri):
        if uri in self._uris:
            return False
        self._uris.append(uri)
        return True

    def unregister_listen_address(self, uri):
        if uri in self._uris:
            self._uris.remove(uri)

    # -- topics -------------------------------------------------------------

    def register_topic(self, topic):
        """Receive ``topic``; True if it was not registered yet."""
        key = subjects.topic_bytes(topic)
        if key in self._topics:
            return False
        LOG.info('df-nats: register topic %r', topic)
        self._topics[key] = None
        if self._running:
            self._topics[key] = self._subscribe(key)
        return True

    def unregister_topic(self, topic):
        """Stop receiving ``topic``."""
        key = subjects.topic_bytes(topic)
        if key not in self._topics:
            LOG.warning('df-nats: topic %r was not registered', topic)
            return
        LOG.info('df-nats: unregister topic %r', topic)
        sub = self._topics.pop(key)
        if sub is not None:
            self._conn.unsubscribe(sub)

    def _subscribe(self, key):
        return self._conn.subscribe(self._subjects.subject(key),
                                    self._on_message)

    # -- lifecycle ------------------------------------------------------------

    def daemonize(self):
        """Connect and subscribe every registered topic; returns at once."""
        if self._running:
            return
        if self._callback is None:
            raise RuntimeError('df-nats subscriber: initialize(callback)'
                               ' must come before daemonize()')
        conn = df_connection.get_connection()
        conn.acquire()
        self._conn = conn
        self._subjects = subjects.SubjectMap(conn.conf.subject_prefix)
        try:
            for key in list(self._topics):
                self._topics[key] = self._subscribe(key)
        except Exception:
            self._conn = None
            conn.release()
            raise
        conn.add_listener(self._on_reconnected)
        self._stopped.clear()
        self._running = True
        if conn.conf.publisher_events:
            self._publisher_feed = registry_watch.start_publisher_feed(
                conn, self._call)

    def run(self):
        """Receive until ``close()``: ``daemonize`` and wait."""
        self.daemonize()
        self._stopped.wait()

    @property
    def is_running(self):
        return self._running

    def is_daemonize(self):
        """Dragonflow 4.0.0's name for ``is_running``."""
        return self._running

    def close(self):
        """Unsubscribe and leave the connection; safe to call twice."""
        if not self._running:
            return
        self._running = False
        conn, self._conn = self._conn, None
        conn.remove_listener(self._on_reconnected)
        feed, self._publisher_feed = self._publisher_feed, None
        if feed is not None:
            feed.stop()
        for key, sub in list(self._topics.items()):
            self._topics[key] = None
            if sub is not None and conn.connected:
                try:
                    conn.unsubscribe(sub)
                except Exception as exc:
                    LOG.warning('df-nats: unsubscribe on close: %s', exc)
        conn.release()
        self._stopped.set()

    # -- delivery -------------------------------------------------------------

    async def _on_message(self, msg):
        # Loop thread: hand the body over, decode it in the caller's world.
        self._conn.bridge.world.post(self._deliver, msg.data)

    def _on_reconnected(self):
        # Loop thread.
        self._conn.bridge.world.post(self._deliver_sync)

    def _deliver(self, data):
        if not self._running:
            return
        try:
            event = codec.unpack_event(data)
        except codec.MalformedEvent as exc:
            problem = exc
        else:
            problem = None
        if problem is not None:
            self._count_malformed(data, problem)
            return
        self.stats['received'] += 1
        self._call(event['table'], event['key'], event['action'],
                   event['value'], event['topic'])

    def _deliver_sync(self):
        if self._running:
            self.stats['syncs'] += 1
            LOG.warning('df-nats: reconnected, asking for a resync')
            self._call(None, None, 'sync', None, None)

    def _call(self, table, key, action, value, topic):
        try:
            self._callback(table, key, action, value, topic)
        except Exception:
            self.stats['callback_errors'] += 1
            LOG.exception('df-nats: the subscriber callback failed on'
                          ' %s %s %s', action, table, key)

    def _count_malformed(self, data, exc):
        self.stats['malformed'] += 1
        now = time.monotonic()
        if now - self._last_malformed_log >= _MALFORMED_LOG_INTERVAL:
            self._last_malformed_log = now
            LOG.warning('df-nats: dropped a malformed message of %d bytes'
                        ' (%s); %d dropped so far', len(data), exc,
                        self.stats['malformed'])
