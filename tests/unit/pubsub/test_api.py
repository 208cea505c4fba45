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

"""The driver classes offer every method Dragonflow calls on them.

Without Dragonflow the classes derive from df-nats' stand-in ABCs; with it
(tox -e dragonflow) from Dragonflow's own, where the methods of its
``*AgentBase`` helpers must be there too.
"""

import inspect

import pytest

from df_nats import driver
from df_nats.pubsub import api
from df_nats.pubsub import publisher
from df_nats.pubsub import subscriber
from tests import conftest

# What Dragonflow 4.0.0 and master call on a driver's objects (NbApi,
# df_local_controller, df_publisher_service, nb_api_neutron_notifier).
DRIVER_CALLS = ['get_publisher', 'get_subscriber']
PUBLISHER_CALLS = ['initialize', 'send_event', '_send_event', 'close',
                   'set_publisher_for_failover', 'start_detect_for_failover',
                   'process_ha']
SUBSCRIBER_CALLS = ['initialize', 'register_topic', 'unregister_topic',
                    'register_listen_address', 'unregister_listen_address',
                    'daemonize', 'run', 'close', 'is_daemonize',
                    'set_subscriber_for_failover', 'register_hamsg_for_db',
                    'process_ha']


@pytest.mark.parametrize('cls,names', [
    (driver.NatsPubSub, DRIVER_CALLS),
    (publisher.NatsPublisher, PUBLISHER_CALLS),
    (subscriber.NatsSubscriber, SUBSCRIBER_CALLS),
])
def test_methods_dragonflow_calls(cls, names):
    missing = [n for n in names if not callable(getattr(cls, n, None))]
    assert missing == []


def test_is_running_is_a_property():
    # master's NbApi reads ``subscriber.is_running`` without calling it.
    assert isinstance(inspect.getattr_static(subscriber.NatsSubscriber,
                                             'is_running'), property)


def test_objects_build_and_failover_hooks_do_nothing():
    # Instantiating proves no abstract method is left undefined.
    the_driver = driver.NatsPubSub()
    pub = the_driver.get_publisher()
    sub = the_driver.get_subscriber()
    assert pub.set_publisher_for_failover(pub, lambda: None) is None
    assert pub.start_detect_for_failover() is None
    assert pub.process_ha() is None
    assert sub.set_subscriber_for_failover(sub, lambda *a: None) is None
    assert sub.register_hamsg_for_db() is None
    assert sub.process_ha() is None
    assert sub.is_running is False and sub.is_daemonize() is False


def test_stand_in_subscriber_api_has_no_failover_hooks():
    """Dragonflow's SubscriberApi lacks them; a stand-in that had them hid
    a subscriber without them (AttributeError in NbApi on a controller).
    """
    if api.DRAGONFLOW_PRESENT:
        pytest.skip('Dragonflow present: its own SubscriberApi is used')
    for name in ('set_subscriber_for_failover', 'register_hamsg_for_db',
                 'process_ha'):
        assert not hasattr(api.SubscriberApi, name)


def _public_methods(cls):
    return {name for name, member in inspect.getmembers(cls)
            if not name.startswith('_') and (callable(member)
                                             or isinstance(member, property))}


@pytest.mark.parametrize('ours,theirs', [
    (publisher.NatsPublisher, 'PublisherAgentBase'),
    (subscriber.NatsSubscriber, 'SubscriberAgentBase'),
])
def test_every_agent_base_method_is_there(dragonflow, ours, theirs):
    """Each public method of Dragonflow 4.0.0's agent base classes, which
    its own drivers derive from, exists on ours.
    """
    base = getattr(dragonflow, theirs)
    missing = sorted(_public_methods(base) - _public_methods(ours))
    assert missing == [], '%s lacks %s' % (ours.__name__, missing)


def test_classes_are_dragonflows(dragonflow):
    """With Dragonflow importable the driver derives from its classes; in
    tox -e dragonflow this must hold (not silently use the stand-ins).
    """
    from dragonflow.db import db_common
    assert api.DRAGONFLOW_PRESENT is True
    assert api.PubSubApi is dragonflow.PubSubApi
    assert api.PublisherApi is dragonflow.PublisherApi
    assert api.SubscriberApi is dragonflow.SubscriberApi
    assert api.DbUpdate is db_common.DbUpdate
    assert issubclass(driver.NatsPubSub, dragonflow.PubSubApi)
    assert issubclass(publisher.NatsPublisher, dragonflow.PublisherApi)
    assert issubclass(subscriber.NatsSubscriber, dragonflow.SubscriberApi)


def test_dragonflow_env_is_not_silently_without_dragonflow():
    if not conftest.REQUIRE_DRAGONFLOW:
        pytest.skip('only under DF_NATS_REQUIRE_DRAGONFLOW=1')
    assert conftest.dragonflow_missing() is None
    assert api.DRAGONFLOW_PRESENT is True
