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

"""A publisher or subscriber process of the bench.

A worker of df_nats/testing/worker.py: ``python -m df_nats.testing.worker
--world=eventlet|native benchmarks.bench_worker --role pub|sub|local
--transport NAME --endpoint ADDR``; ``local`` both publishes and
subscribes, in one process. It takes the parent's commands and answers
with the harness's JSON lines; a subscriber also reports its delivery
count whenever it changed (at most ten times a second).

Times are ``time.monotonic()``, one clock for every process of the
machine, so the parent compares a publisher's send times with a
subscriber's receive times.
"""

import argparse
import asyncio
import os
import resource
import sys
import time

from benchmarks import bench_transports as transports
from df_nats.testing import worker

# Distinct events cycled through by every phase; the latency phase sends at
# most this many, so that each of its events has a key of its own.
PAYLOADS = 5000
_REPORT_INTERVAL = 0.1
say = worker.say


def raise_fd_limit():
    """Let this process hold as many sockets as the hard limit allows.

    A fan-out subscriber process holds a hundred connections or more.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # An unlimited hard limit still stops at the kernel's nr_open.
    want = 65536 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            pass  # left as it is: fan-out may then fail, and says so


def rss_bytes():
    """Resident set size of this process."""
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) * 1024
    return 0


# -- publisher ----------------------------------------------------------------


def _burst(pub, events, n):
    send = pub.send
    size = len(events)
    start = time.monotonic()
    for i in range(n):
        send(events[i % size])
    pub.flush()
    return start, time.monotonic()


async def _aburst(pub, events, n):
    send = pub.send
    size = len(events)
    start = time.monotonic()
    for i in range(n):
        await send(events[i % size])
    await pub.flush()
    return start, time.monotonic()


def _send_burst(pub, events, n):
    """(start, end) of ``n`` events sent at full speed and flushed."""
    if pub.is_async:
        return pub.run(_aburst(pub, events, n))
    return _burst(pub, events, n)


def _paced(pub, events, n, rate):
    times = []
    start = time.monotonic()
    for i in range(n):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # green under eventlet
        times.append(time.monotonic())
        pub.send(events[i])
    pub.flush()
    return times


async def _apaced(pub, events, n, rate):
    times = []
    start = time.monotonic()
    for i in range(n):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        times.append(time.monotonic())
        await pub.send(events[i])
    await pub.flush()
    return times


def publisher(args):
    pub = transports.PUBLISHERS[args.transport](args.endpoint)
    events = pub.prepare(transports.make_events(PAYLOADS))
    say('ready', rss=rss_bytes())
    for cmd in worker.commands():
        if cmd['type'] == 'burst':
            start, end = _send_burst(pub, events, cmd['n'])
            say('sent', start=start, end=end)
        elif cmd['type'] == 'paced':
            n = min(cmd['n'], len(events))
            if pub.is_async:
                times = pub.run(_apaced(pub, events, n, cmd['rate']))
            else:
                times = _paced(pub, events, n, cmd['rate'])
            say('sent', start=times[0], end=time.monotonic(), times=times)
        elif cmd['type'] == 'quit':
            pub.close()
            say('bye')
            return


# -- subscriber ---------------------------------------------------------------


class Recorder:
    """The Dragonflow callback of every connection: counts and times.

    Each connection's events arrive on one thread or greenthread, so a
    counter per connection needs no lock.
    """

    def __init__(self):
        self.keys = transports.key_index(PAYLOADS)
        self.counts = []
        self.last = 0.0
        self.latency = None  # receive time by seq, connection 0 only

    def add_conn(self):
        self.counts.append(0)
        return len(self.counts) - 1

    def reset(self, record):
        self.counts = [0] * len(self.counts)
        self.last = 0.0
        self.latency = {} if record else None

    def __call__(self, conn, table, key, action, value, topic):
        now = time.monotonic()
        self.counts[conn] += 1
        self.last = now
        if self.latency is not None and conn == 0:
            self.latency[self.keys[key]] = now


def _open(sub, recorder, conns):
    """Subscribe on connections until there are ``conns``; say so."""
    while len(recorder.counts) < conns:
        sub.add(recorder.add_conn())
    say('opened', conns=len(recorder.counts), rss=rss_bytes())


def subscriber(args):
    recorder = Recorder()
    sub = transports.SUBSCRIBERS[args.transport](args.endpoint, recorder)
    say('ready', rss=rss_bytes())
    reported = None
    while True:
        try:
            cmd = worker.next_command(_REPORT_INTERVAL)
        except EOFError:
            return
        total = sum(recorder.counts)
        if (total, recorder.last) != reported:
            reported = (total, recorder.last)
            say('count', count=total, last=recorder.last)
        if cmd is None:
            continue
        if cmd['type'] == 'open':
            _open(sub, recorder, cmd['conns'])
        elif cmd['type'] == 'reset':
            recorder.reset(cmd.get('record', False))
            reported = (0, 0.0)
            say('reset')
        elif cmd['type'] == 'report':
            latency = recorder.latency or {}
            say('report', rss=rss_bytes(), counts=recorder.counts,
                latency=[latency.get(i) for i in range(cmd.get('n', 0))])
        elif cmd['type'] == 'quit':
            say('bye')
            return


# -- publisher and subscriber in one process ---------------------------------


def _wait_for(recorder, n, idle):
    """Wait until ``n`` deliveries, or none came for ``idle`` seconds."""
    seen, changed = -1, time.monotonic()
    while True:
        total = sum(recorder.counts)
        if total >= n:
            return total
        now = time.monotonic()
        if total != seen:
            seen, changed = total, now
        elif now - changed > idle:
            return total
        time.sleep(0.005)  # green under eventlet


def local(args):
    """Publish to, and receive on, subscriptions of this same process.

    df-nats: one driver, its publisher and subscriber sharing the
    process's connection; nats-py: one asyncio loop, a connection for each
    side. ``burst`` answers when every event was delivered (or none came
    for ``idle`` seconds).
    """
    recorder = Recorder()
    pub = transports.PUBLISHERS[args.transport](args.endpoint)
    sub = transports.SUBSCRIBERS[args.transport](args.endpoint, recorder,
                                                 publisher=pub)
    events = pub.prepare(transports.make_events(PAYLOADS))
    say('ready', rss=rss_bytes())
    for cmd in worker.commands():
        if cmd['type'] == 'open':
            _open(sub, recorder, cmd['conns'])
        elif cmd['type'] == 'burst':
            recorder.reset(False)
            n = cmd['n']
            # CPU time of every thread, finer than /proc's clock ticks.
            cpu = time.process_time()
            start, end = _send_burst(pub, events, n)
            total = _wait_for(recorder, n * len(recorder.counts),
                              cmd['idle'])
            say('sent', start=start, end=end, count=total,
                last=recorder.last, cpu=time.process_time() - cpu)
        elif cmd['type'] == 'quit':
            pub.close()
            say('bye')
            return


def main(argv):
    parser = argparse.ArgumentParser(prog='bench_worker')
    parser.add_argument('--role', choices=('pub', 'sub', 'local'),
                        required=True)
    parser.add_argument('--transport', choices=sorted(transports.PUBLISHERS),
                        required=True)
    parser.add_argument('--endpoint', required=True)
    args = parser.parse_args(argv)
    raise_fd_limit()
    try:
        {'pub': publisher, 'sub': subscriber, 'local': local}[args.role](args)
    except transports.Unavailable as exc:
        say('unavailable', reason=str(exc))
    sys.stdout.flush()
    os._exit(0)  # no lingering threads or atexit flushes
