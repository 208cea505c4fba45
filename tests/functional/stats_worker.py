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

"""A long-running process of ``df-nats demo``'s shape, for ``df-nats stats``.

A worker of df_nats/testing/worker.py (``python -m df_nats.testing.worker
--world=eventlet|native tests.functional.stats_worker URL
publisher|subscriber TOPIC,...``): the driver loaded through stevedore, as
Dragonflow loads it; a publisher sends small events at a steady pace on
its topics, a subscriber receives its topics. Each says ``ready``
(``ready``: its pid) and runs until its parent closes stdin or says
``quit`` (the test's end), so that its counters keep growing while the
test looks at them; then it says ``summary`` (``summary``: its pid,
``published``, ``received``). ``--fork``: a subscriber forks once running,
and the child runs on too.
"""

import argparse
import json
import os
import time

from df_nats.cmd import common
from df_nats.pubsub import api
from df_nats.pubsub import process_context
from df_nats.testing import worker

# Events per second of the publisher: slow enough for a shared machine,
# fast enough that counters grow between two looks.
RATE = 200


def _stopped():
    """True once the parent said ``quit`` or closed stdin (no waiting)."""
    try:
        return worker.next_command(0) is not None
    except EOFError:
        return True


def _summary(received=0):
    worker.say('summary', summary=os.getpid(), received=received,
               published=process_context.current().connection.stats[
                   'published'])


def _publish(args):
    topics = args.topics
    publisher = common.load_driver().get_publisher()
    publisher.initialize()
    worker.say('ready', ready=os.getpid())
    seq = 0
    start = time.monotonic()
    while not _stopped():
        topic = topics[seq % len(topics)]
        value = json.dumps({'seq': seq, 'name': 'port-%d' % seq})
        publisher.send_event(api.DbUpdate(
            'lport', 'port-%d' % seq, 'create', value, topic=topic))
        seq += 1
        # Paced against the start: the rate holds whatever one send costs.
        delay = start + seq / RATE - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    publisher.flush(5.0)
    _summary()
    publisher.close()


def _subscribe(args):
    subscriber = common.load_driver().get_subscriber()
    subscriber.initialize(lambda *event: None)
    for topic in args.topics:
        subscriber.register_topic(topic)
    subscriber.daemonize()
    child = args.fork and os.fork() == 0
    if child:
        subscriber.daemonize()  # moves to the child's own connection
    worker.say('ready', ready=os.getpid())
    while not _stopped():
        time.sleep(0.1)
    received = subscriber.stats['received']
    subscriber.close()
    _summary(received)
    if child:
        os._exit(0)


def main(argv):
    parser = argparse.ArgumentParser(prog='stats_worker')
    parser.add_argument('url')
    parser.add_argument('role', choices=('publisher', 'subscriber'))
    parser.add_argument('topics', type=lambda text: text.split(','))
    parser.add_argument('--config-file', action='append')
    parser.add_argument('--fork', action='store_true')
    args = parser.parse_args(argv)
    common.setup_process(servers=[args.url], config_files=args.config_file)
    if args.role == 'publisher':
        _publish(args)
    else:
        _subscribe(args)
    return 0
