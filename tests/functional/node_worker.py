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

"""A Dragonflow service of one role, doing what that role does, driven by
its parent.

A worker of df_nats/testing/worker.py: ``python -m df_nats.testing.worker
--world=eventlet tests.functional.node_worker --config F ROLE HOST``
loads the driver as Dragonflow does, with the configuration file F (the
role's [df_nats] section), and plays ROLE on host HOST:

``neutron-server``
    publishes the topology (``topology`` commands) and receives port
    status on its listener topic ``listener_HOST`` (the listeners' queue
    group), as Dragonflow's neutron-server does; it receives no other
    topic.
``df-local-controller``
    receives the topology (the send-all topic ``D`` and the tenant topic
    ``T``) and publishes port status (``port-status`` commands), as a
    compute node's controller does.
``combined``
    both in one process, as one host running both services with one
    [df_nats] section.

It says ``ready`` (``ready``: HOST, ``pid``), then one message per event
its callback handles: ``handled`` (``h``: key, ``t``: topic) for port
status, ``topology`` (``k``: key, ``t``: topic) for any other event,
``sync`` for a resync. Commands: ``topology`` (``n``, ``first``): n
events alternately on ``D`` and ``T``, keys ``HOST-<i>``; ``port-status``
(``n``, ``first``, ``topics``): n port-status updates (``lport``,
``update``) addressed to the listener topics in turn, keys ``HOST-p<i>``;
both answer ``sent`` once flushed. ``stats``: the connection's counters,
its server and the subscriber's counters. ``quit`` ends it.
"""

import argparse
import os

from df_nats.cmd import common
from df_nats.pubsub import api
from df_nats.pubsub import process_context
from df_nats.testing import worker

say = worker.say
TENANT_TOPIC = 'T'


def _on_event(table, key, action, value, topic):
    if action == 'sync':
        say('sync')
    elif table == 'lport' and action == 'update':
        say('handled', h=key, t=topic)
    else:
        say('topology', k=key, t=topic)


def _stats(subscriber):
    conn = process_context.current().connection
    return {'connection': dict(conn.stats),
            'server': conn.connected_url,
            'connected': conn.connected,
            'subscriber': dict(subscriber.stats) if subscriber else {}}


def main(argv):
    parser = argparse.ArgumentParser(prog='node_worker')
    parser.add_argument('--config', required=True)
    parser.add_argument('role', choices=('neutron-server',
                                         'df-local-controller', 'combined'))
    parser.add_argument('host')
    args = parser.parse_args(argv)
    common.setup_process(config_files=[args.config])
    driver = common.load_driver()
    neutron = args.role in ('neutron-server', 'combined')
    controller = args.role in ('df-local-controller', 'combined')

    publisher = driver.get_publisher()
    publisher.initialize()
    subscriber = driver.get_subscriber()
    subscriber.initialize(_on_event)
    if neutron:
        subscriber.register_topic('listener_%s' % args.host)
    if controller:
        subscriber.register_topic(api.SEND_ALL_TOPIC)
        subscriber.register_topic(TENANT_TOPIC)
    subscriber.daemonize()
    say('ready', ready=args.host, pid=os.getpid())

    for command in worker.commands():
        kind = command['type']
        if kind == 'topology' and neutron:
            first = command.get('first', 0)
            for i in range(first, first + command['n']):
                topic = (api.SEND_ALL_TOPIC, TENANT_TOPIC)[i % 2]
                publisher.send_event(api.DbUpdate(
                    'lswitch', '%s-%d' % (args.host, i), 'create', '{}',
                    topic=topic))
            say('sent', sent=publisher.flush(10))
        elif kind == 'port-status' and controller:
            first = command.get('first', 0)
            topics = command['topics']
            for i in range(first, first + command['n']):
                publisher.send_event(api.DbUpdate(
                    'lport', '%s-p%d' % (args.host, i), 'update', 'ACTIVE',
                    topic=topics[i % len(topics)]))
            say('sent', sent=publisher.flush(10))
        elif kind == 'stats':
            say('stats', stats=_stats(subscriber))
        elif kind in ('quit', 'exit'):
            break
        else:
            say('error', reason='%s cannot %s' % (args.role, kind))
    stats = _stats(subscriber)
    subscriber.close()
    publisher.close()
    say('closed', stats=stats)
    return 0
