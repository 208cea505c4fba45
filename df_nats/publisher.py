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

from oslo_log import log as logging

from df_nats import codec
from df_nats import connection as df_connection
from df_nats import pubsub_api
from df_nats import registry
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
        self._subjects = subjects.SubjectMap(conn.conf.subject_prefix)
        self._conn = conn

    def _connection(self):
        conn = self._conn
        if conn is None:
            raise RuntimeError('df-nats publisher used before initialize()'
                               ' or after close()')
        return conn

    def send_event(self, update, topic=None):
        """Publish a ``DbUpdate`` on ``topic``, its own topic, or 'D'."""
        if topic is None:
            topic = update.topic or pubsub_api.SEND_ALL_TOPIC
        conn = self._connection()
        payload = codec.pack_event(update.to_dict())
        conn.publish(self._subjects.subject(topic), payload,
                     codec.event_headers(update.table, update.action))

    def _send_event(self, data, topic):
        """Publish an already packed body to ``topic``."""
        self._connection().publish(self._subjects.subject(topic), data)

    def flush(self, timeout=5.0):
        """Wait until events sent so far reached the server."""
        return self._connection().flush(timeout)

    def close(self):
        """Flush what is queued (bounded) and leave the connection."""
        conn, self._conn = self._conn, None
        if conn is not None:
            registry.get_registration().release()
            conn.release()
