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

"""End to end, send_event -> NATS -> callback, against plain nats-py.

Three rows, each run in fresh processes, interleaved, medians:

* *df-nats eventlet* and *df-nats native*: the driver loaded through
  stevedore in an eventlet-patched and in a native-thread process;
* *plain nats-py*: what a user would write by hand: asyncio, one msgpack
  map per message, no headers, a connection for publishing and one for
  subscribing. It carries none of df-nats' costs: the baseline.

Phases: ``in`` (one process publishing and subscribing), ``cross`` (a
publisher process and a subscriber process; the rate runs from the first
send to the last callback, on the machine's one monotonic clock) and
``latency`` (send to callback at a steady rate, one process). Run::

    python benchmarks/e2e_rate.py --events 30000 --runs 5
    python benchmarks/e2e_rate.py --phases latency --rate 1000
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

PLAIN = 'plain nats-py'
EVENTLET = 'df-nats eventlet'
NATIVE = 'df-nats native'
KINDS = (PLAIN, EVENTLET, NATIVE)
SUBJECT = 'dragonflow.topic.D'


def _events(n):
    return [demo_worker.demo_event(i, 'D') for i in range(n)]


# -- df-nats ------------------------------------------------------------------


def _df_subscriber(url, on_event):
    common.setup_process(servers=[url])
    sub = common.load_driver().get_subscriber()
    sub.initialize(on_event)
    sub.register_topic('D')
    sub.daemonize()
    return sub


def _df_publisher():
    pub = common.load_driver().get_publisher()
    pub.initialize()
    return pub


def df_in_process(url, n):
    events = _events(n)
    done = threading.Event()
    count = [0]

    def callback(table, key, action, value, topic):
        count[0] += 1
        if count[0] == n:
            done.set()
    sub = _df_subscriber(url, callback)
    pub = _df_publisher()
    send = pub.send_event
    cpu = time.process_time()
    start = time.monotonic()
    for update in events:
        send(update)
    done.wait(120)
    elapsed = time.monotonic() - start
    cpu = time.process_time() - cpu
    pub.close()
    sub.close()
    return count[0], elapsed, cpu


def df_latency(url, n, rate):
    events = _events(n)
    index = {e.key: i for i, e in enumerate(events)}
    sent = [0.0] * n
    took = []
    done = threading.Event()

    def callback(table, key, action, value, topic):
        took.append(time.monotonic() - sent[index[key]])
        if len(took) == n:
            done.set()
    sub = _df_subscriber(url, callback)
    pub = _df_publisher()
    start = time.monotonic()
    for i, update in enumerate(events):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # green under eventlet
        sent[i] = time.monotonic()
        pub.send_event(update)
    done.wait(60)
    pub.close()
    sub.close()
    return took


def df_cross_sub(url, n):
    done = threading.Event()
    count = [0]
    last = [0.0]

    def callback(table, key, action, value, topic):
        count[0] += 1
        if count[0] == n:
            last[0] = time.monotonic()
            done.set()
    sub = _df_subscriber(url, callback)
    print('ready', flush=True)
    done.wait(120)
    print(count[0], last[0], flush=True)
    sub.close()


def df_cross_pub(url, n):
    events = _events(n)
    common.setup_process(servers=[url])
    pub = _df_publisher()
    print('ready', flush=True)
    sys.stdin.readline()
    send = pub.send_event
    start = time.monotonic()
    for update in events:
        send(update)
    pub.flush(60)
    print(start, flush=True)
    pub.close()


# -- plain nats-py ------------------------------------------------------------


async def _plain_subscribe(url, on_data):
    import nats
    nc = await nats.connect(url)

    async def handler(msg):
        on_data(codec.unpack_event(msg.data))
    await nc.subscribe(SUBJECT, cb=handler)
    await nc.flush()
    return nc


def plain_in_process(url, n):
    events = _events(n)

    async def main():
        import nats
        done = asyncio.Event()
        count = [0]

        def on_event(event):
            count[0] += 1
            if count[0] == n:
                done.set()
        sub_nc = await _plain_subscribe(url, on_event)
        pub_nc = await nats.connect(url)
        cpu = time.process_time()
        start = time.monotonic()
        for update in events:
            await pub_nc.publish(SUBJECT, codec.pack_event(update.to_dict()))
        await asyncio.wait_for(done.wait(), 120)
        elapsed = time.monotonic() - start
        cpu = time.process_time() - cpu
        await pub_nc.close()
        await sub_nc.close()
        return count[0], elapsed, cpu
    return asyncio.run(main())


def plain_latency(url, n, rate):
    events = _events(n)

    async def main():
        import nats
        index = {e.key: i for i, e in enumerate(events)}
        sent = [0.0] * n
        took = []
        done = asyncio.Event()

        def on_event(event):
            took.append(time.monotonic() - sent[index[event['key']]])
            if len(took) == n:
                done.set()
        sub_nc = await _plain_subscribe(url, on_event)
        pub_nc = await nats.connect(url)
        start = time.monotonic()
        for i, update in enumerate(events):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            sent[i] = time.monotonic()
            await pub_nc.publish(SUBJECT, codec.pack_event(update.to_dict()))
        await asyncio.wait_for(done.wait(), 60)
        await pub_nc.close()
        await sub_nc.close()
        return took
    return asyncio.run(main())


def plain_cross_sub(url, n):
    async def main():
        done = asyncio.Event()
        count = [0]
        last = [0.0]

        def on_event(event):
            count[0] += 1
            if count[0] == n:
                last[0] = time.monotonic()
                done.set()
        nc = await _plain_subscribe(url, on_event)
        print('ready', flush=True)
        try:
            await asyncio.wait_for(done.wait(), 120)
        except asyncio.TimeoutError:
            pass
        print(count[0], last[0], flush=True)
        await nc.close()
    asyncio.run(main())


def plain_cross_pub(url, n):
    events = _events(n)

    async def main():
        import nats
        nc = await nats.connect(url)
        print('ready', flush=True)
        await asyncio.get_running_loop().run_in_executor(
            None, sys.stdin.readline)
        start = time.monotonic()
        for update in events:
            await nc.publish(SUBJECT, codec.pack_event(update.to_dict()))
        await nc.flush(60)
        print(start, flush=True)
        await nc.close()
    asyncio.run(main())


# -- the parent ---------------------------------------------------------------


def _cmd(kind, role, url, args):
    world = '--world=eventlet' if kind == EVENTLET else '--world=native'
    return [sys.executable, __file__, world, '--child', role, '--kind', kind,
            '--url', url, '--events', str(args.events), '--rate',
            str(args.rate), '--latency-events', str(args.latency_events)]


def _in_process(kind, url, args):
    out = subprocess.run(_cmd(kind, 'in', url, args), capture_output=True,
                         text=True, check=True)
    received, elapsed, cpu = out.stdout.split()
    assert int(received) == args.events, out.stderr[-2000:]
    return args.events / float(elapsed), float(cpu) / args.events * 1e6


def _cross_process(kind, url, args):
    sub = subprocess.Popen(_cmd(kind, 'sub', url, args),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    pub = subprocess.Popen(_cmd(kind, 'pub', url, args),
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        assert sub.stdout.readline().strip() == 'ready', sub.stderr.read()
        assert pub.stdout.readline().strip() == 'ready', pub.stderr.read()
        pub.stdin.write('go\n')
        pub.stdin.flush()
        start = float(pub.stdout.readline())
        received, last = sub.stdout.readline().split()
        assert int(received) == args.events, (
            received, sub.stderr.read()[-2000:])
        return args.events / (float(last) - start)
    finally:
        for proc in (pub, sub):
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


def _latency(kind, url, args):
    out = subprocess.run(_cmd(kind, 'latency', url, args),
                         capture_output=True, text=True, check=True)
    p50, p99, received = out.stdout.split()
    assert int(received) == args.latency_events, out.stderr[-2000:]
    return float(p50), float(p99)


def _child(args):
    plain = args.kind == PLAIN
    if args.child == 'in':
        fn = plain_in_process if plain else df_in_process
        print(*fn(args.url, args.events))
    elif args.child == 'sub':
        (plain_cross_sub if plain else df_cross_sub)(args.url, args.events)
    elif args.child == 'pub':
        (plain_cross_pub if plain else df_cross_pub)(args.url, args.events)
    elif args.child == 'latency':
        fn = plain_latency if plain else df_latency
        took = fn(args.url, args.latency_events, args.rate)
        # The first tenth to arrive is the warm-up: left out.
        warm = took[len(took) // 10:] or took
        cuts = statistics.quantiles(warm, n=100)
        print('%.4f %.4f %d' % (cuts[49] * 1e3, cuts[98] * 1e3, len(took)))


def _report(title, figures, unit, fmt, as_difference=False):
    """Medians and their ratio (rates, CPU) or difference (latency)."""
    base = statistics.median(figures[PLAIN])
    print(title)
    for kind in KINDS:
        median = statistics.median(figures[kind])
        if as_difference:
            what = '%+.2f ms vs plain' % (median - base)
        else:
            what = '%.2fx plain' % (median / base)
        print('  %-18s median %s %s  (%s)  runs: %s' % (
            kind, fmt % median, unit, what,
            ', '.join(fmt % r for r in figures[kind])))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--child')
    parser.add_argument('--kind')
    parser.add_argument('--world')
    parser.add_argument('--url')
    parser.add_argument('--events', type=int, default=30000)
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--rate', type=float, default=1000.0)
    parser.add_argument('--latency-events', type=int, default=3000)
    parser.add_argument('--phases', default='in,cross,latency',
                        help='comma-separated: in, cross, latency')
    args = parser.parse_args()
    if args.child:
        return _child(args)
    from df_nats import embedded_server
    phases = args.phases.split(',')
    rates = {p: {k: [] for k in KINDS} for p in ('in', 'cross')}
    cpus = {k: [] for k in KINDS}
    p50s, p99s = ({k: [] for k in KINDS} for _ in range(2))
    # JetStream on, as in production: the publisher registry works.
    with embedded_server.NatsServer(jetstream=True) as server:
        for _ in range(args.runs):   # interleaved: noise hits all alike
            for kind in KINDS:
                if 'in' in phases:
                    rate, cpu = _in_process(kind, server.url, args)
                    rates['in'][kind].append(rate)
                    cpus[kind].append(cpu)
                if 'cross' in phases:
                    rates['cross'][kind].append(
                        _cross_process(kind, server.url, args))
                if 'latency' in phases:
                    p50, p99 = _latency(kind, server.url, args)
                    p50s[kind].append(p50)
                    p99s[kind].append(p99)
    size = len(codec.pack_update(_events(1)[0]))
    if 'in' in phases:
        _report('%d events of %d bytes, one process publishing and'
                ' subscribing, %d runs' % (args.events, size, args.runs),
                rates['in'], 'events/s', '%.0f')
        _report('CPU time of that process per event', cpus, 'us', '%.1f')
    if 'cross' in phases:
        _report('%d events of %d bytes, publisher and subscriber in two'
                ' processes, %d runs' % (args.events, size, args.runs),
                rates['cross'], 'events/s', '%.0f')
    if 'latency' in phases:
        _report('latency, send to callback, %d events at %.0f/s, p50'
                % (args.latency_events, args.rate), p50s, 'ms', '%.3f',
                as_difference=True)
        _report('latency p99', p99s, 'ms', '%.3f', as_difference=True)


if __name__ == '__main__':
    main()
