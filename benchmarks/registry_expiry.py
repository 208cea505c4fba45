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

"""How soon a watcher sees a publisher leave the registry, with defaults.

An embedded nats-server with JetStream; a publisher process registers
(default ``publisher_ttl`` and ``heartbeat_interval``), then is
killed with SIGKILL at a random moment of its heartbeat cycle, or closed.
A ``PublisherWatch`` in this process times the leave. Prints every run and
the medians. Run from the repository root::

    python -m benchmarks.registry_expiry [--runs 5]
"""

import argparse
import os
import queue
import random
import statistics
import time

from oslo_config import cfg

from df_nats.cmd import common
from df_nats.pubsub import process_context
from df_nats.registry import watch
from df_nats.testing import embedded_server
from df_nats.testing import worker
from df_nats.testing import worker_process

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def publisher_worker(argv):
    """The publisher process (a worker of df_nats/testing/worker.py): it
    registers, says ``ready`` with its id and closes on ``close``.
    """
    common.setup_process(argv)
    publisher = common.load_driver().get_publisher()
    publisher.initialize()
    worker.say('ready', id=publisher.publisher_id)
    worker.next_command()
    publisher.close()
    return 0


def _one_run(url, leaves, kill):
    proc = worker_process.WorkerProcess(
        'benchmarks.registry_expiry:publisher_worker', [url],
        label='publisher', paths=[ROOT])
    publisher_id = proc.expect('ready')['id']
    kind = None
    while kind != 'join':  # this run's join; earlier runs' are drained
        kind, record = leaves.get(timeout=30)
        kind = kind if record['id'] == publisher_id else None
    # A random phase of the heartbeat cycle: a kill right after a refresh
    # is the worst case, right before one the best.
    time.sleep(random.uniform(0, cfg.CONF.df_nats.heartbeat_interval) + 0.5)
    start = time.monotonic()
    if kill:
        proc.kill()
    else:
        proc.send('close')
    while True:
        kind, record = leaves.get(timeout=60)
        if kind == 'leave' and record['id'] == publisher_id:
            proc.wait(60)
            return time.monotonic() - start, record['left']


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--runs', type=int, default=5)
    args = parser.parse_args()
    with embedded_server.NatsServer(jetstream=True) as server:
        common.setup_process([server.url])
        conf = cfg.CONF.df_nats
        print('publisher_ttl = %s s, heartbeat_interval = %s s'
              % (conf.publisher_ttl, conf.heartbeat_interval))
        conn = process_context.current().connection
        conn.acquire()
        events = queue.Queue()
        watcher = watch.PublisherWatch(
            conn, on_change=lambda kind, record: events.put((kind, record)))
        watcher.start()
        results = {True: [], False: []}
        for run in range(args.runs):
            for kill in (True, False):
                took, left = _one_run(server.url, events, kill)
                results[kill].append(took)
                print('run %d: %-8s -> leave (%s) seen after %.3f s'
                      % (run + 1, 'kill -9' if kill else 'close()', left,
                         took), flush=True)
        watcher.stop()
        conn.release()
    for kill, label in ((True, 'kill -9'), (False, 'close()')):
        times = results[kill]
        print('%s -> leave seen: median %.3f s, min %.3f s, max %.3f s'
              % (label, statistics.median(times), min(times), max(times)))


if __name__ == '__main__':
    main()
