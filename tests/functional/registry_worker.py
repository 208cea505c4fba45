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

"""A publisher process for the registry tests, driven by its parent.

A worker of df_nats/testing/worker.py (``python -m df_nats.testing.worker
--world=eventlet tests.functional.registry_worker --config F``): it loads
the driver as Dragonflow does, initializes a publisher (and, with
``--subscribe``, a subscriber on the send-all topic), says ``ready``
(``ready``: the publisher id, ``pid``) and obeys its parent's commands:
``close`` closes the publisher, ``send`` (``n``) publishes n events,
``exit`` ends. With ``--fork N`` it first forks N workers that each do all
of this, as neutron-server forks its API workers before they create their
publishers.
"""

import argparse
import os
import time

from df_nats.cmd import common
from df_nats.loop import natives
from df_nats.pubsub import api
from df_nats.testing import worker


def _on_event(table, key, action, value, topic):
    worker.say('event', event=[table, key, action, value])


def _serve(args):
    driver = common.load_driver()
    subscriber = None
    if args.subscribe:
        subscriber = common.load_driver().get_subscriber()
        subscriber.initialize(_on_event)
        subscriber.register_topic(api.SEND_ALL_TOPIC)
        subscriber.daemonize()
    publisher = driver.get_publisher()
    try:
        publisher.initialize()
    except Exception as exc:
        worker.say('error', reason='%s: %s' % (type(exc).__name__, exc))
        return 3
    worker.say('ready', ready=publisher.publisher_id, pid=os.getpid())
    for command in worker.commands():
        if command['type'] in ('exit', 'quit'):
            break
        if command['type'] == 'close':
            publisher.close()
            worker.say('closed', closed=publisher.publisher_id,
                       at=time.time())
        elif command['type'] == 'send':
            for seq in range(command['n']):
                publisher.send_event(api.DbUpdate(
                    'lport', 'key-%d' % seq, 'create', '{}', topic='D'))
            publisher.flush()
            worker.say('sent', sent=command['n'])
    if subscriber is not None:
        subscriber.close()
    return 0


def main(argv):
    parser = argparse.ArgumentParser(prog='registry_worker')
    parser.add_argument('--config', required=True)
    parser.add_argument('--fork', type=int, default=0)
    parser.add_argument('--subscribe', action='store_true')
    args = parser.parse_args(argv)
    common.setup_process(config_files=[args.config])
    if not args.fork:
        return _serve(args)
    children = []
    for _ in range(args.fork):
        pid = os.fork()
        if pid == 0:
            if natives.is_green():
                # As oslo.service does in its workers: the parent's epoll
                # hub is shared with every child until it is replaced.
                import eventlet.hubs
                eventlet.hubs.use_hub()
            code = 1
            try:
                code = _serve(args)
            finally:
                os._exit(code)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
    return 0
