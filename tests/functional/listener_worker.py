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

"""A neutron listener or a port-status publisher, driven over stdin/stdout.

``python -m tests.functional.listener_worker --world=eventlet --config F
listener HOST`` loads the driver as Dragonflow does, registers the topics
neutron-server's listener registers (``listener_HOST``) plus the send-all
topic ``D``, prints ``{"ready": HOST, "pid": ...}`` and then one line per
event its callback handles, written before the callback returns:
``{"h": key, "t": topic}`` for a port-status update, ``{"d": key}`` for a
send-all event. ``stats`` on stdin prints the subscriber's counters.

``... publisher`` obeys ``stream N RATE EVERY TOPIC...``: N port-status
updates (``lport``, ``update``) at RATE per second, the i-th addressed to
the i-th topic in turn, as compute nodes address the listener they picked,
with a send-all event after every EVERY updates; each is reported as
``{"sent": key, "t": topic, "at": <CLOCK_MONOTONIC>}`` once ``send_event``
returned; keys go on from one stream to the next. ``exit`` ends either.
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
from df_nats import pubsub_api  # noqa: E402
from tests.functional import registry_worker  # noqa: E402


def say(**fields):
    """Print ``fields`` as one JSON line on stdout."""
    # One unbuffered write per line: what the callback reported is in the
    # pipe even if the process is killed right after.
    os.write(sys.stdout.fileno(),
             (json.dumps(fields, sort_keys=True) + '\n').encode())


def _on_event(table, key, action, value, topic):
    if action == 'update' and table == 'lport':
        say(h=key, t=topic)
    elif topic == pubsub_api.SEND_ALL_TOPIC:
        say(d=key)
    else:
        say(other=[table, key, action, value, topic])


def _listener(host):
    subscriber = common.load_driver().get_subscriber()
    subscriber.initialize(_on_event)
    subscriber.register_topic('listener_%s' % host)
    subscriber.register_topic(pubsub_api.SEND_ALL_TOPIC)
    subscriber.daemonize()
    say(ready=host, pid=os.getpid())
    for command in registry_worker.stdin_commands():
        if command == ['stats']:
            say(stats=dict(subscriber.stats))
        elif command == ['exit']:
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
        publisher.send_event(pubsub_api.DbUpdate(
            'lport', key, 'update', 'ACTIVE', topic=topic))
        say(sent=key, t=topic, at=time.monotonic())
        if every and (i + 1) % every == 0:
            publisher.send_event(pubsub_api.DbUpdate(
                'lswitch', 'd-%05d' % i, 'set', '{}',
                topic=pubsub_api.SEND_ALL_TOPIC))
            say(sent_d='d-%05d' % i, at=time.monotonic())
    publisher.flush()
    say(done=count)


def _publisher():
    publisher = common.load_driver().get_publisher()
    publisher.initialize()
    say(ready='publisher', pid=os.getpid())
    sent = 0
    for command in registry_worker.stdin_commands():
        if command[:1] == ['stream']:
            _stream(publisher, sent, int(command[1]), float(command[2]),
                    int(command[3]), command[4:])
            sent += int(command[1])
        elif command == ['exit']:
            break
    publisher.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--world', choices=('eventlet', 'native'))
    parser.add_argument('--config', required=True)
    parser.add_argument('role', choices=('listener', 'publisher'))
    parser.add_argument('host', nargs='?')
    args = parser.parse_args()
    common.setup_process(config_files=[args.config])
    if bridge.is_green() != (args.world == 'eventlet'):
        raise AssertionError('not in the %s world' % args.world)
    if args.role == 'listener':
        _listener(args.host)
    else:
        _publisher()
    return 0


if __name__ == '__main__':
    sys.exit(main())
