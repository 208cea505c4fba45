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

"""The driver Dragonflow loads for ``[df] pub_sub_driver = nats``."""

from df_nats.conf import options  # noqa: F401  (registers [df_nats] on CONF)
from df_nats.pubsub import api
from df_nats.pubsub import multiproc
from df_nats.pubsub import publisher
from df_nats.pubsub import subscriber


class NatsPubSub(api.PubSubApi):
    """NATS pub/sub driver: one publisher and one subscriber per instance.

    Dragonflow instantiates it with no arguments, once for the publisher and
    once for the subscriber; both instances share the process's connection.
    It is also the driver for Dragonflow 4.0.0's ``[df]
    pub_sub_multiproc_driver = nats`` (the same entry-point namespace): then
    each neutron-server worker publishes to NATS on its own connection.
    """

    def __init__(self):
        super().__init__()
        self._publisher = None
        self._subscriber = None

    def get_publisher(self):
        if self._publisher is None:
            self._publisher = publisher.NatsPublisher()
        multiproc.publisher_handed_out()
        return self._publisher

    def get_subscriber(self):
        if self._subscriber is None:
            self._subscriber = subscriber.NatsSubscriber()
            multiproc.subscriber_handed_out()
        return self._subscriber
