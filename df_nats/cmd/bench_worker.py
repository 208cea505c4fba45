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

"""A publisher or subscriber process of ``df-nats bench``.

Run as ``python -m df_nats.cmd.bench_worker --world=eventlet|native
--role pub|sub|local --transport NAME --endpoint ADDR``; ``local`` both
publishes and subscribes, in one process. Under
``--world=eventlet`` it monkey-patches before anything else is imported, as
Dragonflow services do. It takes one JSON command a line on stdin and
answers with JSON lines on stdout; a subscriber also reports its delivery
count whenever it changed (at most ten times a second).

Times are ``time.monotonic()``, one clock for every process of the
machine, so the parent compares a publisher's send times with a
subscriber's receive times.
"""

import sys

if __name__ == '__main__' and '--world=eventlet' in sys.argv:
    import eventlet
    eventlet.monkey_patch()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import select  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

from df_nats.cmd import bench_transports as transports  # noqa: E402

# Distinct events cycled through by every phase; the latency phase sends at
# most this many, so that each of its events has a key of its own.
PAYLOADS = 5000
_REPORT_INTERVAL = 0.1


def say(kind, **fields):
    fields['type'] = kind
    sys.stdout.write(json.dumps(fields) + '\n')
    sys.stdout.flush()


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


class _Commands:
    """Lines from stdin without blocking the eventlet hub.

    Under eventlet the pipe is polled with the original ``select`` and the
    green ``sleep`` in between (a green select never saw it readable).
    """

    def __init__(self):
        self._fd = sys.stdin.fileno()
        self._buffer = b''
        self._green = 'eventlet' in sys.modules
        if self._green:
            from eventlet import patcher
            self._select = patcher.original('select').select
            self._read = patcher.original('os').read
        else:
            self._select = select.select
            self._read = os.read

    def _readable(self, timeout):
        if not self._green:
            return bool(self._select([self._fd], [], [], timeout)[0])
        deadline = time.monotonic() + timeout
        while not self._select([self._fd], [], [], 0)[0]:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    def next(self, timeout):
        """The next command, None on timeout; exits on end of input."""
        if b'\n' not in self._buffer:
            if not self._readable(timeout):
                return None
            chunk = self._read(self._fd, 65536)
            if not chunk:
                os._exit(0)
            self._buffer += chunk
            if b'\n' not in self._buffer:
                return None
        line, self._buffer = self._buffer.split(b'\n', 1)
        return json.loads(line)

    def each(self):
        """Commands as they come, waiting as long as it takes."""
        while True:
            cmd = self.next(1.0)
            if cmd is not None:
                yield cmd


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
    for cmd in _Commands().each():
        if cmd['cmd'] == 'burst':
            start, end = _send_burst(pub, events, cmd['n'])
            say('sent', start=start, end=end)
        elif cmd['cmd'] == 'paced':
            n = min(cmd['n'], len(events))
            if pub.is_async:
                times = pub.run(_apaced(pub, events, n, cmd['rate']))
            else:
                times = _paced(pub, events, n, cmd['rate'])
            say('sent', start=times[0], end=time.monotonic(), times=times)
        elif cmd['cmd'] == 'quit':
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
    commands = _Commands()
    reported = None
    while True:
        cmd = commands.next(_REPORT_INTERVAL)
        total = sum(recorder.counts)
        if (total, recorder.last) != reported:
            reported = (total, recorder.last)
            say('count', count=total, last=recorder.last)
        if cmd is None:
            continue
        if cmd['cmd'] == 'open':
            _open(sub, recorder, cmd['conns'])
        elif cmd['cmd'] == 'reset':
            recorder.reset(cmd.get('record', False))
            reported = (0, 0.0)
            say('reset')
        elif cmd['cmd'] == 'report':
            latency = recorder.latency or {}
            say('report', rss=rss_bytes(), counts=recorder.counts,
                latency=[latency.get(i) for i in range(cmd.get('n', 0))])
        elif cmd['cmd'] == 'quit':
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
    for cmd in _Commands().each():
        if cmd['cmd'] == 'open':
            _open(sub, recorder, cmd['conns'])
        elif cmd['cmd'] == 'burst':
            recorder.reset(False)
            n = cmd['n']
            # CPU time of every thread, finer than /proc's clock ticks.
            cpu = time.process_time()
            start, end = _send_burst(pub, events, n)
            total = _wait_for(recorder, n * len(recorder.counts),
                              cmd['idle'])
            say('sent', start=start, end=end, count=total,
                last=recorder.last, cpu=time.process_time() - cpu)
        elif cmd['cmd'] == 'quit':
            pub.close()
            say('bye')
            return


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--world', choices=('eventlet', 'native'),
                        default='native')
    parser.add_argument('--role', choices=('pub', 'sub', 'local'),
                        required=True)
    parser.add_argument('--transport', choices=sorted(transports.PUBLISHERS),
                        required=True)
    parser.add_argument('--endpoint', required=True)
    args = parser.parse_args()
    raise_fd_limit()
    try:
        {'pub': publisher, 'sub': subscriber, 'local': local}[args.role](args)
    except transports.Unavailable as exc:
        say('unavailable', reason=str(exc))
    except Exception as exc:
        say('error', reason='%s: %s' % (type(exc).__name__, exc),
            trace=traceback.format_exc())
    sys.stdout.flush()
    os._exit(0)  # no lingering threads or atexit flushes


if __name__ == '__main__':
    main()
