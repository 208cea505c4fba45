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

"""Warn when a Dragonflow process subscribes through df-nats but publishes
through another driver.

Dragonflow 4.0.0's neutron-server publishes through ``[df]
pub_sub_multiproc_driver`` when ``[df] pub_sub_use_multiproc`` is true (its
default): a ZeroMQ socket that only df-publisher-service relays. Its
``NbApi`` asks for the publisher's driver first, then for the subscriber's
(``pub_sub_driver``). So when df-nats hands out a subscriber in a process
that never got a df-nats publisher, while Dragonflow's own options say
that process loads df-nats for ``pub_sub_driver`` but something else for
``pub_sub_multiproc_driver``, its events do not go to NATS directly.
"""

from oslo_config import cfg

from df_nats.loop import log

LOG = log.get_logger(__name__)

# How Dragonflow may name this driver: the entry point, or the class path
# (its load_driver accepts both).
DRIVER_NAMES = ('nats', 'df_nats.driver.NatsPubSub')

_publisher_handed_out = False
_warned = False


def publisher_handed_out():
    """Note that this process got a df-nats publisher."""
    global _publisher_handed_out
    _publisher_handed_out = True


def _dragonflow_options(conf):
    """``[df]`` pub/sub options, or None when Dragonflow registered none
    (Dragonflow absent, or master, which has no multiproc options).
    """
    try:
        df = conf.df
        return (df.pub_sub_driver, df.pub_sub_use_multiproc,
                df.pub_sub_multiproc_driver)
    except cfg.Error:
        return None


def other_publisher_driver(conf=None):
    """The name of the driver this process publishes through, if it is not
    df-nats although it subscribes through df-nats; None otherwise.
    """
    if _publisher_handed_out:
        return None
    options = _dragonflow_options(conf or cfg.CONF)
    if options is None:
        return None
    driver, use_multiproc, multiproc_driver = options
    if (driver in DRIVER_NAMES and use_multiproc
            and multiproc_driver not in DRIVER_NAMES):
        return multiproc_driver
    return None


def subscriber_handed_out(conf=None):
    """Check the publish path when a df-nats subscriber is handed out;
    warn once per process.
    """
    global _warned
    other = other_publisher_driver(conf)
    if other is None or _warned:
        return
    _warned = True
    LOG.warning('df-nats: this process subscribes through NATS but'
                ' publishes through [df] pub_sub_multiproc_driver = %s'
                ' because [df] pub_sub_use_multiproc = True (Dragonflow'
                ' 4.0.0 neutron-server): its events reach NATS only if'
                ' df-publisher-service relays them. Set [df]'
                ' pub_sub_multiproc_driver = nats (every worker then'
                ' publishes to NATS itself, no df-publisher-service) or'
                ' [df] pub_sub_use_multiproc = False.', other)
