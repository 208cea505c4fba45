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

"""The df-nats bench: df-nats against its baselines, in one run.

Run from the repository root, with the benchmarks' requirements installed
(``pip install '.[server]' -r benchmarks/requirements.txt``)::

    python -m benchmarks.bench --runs 5 --out benchmarks/results


Each run measures, for every row in turn (interleaved, so that the noise
of a shared machine hits all rows alike), in processes started anew:

* the end-to-end rate of a burst in one process that publishes and
  subscribes (for df-nats one driver, for nats-py one asyncio loop with a
  connection for each side), and its CPU time per event;
* the publish rate of one sender, and the end-to-end rate into the
  subscriber callback of another process;
* latency from send to callback at a steady rate (1,000 events/s);
* fan-out to N subscriber connections spread over a few processes (up to
  1,000 connections over 10 processes, as 1,000 compute nodes).

Rows: df-nats in an eventlet-patched and in a native-thread process,
**plain nats-py** (msgpack body, no headers: the baseline of every
ratio), nats-py with the four headers df-nats used to send (for
comparison), redis-py with a redis-server of its own, and pyzmq PUB/SUB.
Figures are medians over ``--runs``; ratios compare medians of the same
invocation. A row whose library or server is missing is skipped with the
reason, never estimated.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from benchmarks import bench_report
from benchmarks import bench_transports
from benchmarks import bench_worker
from df_nats.testing import embedded_server
from df_nats.testing import worker_process

# The repository root: where the workers import ``benchmarks`` from.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_INSTALL = 'pip install -r benchmarks/requirements.txt'

# What a run measures for each row, in this order (``--phases``).
PHASES = ('one-process', 'across', 'latency', 'fanout')
# The row every df-nats figure is divided by.
BASELINE = 'plain nats-py'
# (label, transport, world, fan-out measured)
ROWS = (('df-nats eventlet', 'df-nats', 'eventlet', True),
        ('df-nats native', 'df-nats', 'native', True),
        (BASELINE, 'nats-py', 'native', True),
        ('nats-py 4 headers', 'nats-py-headers', 'native', False),
        ('redis', 'redis', 'native', True),
        ('zeromq', 'zmq', 'native', True))

# fanout_deliveries: events sent at fan-out size N are this divided by N
# (at least 10), so every size delivers about as many events in all.
FULL = dict(warmup=500, events=30000, latency_events=5000, rate=1000,
            fanout=(10, 100, 1000), fanout_procs=10,
            fanout_deliveries=20000, idle=3.0)
QUICK = dict(warmup=50, events=1000, latency_events=200, rate=1000,
             fanout=(2, 4), fanout_procs=2, fanout_deliveries=400,
             idle=2.0)


class Skip(Exception):
    """A row cannot run; the message says why."""


class Worker(worker_process.WorkerProcess):
    """One bench_worker process. A subscriber's ``count`` messages update
    ``count``, ``last`` and ``changed`` as they come, and are not queued.
    """

    def __init__(self, role, transport, world, endpoint, log_dir,
                 prefix=()):
        """``prefix``: a command to run the worker under (a profiler)."""
        label = '%s-%s-%s' % (transport, world, role)
        # Before the reader thread starts: it updates them.
        self.count = 0
        self.last = 0.0
        self.changed = time.monotonic()
        super().__init__(
            'benchmarks.bench_worker', ['--role', role, '--transport',
                                        transport, '--endpoint', endpoint],
            world=world, label=label, paths=[ROOT], prefix=prefix,
            log_path=os.path.join(log_dir, label + '.log'))

    def _consume(self, msg):
        if msg['type'] == 'count':
            self.count, self.last = msg['count'], msg['last']
            self.changed = time.monotonic()
            return True
        if msg['type'] == 'reset':
            self.count, self.last = 0, 0.0
            self.changed = time.monotonic()
        return False

    def expect(self, kind, timeout=60.0):
        msg = super().expect(kind, timeout, also=('unavailable',))
        if msg['type'] == 'unavailable':
            raise Skip(msg['reason'])
        return msg


class RedisServer:
    """A redis-server of our own on a free loopback port, no persistence."""

    def __init__(self, log_dir):
        binary = shutil.which('redis-server')
        if not binary:
            raise Skip('redis-server not found (apt-get install'
                       ' redis-server)')
        try:
            import redis  # noqa: F401
        except ImportError:
            raise Skip('redis-py not installed (%s)' % _INSTALL) from None
        self.port = embedded_server.free_port()
        self.endpoint = '127.0.0.1:%d' % self.port
        self._log = open(os.path.join(log_dir, 'redis-server.log'), 'w')
        self.proc = subprocess.Popen(
            [binary, '--port', str(self.port), '--bind', '127.0.0.1',
             '--save', '', '--appendonly', 'no'],
            stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self._pong():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise Skip('redis-server did not start (log %s)'
                           % self._log.name)
            time.sleep(0.05)

    def _pong(self):
        try:
            with socket.create_connection(('127.0.0.1', self.port), 1) as s:
                s.sendall(b'PING\r\n')
                return s.recv(16).startswith(b'+PONG')
        except OSError:
            return False

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def _zmq_available():
    try:
        import zmq  # noqa: F401
    except ImportError:
        raise Skip('pyzmq not installed (%s)' % _INSTALL) from None


def _wait_delivered(subs, target, idle, since):
    """Wait until ``target`` deliveries, or none came for ``idle`` s."""
    while True:
        total = sum(sub.count for sub in subs)
        if total >= target:
            break
        quiet = max([since] + [sub.changed for sub in subs])
        if time.monotonic() - quiet > idle:
            break
        time.sleep(0.02)
    return total, max(sub.last for sub in subs)


def burst(pub, subs, n, conns, idle):
    """Send ``n`` events at full speed to ``conns`` connections in all.

    Returns the publisher's ``sent`` message (``start``, ``end``), the
    deliveries counted and the time of the last one.
    """
    for sub in subs:
        sub.call('reset', 'reset')
    sent = pub.call('burst', 'sent', timeout=300, n=n)
    total, last = _wait_delivered(subs, n * conns, idle, time.monotonic())
    return sent, total, last


def _cpu_seconds(pid):
    """User plus system CPU time of a process so far; 0 if it is gone."""
    try:
        with open('/proc/%d/stat' % pid) as stat:
            fields = stat.read().rsplit(')', 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def _percentile(values, fraction):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _settle(transport, conns=1):
    # A zmq SUB receives nothing until its subscription reached the PUB.
    time.sleep(1.0 + conns / 500.0 if transport == 'zmq' else 0.3)


def fanout_events(cfg, size):
    """Events sent at fan-out size ``size``."""
    return max(cfg['fanout_deliveries'] // size, 10)


def in_process(transport, world, endpoint, cfg, log_dir, prefix=()):
    """End-to-end rate and CPU per event of one process doing both sides.
    """
    fig = {}
    worker = Worker('local', transport, world, endpoint, log_dir, prefix)
    try:
        worker.expect('ready')
        worker.call('open', 'opened', conns=1)
        _settle(transport)
        worker.call('burst', 'sent', timeout=300, n=cfg['warmup'],
                    idle=cfg['idle'])
        n = cfg['events']
        sent = worker.call('burst', 'sent', timeout=600, n=n,
                           idle=cfg['idle'])
        fig['local_cpu_us'] = sent['cpu'] / n * 1e6
        total = sent['count']
        fig['local_rate'] = (total / (sent['last'] - sent['start'])
                             if total else 0.0)
        fig['local_lost'] = n - total
    finally:
        worker.stop()
    return fig


def run_row(transport, world, endpoint, cfg, log_dir, broker_pid=None,
            fanout=True, phases=PHASES):
    """The figures of one row in one run; raises Skip if it cannot run.

    ``phases``: which of ``PHASES`` to measure. ``seconds_*``: how long
    each phase took, to see where a run's time goes.
    """
    fig = {}
    if 'one-process' in phases:
        began = time.monotonic()
        fig.update(in_process(transport, world, endpoint, cfg, log_dir))
        fig['seconds_one_process'] = time.monotonic() - began
    if not set(phases) - {'one-process'}:
        return fig
    workers = []
    try:
        began = time.monotonic()
        pub = Worker('pub', transport, world, endpoint, log_dir)
        workers.append(pub)
        pub.expect('ready')
        first = Worker('sub', transport, world, endpoint, log_dir)
        workers.append(first)
        first.expect('ready')
        fig['rss_start'] = first.call('open', 'opened', conns=1)['rss']
        _settle(transport)
        burst(pub, [first], cfg['warmup'], 1, cfg['idle'])

        if 'across' in phases:
            _across(pub, first, cfg, broker_pid, fig)
        fig['seconds_across'] = time.monotonic() - began
        if 'latency' in phases:
            began = time.monotonic()
            _latency(pub, first, cfg, fig)
            fig['seconds_latency'] = time.monotonic() - began
        if fanout and 'fanout' in phases:
            began = time.monotonic()
            try:
                _fanout(transport, world, endpoint, cfg, log_dir, pub,
                        first, workers, fig)
            except Skip as exc:
                fig['fanout_skipped'] = str(exc)
            fig['seconds_fanout'] = time.monotonic() - began
    finally:
        for worker in workers:
            worker.stop()
    return fig


def _across(pub, first, cfg, broker_pid, fig):
    """Publish rate, end-to-end rate and CPU time of a burst."""
    n = cfg['events']
    clients = (pub.proc.pid, first.proc.pid)
    cpu = [sum(_cpu_seconds(p) for p in clients),
           _cpu_seconds(broker_pid) if broker_pid else 0.0]
    sent, total, last = burst(pub, [first], n, 1, cfg['idle'])
    after = sum(_cpu_seconds(p) for p in clients)
    fig['cpu_client_us'] = (after - cpu[0]) / n * 1e6
    if broker_pid:
        fig['cpu_broker_us'] = (
            _cpu_seconds(broker_pid) - cpu[1]) / n * 1e6
    fig['pub_rate'] = n / (sent['end'] - sent['start'])
    fig['e2e_rate'] = total / (last - sent['start']) if total else 0.0
    fig['e2e_lost'] = n - total


def _latency(pub, first, cfg, fig):
    """Send-to-callback latency at a steady rate."""
    n = cfg['latency_events']
    first.call('reset', 'reset', record=True)
    sent = pub.call('paced', 'sent', timeout=300, n=n, rate=cfg['rate'])
    _wait_delivered([first], n, cfg['idle'], time.monotonic())
    report = first.call('report', 'report', n=n)
    lat = [(recv - send) * 1000.0 for send, recv in
           zip(sent['times'], report['latency']) if recv is not None]
    fig['lat_lost'] = n - len(lat)
    for name, fraction in (('p50', .5), ('p99', .99), ('p999', .999)):
        fig['lat_' + name] = _percentile(lat, fraction)
    fig['rss_sub'] = report['rss']


def _fanout(transport, world, endpoint, cfg, log_dir, pub, first, workers,
            fig):
    """Deliveries/s and losses at each fan-out size; RSS per connection."""
    subs = [first]
    for _ in range(cfg['fanout_procs'] - 1):
        subs.append(Worker('sub', transport, world, endpoint, log_dir))
        workers.append(subs[-1])
    for sub in subs[1:]:
        sub.expect('ready')
    opened = {}
    for size in cfg['fanout']:
        per_proc = max(size // len(subs), 1)
        for sub in subs:
            sub.send('open', conns=per_proc)
        for sub in subs:
            rss = sub.expect('opened', timeout=300)['rss']
            opened.setdefault(sub, []).append((per_proc, rss))
        conns = per_proc * len(subs)
        _settle(transport, conns)
        n = fanout_events(cfg, size)
        sent, total, last = burst(pub, subs, n, conns, cfg['idle'])
        fig['fanout_%d_rate' % size] = (
            total / (last - sent['start']) if total else 0.0)
        fig['fanout_%d_lost' % size] = n * conns - total
    growth = []
    for sub, points in opened.items():
        (c0, r0), (c1, r1) = points[0], points[-1]
        if c1 > c0:
            growth.append((r1 - r0) / (c1 - c0))
    if growth:
        fig['rss_per_conn'] = sorted(growth)[len(growth) // 2]


def _progress(fig):
    """The headline figures of one row's run, as far as measured."""
    parts = []
    if 'local_rate' in fig:
        parts.append('e2e %8.0f events/s in one process' % fig['local_rate'])
    if 'e2e_rate' in fig:
        parts.append('%8.0f across' % fig['e2e_rate'])
    if fig.get('lat_p50') is not None:
        parts.append('latency p50 %.2f ms, p99 %.2f ms' % (
            fig['lat_p50'], fig['lat_p99']))
    return ', '.join(parts)


