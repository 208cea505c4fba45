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

"""A publisher or subscriber process of ``df-nats demo``.

A worker of df_nats/testing/worker.py: ``python -m df_nats.testing.worker
--world=eventlet|native df_nats.cmd.demo_worker --role ...``, in the world
a Dragonflow service of that kind runs in. It reports to the parent with
``worker.say``.
"""

import argparse
import json
import threading
import time
import uuid

from df_nats.cmd import common
from df_nats.pubsub import api
from df_nats.testing import worker

_say = worker.say


def demo_event(seq, topic, origin='demo'):
    """A Dragonflow-sized logical port event (a JSON value of ~400 B)."""
    port_id = str(uuid.uuid5(uuid.NAMESPACE_URL, 'demo-port-%d' % seq))
    value = {
        'id': port_id, 'topic': topic, 'version': seq,
        'name': 'port-%d' % seq, 'lswitch': 'net-%d' % (seq % 7),
        'macs': ['fa:16:3e:%02x:%02x:%02x' % (seq >> 16 & 255,
                                              seq >> 8 & 255, seq & 255)],
        'ips': ['10.%d.%d.%d' % (seq >> 16 & 255, seq >> 8 & 255,
                                 seq & 255)],
        'chassis': 'compute-%d' % (seq % 5), 'enabled': True,
        'device_owner': 'compute:nova', 'security_groups': ['default'],
        'binding_vnic_type': 'normal', 'seq': seq, 'origin': origin,
    }
    return api.DbUpdate('lport', port_id, 'create',
                        json.dumps(value), topic=topic)


def _publish(args):
    publisher = common.load_driver().get_publisher()
    publisher.initialize()
    _say('ready')
    topics = args.topics
    start = time.monotonic()
    for seq in range(args.events):
        topic = topics[seq % len(topics)]
        publisher.send_event(demo_event(seq, topic, args.origin))
    publisher.flush(args.timeout)
    elapsed = time.monotonic() - start
    publisher.close()
    _say('summary', sent=args.events, seconds=elapsed,
         rate=args.events / elapsed if elapsed else 0.0)


class _Receiver:
    """The Dragonflow callback of a demo subscriber: checks and counts."""

    def __init__(self, args):
        self.args = args
        self.received = 0
        self.wrong_topic = 0
        self.out_of_order = 0
        self.syncs = 0
        self.last_seq = {}
        self.first = self.last = None
        self.done = threading.Event()

    def __call__(self, table, key, action, value, topic):
        now = time.monotonic()
        if action == 'sync':
            self.syncs += 1
            return
        self.first = self.first or now
        self.last = now
        self.received += 1
        seq = json.loads(value)['seq']
        if topic not in self.args.topics:
            self.wrong_topic += 1
        if seq <= self.last_seq.get(topic, -1):
            self.out_of_order += 1
        self.last_seq[topic] = seq
        if self.received <= self.args.show:
            _say('event', table=table, action=action, topic=topic,
                 key=key, seq=seq)
        if self.received >= self.args.expect:
            self.done.set()


def _subscribe(args):
    receiver = _Receiver(args)
    subscriber = common.load_driver().get_subscriber()
    subscriber.initialize(receiver)
    for topic in args.topics:
        subscriber.register_topic(topic)
    subscriber.daemonize()
    _say('ready')
    receiver.done.wait(args.timeout)
    subscriber.close()
    span = (receiver.last - receiver.first) if receiver.first else 0.0
    _say('summary', received=receiver.received, expected=args.expect,
         wrong_topic=receiver.wrong_topic, out_of_order=receiver.out_of_order,
         malformed=subscriber.stats['malformed'], syncs=receiver.syncs,
         rate=receiver.received / span if span else 0.0)


def main(argv):
    parser = argparse.ArgumentParser(prog='demo_worker')
    parser.add_argument('--role', choices=('publisher', 'subscriber'))
    parser.add_argument('--servers', action='append')
    parser.add_argument('--config-file', action='append')
    parser.add_argument('--topics', type=lambda s: s.split(','))
    parser.add_argument('--events', type=int, default=0)
    parser.add_argument('--expect', type=int, default=0)
    parser.add_argument('--show', type=int, default=0)
    parser.add_argument('--origin', default='demo')
    parser.add_argument('--timeout', type=float, default=60.0)
    args = parser.parse_args(argv)
    common.setup_process(servers=args.servers, config_files=args.config_file)
    if args.role == 'publisher':
        _publish(args)
    else:
        _subscribe(args)
    return 0
