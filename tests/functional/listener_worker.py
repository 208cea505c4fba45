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

"""A neutron listener or a port-status publisher, driven by its parent.

A worker of df_nats/testing/worker.py: ``python -m df_nats.testing.worker
--world=eventlet tests.functional.listener_worker --config F listener
HOST`` loads the driver as Dragonflow does, registers the topics
neutron-server's listener registers (``listener_HOST``) plus the send-all
topic ``D``, says ``ready`` (``ready``: HOST, ``pid``) and then one message
per event its callback handles, written before the callback returns:
``handled`` (``h``: key, ``t``: topic) for a port-status update,
``send-all`` (``d``: key) for a send-all event. A ``stats`` command gets
the subscriber's counters.

``... publisher`` obeys ``stream`` (``n``, ``rate``, ``every``,
``topics``): n port-status updates (``lport``, ``update``) at ``rate`` per
second, the i-th addressed to the i-th topic in turn, as compute nodes
address the listener they picked, with a send-all event after every
``every`` updates; each is reported as ``sent`` (``sent``: key, ``t``:
topic, ``at``: CLOCK_MONOTONIC) once ``send_event`` returned; keys go on
from one stream to the next. ``exit`` ends either.
"""

import argparse
import os
import time

from df_nats.cmd import common
from df_nats.pubsub import api
from df_nats.testing import worker

say = worker.say


def _on_event(table, key, action, value, topic):
    if action == 'update' and table == 'lport':
        say('handled', h=key, t=topic)
    elif topic == api.SEND_ALL_TOPIC:
        say('send-all', d=key)
    else:
        say('other', other=[table, key, action, value, topic])


def _listener(host):
    subscriber = common.load_driver().get_subscriber()
    subscriber.initialize(_on_event)
    subscriber.register_topic('listener_%s' % host)
    subscriber.register_topic(api.SEND_ALL_TOPIC)
    subscriber.daemonize()
    say('ready', ready=host, pid=os.getpid())
    for command in worker.commands():
        if command['type'] == 'stats':
            say('stats', stats=dict(subscriber.stats))
        elif command['type'] in ('exit', 'quit'):
            break
    subscriber.close()


def _stream(publisher, first, count, rate, every, topics):
    start = time.monotonic()
    for i in range(first, first + count):
        delay = start + (i - first) / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        key = 'port-%05d' % i
        topic = topics[i % len(topics)]
        publisher.send_event(api.DbUpdate(
            'lport', key, 'update', 'ACTIVE', topic=topic))
        say('sent', sent=key, t=topic, at=time.monotonic())
        if every and (i + 1) % every == 0:
            publisher.send_event(api.DbUpdate(
                'lswitch', 'd-%05d' % i, 'set', '{}',
                topic=api.SEND_ALL_TOPIC))
            say('sent', sent_d='d-%05d' % i, at=time.monotonic())
    publisher.flush()
    say('done', done=count)


def _publisher():
    publisher = common.load_driver().get_publisher()
    publisher.initialize()
    say('ready', ready='publisher', pid=os.getpid())
    sent = 0
    for command in worker.commands():
        if command['type'] == 'stream':
            _stream(publisher, sent, command['n'], command['rate'],
                    command['every'], command['topics'])
            sent += command['n']
        elif command['type'] in ('exit', 'quit'):
            break
    publisher.close()


def main(argv):
    parser = argparse.ArgumentParser(prog='listener_worker')
    parser.add_argument('--config', required=True)
    parser.add_argument('role', choices=('listener', 'publisher'))
    parser.add_argument('host', nargs='?')
    args = parser.parse_args(argv)
    common.setup_process(config_files=[args.config])
    if args.role == 'listener':
        _listener(args.host)
    else:
        _publisher()
    return 0