def _median(values):
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    if len(values) % 2:
        return values[mid]
    return (values[mid - 1] + values[mid]) / 2.0


def _write(payload, out):
    text = bench_report.table(payload)
    print(text, flush=True)
    with open(os.path.join(out, 'bench.json'), 'w') as f:
        json.dump(payload, f, indent=1, sort_keys=True)
    with open(os.path.join(out, 'bench.txt'), 'w') as f:
        f.write(text + '\n')
    print(bench_report.chart(payload, os.path.join(out, 'bench.png')),
          flush=True)


def run(args):
    if args.from_json:
        with open(args.from_json) as f:
            payload = json.load(f)
        out = args.out or os.path.dirname(os.path.abspath(args.from_json))
        os.makedirs(out, exist_ok=True)
        _write(payload, out)
        return 0
    cfg = dict(QUICK if args.quick else FULL)
    if args.events:
        cfg['events'] = args.events
    if getattr(args, 'fanout', None):
        cfg['fanout'] = tuple(sorted(args.fanout))
    if getattr(args, 'fanout_procs', None):
        cfg['fanout_procs'] = args.fanout_procs
    # nats-server, redis-server and the workers inherit the limit.
    bench_worker.raise_fd_limit()
    phases = getattr(args, 'phases', None) or PHASES
    cfg['phases'] = list(phases)
    runs = args.runs or (1 if args.quick else 3)
    out = args.out or tempfile.mkdtemp(prefix='df-nats-bench-')
    os.makedirs(out, exist_ok=True)
    log_dir = tempfile.mkdtemp(prefix='df-nats-bench-logs-')
    results = {label: [] for label, _, _, _ in ROWS}
    skipped = {}
    print('df-nats bench: %d run(s) on %d CPU(s); worker logs in %s'
          % (runs, os.cpu_count() or 0, log_dir), flush=True)
    with embedded_server.NatsServer(jetstream=False) as nats_server:
        for number in range(runs):
            for label, transport, world, fanout in ROWS:
                if label in skipped:
                    continue
                started = time.monotonic()
                redis_server = None
                broker_pid = None
                try:
                    if transport == 'df-nats' or transport.startswith(
                            'nats-py'):
                        endpoint = nats_server.url
                        broker_pid = nats_server.pid
                    elif transport == 'redis':
                        redis_server = RedisServer(log_dir)
                        endpoint = redis_server.endpoint
                        broker_pid = redis_server.proc.pid
                    else:
                        _zmq_available()
                        endpoint = 'tcp://127.0.0.1:%d' % (
                            embedded_server.free_port())
                    figures = run_row(transport, world, endpoint, cfg,
                                      log_dir, broker_pid, fanout, phases)
                except Skip as exc:
                    skipped[label] = str(exc)
                    print('  %-17s skipped: %s' % (label, exc), flush=True)
                    continue
                finally:
                    if redis_server:
                        redis_server.stop()
                results[label].append(figures)
                print('  run %d/%d %-17s %5.1f s  %s' % (
                    number + 1, runs, label, time.monotonic() - started,
                    _progress(figures)), flush=True)
    medians = {label: {key: _median([r.get(key) for r in rows])
                       for key in set().union(*rows)
                       if key != 'fanout_skipped'}
               for label, rows in results.items() if rows}
    for label, rows in results.items():
        why = [r['fanout_skipped'] for r in rows if 'fanout_skipped' in r]
        if why:
            skipped[label + ' fan-out'] = why[0]
    payload = {'config': cfg, 'runs': runs, 'cpus': os.cpu_count(),
               'rows': [label for label, _, _, _ in ROWS],
               'baseline': BASELINE,
               'event_bytes': bench_transports.mean_packed_size(
                   bench_transports.make_events(bench_worker.PAYLOADS)),
               'medians': medians, 'all_runs': results, 'skipped': skipped}
    _write(payload, out)
    if not args.keep_logs:
        shutil.rmtree(log_dir, ignore_errors=True)
    return 0 if any(results.values()) else 1


