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

"""The Dragonflow pub/sub ABCs the driver classes derive from.

When Dragonflow is importable its own ``dragonflow.db.pub_sub_api`` classes
are used, so ``isinstance`` checks in Dragonflow hold. Dragonflow is retired
and does not install on modern Python, so df-nats does not depend on it:
otherwise the equivalent ABCs below stand in, with the union of the 4.0.0
and master method sets of the same classes (not of Dragonflow's
``*AgentBase`` helpers, whose methods the driver classes define
themselves). ``tox -e dragonflow`` runs the driver with Dragonflow 4.0.0.
"""

import abc

SEND_ALL_TOPIC = 'D'


class PubSubApi(abc.ABC):
    """Hands out the publisher and the subscriber of a driver instance."""

    @abc.abstractmethod
    def get_publisher(self):
        """The publisher object of this driver instance."""

    @abc.abstractmethod
    def get_subscriber(self):
        """The subscriber object of this driver instance."""


class PublisherApi(abc.ABC):
    """Sends Dragonflow events."""

    @abc.abstractmethod
    def initialize(self):
        """Connect; called before any event is sent."""

    @abc.abstractmethod
    def _send_event(self, data, topic):
        """Publish packed bytes to a topic."""

    @abc.abstractmethod
    def close(self):
        """Release everything."""

    def set_publisher_for_failover(self, pub, callback):
        pass

    def start_detect_for_failover(self):
        pass

    def process_ha(self):
        pass


class SubscriberApi(abc.ABC):
    """Receives Dragonflow events for registered topics."""

    @abc.abstractmethod
    def initialize(self, callback):
        """Store ``callback(table, key, action, value, topic)``."""

    @abc.abstractmethod
    def register_listen_address(self, uri):
        """Accept a publisher address; True if new."""

    @abc.abstractmethod
    def unregister_listen_address(self, uri):
        """Forget a publisher address."""

    @abc.abstractmethod
    def run(self):
        """The receive loop that ``daemonize`` runs."""

    @abc.abstractmethod
    def daemonize(self):
        """Start receiving in the background."""

    @property
    @abc.abstractmethod
    def is_running(self):
        """True between ``daemonize()`` and ``close()``."""

    @abc.abstractmethod
    def close(self):
        """Stop receiving and release everything."""

    @abc.abstractmethod
    def register_topic(self, topic):
        """Receive events of ``topic``; True if new."""

    @abc.abstractmethod
    def unregister_topic(self, topic):
        """Stop receiving events of ``topic``."""

    # Unlike PublisherApi, Dragonflow's SubscriberApi has no failover hooks
    # (they are on its SubscriberAgentBase): neither has this stand-in, so
    # that a subscriber missing them fails without Dragonflow too.


class DbUpdate:
    """Dragonflow's event object (``dragonflow.db.db_common.DbUpdate``)."""

    def __init__(self, table, key, action, value, timestamp=None,
                 topic=SEND_ALL_TOPIC):
        self.table = table
        self.key = key
        self.action = action
        self.value = value
        self.timestamp = timestamp
        self.topic = topic

    def to_dict(self):
        return {'table': self.table, 'key': self.key, 'action': self.action,
                'value': self.value, 'topic': self.topic}


try:  # pragma: no cover - depends on whether Dragonflow is installed
    from dragonflow.db import db_common as _df_common
    from dragonflow.db import pub_sub_api as _df_api
except ImportError:
    _df_api = None
else:
    PubSubApi = _df_api.PubSubApi  # noqa: F811
    PublisherApi = _df_api.PublisherApi  # noqa: F811
    SubscriberApi = _df_api.SubscriberApi  # noqa: F811
    DbUpdate = _df_common.DbUpdate  # noqa: F811

DRAGONFLOW_PRESENT = _df_api is not None
