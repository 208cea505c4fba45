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

"""End-to-end rate through one process: send_event -> NATS -> callback.

df-nats in an eventlet process and in a native process, against raw
nats-py (pure asyncio) on the same embedded server with the same
Dragonflow-sized payloads, each run in a fresh subprocess; prints medians
and the ratio to raw nats-py. Run: ``python benchmarks/e2e_rate.py``.
"""

import sys

if '--world=eventlet' in sys.argv:
    import eventlet
    eventlet.monkey_patch()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

from df_nats.cmd import common  # noqa: E402
from df_nats.cmd import demo_worker  # noqa: E402
from df_nats import codec  # noqa: E402


def _events(n):
    return [demo_worker.demo_event(i, 'D') for i in range(n)]


def run_df_nats(url, n):
    common.setup_process(servers=[url])
    events = _events(n)
    done = threading.Event()
    count = [0]

    def callback(table, key, action, value, topic):
        count[0] += 1
        if count[0] == n:
            done.set()
    sub = common.load_driver().get_subscriber()
    sub.initialize(callback)
    sub.register_topic('D')
    sub.daemonize()
    pub = common.load_driver().get_publisher()
    pub.initialize()
    start = time.monotonic()
    for update in events:
        pub.send_event(update)
    done.wait(120)
    elapsed = time.monotonic() - start
    pub.close()
    sub.close()
    return count[0], elapsed


def run_raw(url, n):
    events = _events(n)

    async def main():
        import nats
        nc = await nats.connect(url)
        done = asyncio.Event()
        count = [0]

        async def handler(msg):
            codec.unpack_event(msg.data)
            count[0] += 1
            if count[0] == n:
                done.set()
        await nc.subscribe('dragonflow.topic.D', cb=handler)
        await nc.flush()
        start = time.monotonic()
        for update in events:
            await nc.publish('dragonflow.topic.D',
                             codec.pack_event(update.to_dict()),
                             headers=codec.event_headers(update.table,
                                                         update.action))
        await asyncio.wait_for(done.wait(), 120)
        elapsed = time.monotonic() - start
        await nc.close()
        return count[0], elapsed
    return asyncio.run(main())


def _child(kind, url, n):
    world = '--world=eventlet' if kind == 'df-nats eventlet' else '--world=x'
    out = subprocess.run(
        [sys.executable, __file__, world, '--child', kind, '--url', url,
         '--events', str(n)], capture_output=True, text=True, check=True)
    received, elapsed = out.stdout.split()
    assert int(received) == n, out.stderr[-2000:]
    return n / float(elapsed)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--child')
    parser.add_argument('--world')
    parser.add_argument('--url')
    parser.add_argument('--events', type=int, default=20000)
    parser.add_argument('--runs', type=int, default=3)
    args = parser.parse_args()
    if args.child:
        fn = run_raw if args.child == 'raw nats-py' else run_df_nats
        received, elapsed = fn(args.url, args.events)
        print(received, elapsed)
        return
    from df_nats import embedded_server
    kinds = ['raw nats-py', 'df-nats eventlet', 'df-nats native']
    with embedded_server.NatsServer(jetstream=False) as server:
        rates = {k: [] for k in kinds}
        for _ in range(args.runs):   # interleaved: noise hits all alike
            for kind in kinds:
                rates[kind].append(_child(kind, server.url, args.events))
    base = statistics.median(rates['raw nats-py'])
    print('%d events of %d bytes, %d runs, one process publishing and'
          ' subscribing' % (args.events, len(codec.pack_event(
              _events(1)[0].to_dict())), args.runs))
    for kind in kinds:
        median = statistics.median(rates[kind])
        print('  %-18s median %8.0f events/s  (%.2fx raw nats-py)  runs: %s'
              % (kind, median, median / base,
                 ', '.join('%.0f' % r for r in rates[kind])))


if __name__ == '__main__':
    main()