def _parser():
    parser = argparse.ArgumentParser(
        prog='python -m benchmarks.bench',
        description='Measure df-nats against plain nats-py, Redis and'
                    ' ZeroMQ: rates, latency, fan-out, memory.')
    parser.add_argument('--quick', action='store_true',
                        help='small counts, one run: a smoke test')
    parser.add_argument('--runs', type=int, default=0,
                        help='runs to take the median of (default 3,'
                             ' 1 with --quick)')
    parser.add_argument('--events', type=int, default=0,
                        help='events of the rate phases (default 30000)')
    parser.add_argument('--fanout', type=_sizes, metavar='N,N,...',
                        help='fan-out sizes: subscriber connections in all'
                             ' (default 10,100,1000)')
    parser.add_argument('--fanout-procs', type=int, default=0,
                        help='subscriber processes the fan-out connections'
                             ' are spread over (default 10)')
    parser.add_argument('--phases', type=_phases, metavar='PHASE,...',
                        help='measure only these phases, among'
                             ' one-process, across, latency and fanout'
                             ' (default: all)')
    parser.add_argument('--out', metavar='DIR',
                        help='where to write bench.png, bench.json and'
                             ' bench.txt (default: a new temp dir)')
    parser.add_argument('--from-json', metavar='FILE',
                        help='do not measure: print the table and draw the'
                             ' chart of a bench.json written before')
    parser.add_argument('--keep-logs', action='store_true',
                        help='keep the worker processes\' logs')
    return parser


def _phases(text):
    """``latency,fanout``: names of bench phases, for ``--phases``."""
    names = [part.strip() for part in text.split(',') if part.strip()]
    if not names or set(names) - set(PHASES):
        raise argparse.ArgumentTypeError(
            'expected phases among %s separated by commas, got %r'
            % (','.join(PHASES), text))
    return names


def _sizes(text):
    """``10,100,1000``: positive integers, for ``--fanout``."""
    try:
        sizes = [int(part) for part in text.split(',')]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(
            'expected positive integers separated by commas, got %r' % text)
    return sizes


def main(argv=None):
    return run(_parser().parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
