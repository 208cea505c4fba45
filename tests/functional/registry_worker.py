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

"""A publisher process for the registry tests, driven over stdin/stdout.

``python -m tests.functional.registry_worker --world=eventlet --config F``
loads the driver as Dragonflow does, initializes a publisher (and, with
``--subscribe``, a subscriber on the send-all topic), prints one JSON line
``{"ready": <publisher id>, "pid": ...}`` and obeys stdin: ``close`` closes
the publisher, ``send N`` publishes N events, ``exit`` ends. With ``--fork
N`` it first forks N workers that each do all of this, as neutron-server
forks its API workers before they create their publishers.
"""

import sys

if __name__ == '__main__' and '--world=eventlet' in sys.argv:
    import eventlet
    eventlet.monkey_patch()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

from df_nats import bridge  # noqa: E402
from df_nats.cmd import common  # noqa: E402
from df_nats import pubsub_api  # noqa: E402

_out_lock = threading.Lock()


def _say(**fields):
    line = json.dumps(fields, sort_keys=True) + '\n'
    with _out_lock:
        # One write per line: forked workers share this pipe.
        os.write(sys.stdout.fileno(), line.encode())


def stdin_commands():
    """The commands read from stdin, one list of words per line."""
    # A plain stdin read would block eventlet's whole hub, and with it the
    # subscriber's deliveries: wait for input the green way first.
    while True:
        if bridge.is_green():
            from eventlet import hubs
            hubs.trampoline(sys.stdin.fileno(), read=True)
        line = sys.stdin.readline()
        if not line:
            return
        yield line.split()


def _on_event(table, key, action, value, topic):
    _say(event=[table, key, action, value])


def _serve(args):
    driver = common.load_driver()
    subscriber = None
    if args.subscribe:
        subscriber = common.load_driver().get_subscriber()
        subscriber.initialize(_on_event)
        subscriber.register_topic(pubsub_api.SEND_ALL_TOPIC)
        subscriber.daemonize()
    publisher = driver.get_publisher()
    try:
        publisher.initialize()
    except Exception as exc:
        _say(error='%s: %s' % (type(exc).__name__, exc))
        return 3
    _say(ready=publisher.publisher_id, pid=os.getpid())
    for command in stdin_commands():
        if not command or command[0] == 'exit':
            break
        if command[0] == 'close':
            publisher.close()
            _say(closed=publisher.publisher_id, at=time.time())
        elif command[0] == 'send':
            for seq in range(int(command[1])):
                publisher.send_event(pubsub_api.DbUpdate(
                    'lport', 'key-%d' % seq, 'create', '{}', topic='D'))
            publisher.flush()
            _say(sent=int(command[1]))
    if subscriber is not None:
        subscriber.close()
    return 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--world', choices=('eventlet', 'native'))
    parser.add_argument('--config', required=True)
    parser.add_argument('--fork', type=int, default=0)
    parser.add_argument('--subscribe', action='store_true')
    args = parser.parse_args()
    common.setup_process(config_files=[args.config])
    if bridge.is_green() != (args.world == 'eventlet'):
        raise AssertionError('not in the %s world' % args.world)
    if not args.fork:
        return _serve(args)
    children = []
    for _ in range(args.fork):
        pid = os.fork()
        if pid == 0:
            if bridge.is_green():
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


if __name__ == '__main__':
    sys.exit(main())
