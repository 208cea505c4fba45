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

``python -m tests.functional.stats_worker --world=eventlet|native URL
publisher|subscriber TOPIC,...``: the driver loaded through stevedore, as
Dragonflow loads it; a publisher sends small events at a steady pace on
its topics, a subscriber receives its topics. Each prints a JSON line
``{"ready": PID}`` and runs until stdin closes (the test's end), so that
its counters keep growing while the test looks at them; then it prints
``{"summary": PID, "published": N, "received": N}``. ``--fork``: a
subscriber forks once running, and the child runs on too.
"""

import sys

if __name__ == '__main__' and '--world=eventlet' in sys.argv:
    import eventlet
    eventlet.monkey_patch()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

from df_nats import bridge  # noqa: E402
from df_nats.cmd import common  # noqa: E402
from df_nats import process_context  # noqa: E402
from df_nats import pubsub_api  # noqa: E402

# Events per second of the publisher: slow enough for a shared machine,
# fast enough that counters grow between two looks.
RATE = 200


class _StdinClosed:
    """Set by a native thread when stdin closes; polled, never waited on.

    A green Event must not be set from outside the hub's thread.
    """

    def __init__(self):
        self.closed = False
        bridge._original('_thread').start_new_thread(self._read, ())

    def _read(self):
        sys.stdin.read()
        self.closed = True

    def is_set(self):
        return self.closed


def _say(**fields):
    sys.stdout.write(json.dumps(fields) + '\n')
    sys.stdout.flush()


def _summary(received=0):
    _say(summary=os.getpid(), received=received,
         published=process_context.current().connection.stats[
             'published'])


def _publish(args):
    topics = args.topics
    publisher = common.load_driver().get_publisher()
    publisher.initialize()
    _say(ready=os.getpid())
    stop = _StdinClosed()
    seq = 0
    start = time.monotonic()
    while not stop.is_set():
        topic = topics[seq % len(topics)]
        value = json.dumps({'seq': seq, 'name': 'port-%d' % seq})
        publisher.send_event(pubsub_api.DbUpdate(
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
    _say(ready=os.getpid())
    stop = _StdinClosed()
    while not stop.is_set():
        time.sleep(0.1)
    received = subscriber.stats['received']
    subscriber.close()
    _summary(received)
    if child:
        os._exit(0)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--world', choices=('eventlet', 'native'))
    parser.add_argument('url')
    parser.add_argument('role', choices=('publisher', 'subscriber'))
    parser.add_argument('topics', type=lambda text: text.split(','))
    parser.add_argument('--config-file', action='append')
    parser.add_argument('--fork', action='store_true')
    args = parser.parse_args()
    common.setup_process(servers=[args.url], config_files=args.config_file)
    if args.role == 'publisher':
        _publish(args)
    else:
        _subscribe(args)


if __name__ == '__main__':
    main()
