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

"""The storm benchmark: what losing one NATS node costs a cloud.

A 3-node nats-server cluster with JetStream runs on 127.0.0.1. Subscriber
processes stand for compute nodes: ``--subscribers`` of them (300 by
default), forked by one process after it imported df-nats, each with a
df-nats subscriber and connection of its own made after the fork. One
publisher process sends Dragonflow-sized events at ``--rate`` a second.
Then one node is killed -9 and restarted ``--down`` seconds later, in
each case:

``publisher-node``
    the node the publisher is connected to;
``other-node``
    a node that is neither the publisher's nor the JetStream meta leader;
``stream-leader``
    the leader of the stream df-nats uses: the stream capturing the
    topic's subject if there is one, else the registry bucket's
    ``KV_<bucket>``;
``meta-leader``
    the JetStream meta leader.

The publisher is placed on a node that is not the meta leader, and the
stream's leader is moved (leader stepdown) off the publisher's node and
off the killed node when the case is not about it, so that each case
kills one role. The roles the killed node held at the kill are reported.

Every case gets a new cluster and new processes. Per case it prints, and
writes to ``--out`` as JSON with the commit: subscribers that lost their
node, full syncs by reason, events replayed and duplicates dropped (from
the subscribers' counters, when the driver has them), silent loss, order
regressions, time to caught up (p50/p99/max), the machine's idle CPU
and nats-server RSS before and after. The definitions are in
benchmarks/storm_report.py. Run from the repository root::

    python -m benchmarks.storm [--subscribers 300] [--case all]

Every process it starts is killed when it ends, also on Ctrl-C. It
checks first that the machine can hold the processes (open files, which
it raises to the hard limit for the servers, processes, memory: about
8-9 MiB of PSS per subscriber process).

One machine plays the whole cloud: N subscribers at ``--rate`` events a
second are N times ``--rate`` deliveries a second on its cores. The
report's *latency before kill* shows whether they kept up before the
kill; when they did not, times to caught up include that lag, while
counts (subscribers that lost their node, full syncs, silent loss,
order regressions) do not depend on it. ``--client nats-py`` runs the
same storm with plain nats-py clients instead (benchmarks/storm_worker.py
says how they are written): the baseline, measured the same way, whose
latency before kill is what the machine gives without df-nats' costs,
and whose silent loss is what a node loss costs with no recovery.
"""

import argparse
import asyncio
import datetime
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from benchmarks import bench_worker
from benchmarks import storm_report
from benchmarks import storm_worker
from df_nats.testing import embedded_cluster
from df_nats.testing import worker_process
from df_nats.wire import subjects

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(ROOT, 'benchmarks', 'results', 'storm')
CASES = ('publisher-node', 'other-node', 'stream-leader', 'meta-leader')
BASELINE_CASES = ('publisher-node', 'other-node')
# Each worker gets these [df_nats] options before the user's --option:
# the registry bucket replicated on the three nodes, as in a cluster.
BASE_OPTIONS = ('kv_replicas=3',)
DEFAULT_PREFIX = 'dragonflow'
DEFAULT_BUCKET = 'df_publishers'
# Measured on this benchmark (Python 3.11, x86-64): a forked subscriber
# process takes 8-9 MiB of its own (PSS) in either world; counted with
# room to spare.
CHILD_MIB = 16
SERVER_MIB = 300
# Threads (tasks) a subscriber process runs: main, the loop thread, the
# native dispatcher; and a few besides.
CHILD_TASKS = 4
_STEPDOWN_TRIES = 8
# How long a capture stream may come after the registry bucket.
CAPTURE_GRACE = 3.0
# The longest a subscriber waits for what is still on its way after the
# settle time (storm_worker's drain).
DRAIN = 60.0


class StormError(RuntimeError):
    """The benchmark cannot run or a case failed; the message says why."""


# -- the machine --------------------------------------------------------------


def _meminfo(field):
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _user_tasks():
    """Threads of this user's processes now (what RLIMIT_NPROC counts)."""
    uid, count = os.getuid(), 0
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            if os.stat('/proc/%s' % pid).st_uid == uid:
                count += len(os.listdir('/proc/%s/task' % pid))
        except OSError:
            continue
    return count


def load_average():
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def cpu_times():
    """(idle, total) CPU time of the machine so far, in ticks, or None
    where /proc/stat cannot be read.
    """
    try:
        with open('/proc/stat') as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal (guest counted in
    # user already).
    return fields[3] + fields[4], sum(fields[:8])


def idle_share(before, after):
    """The machine's idle share of its CPU time between two
    ``cpu_times()`` (0 to 1), or None.
    """
    if before is None or after is None or after[1] <= before[1]:
        return None
    return round((after[0] - before[0]) / (after[1] - before[1]), 3)


def check_machine(subscribers):
    """Can this machine hold ``subscribers`` processes? Raises StormError
    naming the limit if not; raises the open-files limit as far as the
    hard limit allows (the servers inherit it). Returns what it found.
    """
    bench_worker.raise_fd_limit()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # One server may hold every connection once another is down.
    need_fds = subscribers + 1000
    if soft != resource.RLIM_INFINITY and soft < need_fds:
        raise StormError(
            'open files limit (ulimit -n) is %d (hard %d): %d subscribers'
            ' need about %d; raise it (ulimit -n %d) and run again'
            % (soft, hard, subscribers, need_fds, need_fds))
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[0]
    tasks = _user_tasks()
    need_tasks = subscribers * CHILD_TASKS + 100
    if nproc != resource.RLIM_INFINITY and tasks + need_tasks > nproc:
        raise StormError(
            'processes limit (ulimit -u) is %d and this user runs %d'
            ' threads: %d subscribers need about %d more'
            % (nproc, tasks, subscribers, need_tasks))
    need_mem = (subscribers * CHILD_MIB + 3 * SERVER_MIB) * 2 ** 20
    available = _meminfo('MemAvailable')
    if available is not None and available < need_mem:
        raise StormError(
            '%d subscriber processes take about %d MiB (%d MiB each, and'
            ' the servers), but only %d MiB is available'
            % (subscribers, need_mem // 2 ** 20, CHILD_MIB,
               available // 2 ** 20))
    return {'cpus': os.cpu_count(), 'fd_limit': soft,
            'nproc_limit': None if nproc == resource.RLIM_INFINITY
            else nproc, 'user_tasks': tasks,
            'mem_available': available, 'memory_estimate': need_mem,
            'load_1min': load_average()}


def process_memory(pid):
    """(RSS, PSS) of a process in bytes (PSS None where unreadable)."""
    rss = pss = None
    try:
        with open('/proc/%d/status' % pid) as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    rss = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        with open('/proc/%d/smaps_rollup' % pid) as f:
            for line in f:
                if line.startswith('Pss:'):
                    pss = int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss, pss


def server_rss(cluster):
    """{node: (VmRSS, VmHWM)} of the nats-server processes running."""
    out = {}
    for node in cluster.nodes:
        if not node.is_running():
            continue
        values = {}
        try:
            with open('/proc/%d/status' % node.pid) as f:
                for line in f:
                    key = line.split(':', 1)[0]
                    if key in ('VmRSS', 'VmHWM'):
                        values[key] = int(line.split()[1]) * 1024
        except OSError:
            continue
        out[node.name] = (values.get('VmRSS'), values.get('VmHWM'))
    return out


def commit():
    """The short commit of the repository, ``+`` if the tree differs."""
    try:
        head = subprocess.run(
            ['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, text=True,
            capture_output=True, timeout=10).stdout.strip()
        dirty = subprocess.run(
            ['git', 'status', '--porcelain', '--untracked-files=no'],
            cwd=ROOT, text=True, capture_output=True,
            timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (head + ('+' if dirty else '')) or None


# -- JetStream roles ---------------------------------------------------------


def subject_matches(pattern, subject):
    """Whether the NATS subject ``pattern`` (``*``, ``>``) matches."""
    want, have = pattern.split('.'), subject.split('.')
    for i, token in enumerate(want):
        if token == '>':
            return len(have) > i
        if i >= len(have) or (token != '*' and token != have[i]):
            return False
    return len(want) == len(have)


def meta_leader(cluster):
    """The JetStream meta leader's node name, as the running nodes agree
    (None if they do not).
    """
    views = set()
    for node in cluster.nodes:
        if node.is_running():
            jsz = node.get_json('/jsz') or {}
            views.add((jsz.get('meta_cluster') or {}).get('leader'))
    return views.pop() if len(views) == 1 else None


def streams(cluster):
    """{stream: {'leader', 'subjects'}} as the meta leader sees them."""
    leader = meta_leader(cluster)
    nodes = sorted((n for n in cluster.nodes if n.is_running()),
                   key=lambda n: n.name != leader)
    for node in nodes:
        jsz = node.get_json('/jsz?accounts=1&streams=1&config=1')
        if jsz is None:
            continue
        out = {}
        for account in jsz.get('account_details') or ():
            for detail in account.get('stream_detail') or ():
                out[detail['name']] = {
                    'leader': (detail.get('cluster') or {}).get('leader'),
                    'subjects': (detail.get('config') or {}).get(
                        'subjects') or []}
        return out
    return {}


def stream_of_interest(cluster, topic_subject, bucket):
    """The stream that captures ``topic_subject`` (replay's), else the
    registry bucket's stream; None if neither exists.
    """
    found = streams(cluster)
    for name in sorted(found):
        if name.startswith('KV_'):
            continue
        if any(subject_matches(p, topic_subject)
               for p in found[name]['subjects']):
            return name
    name = 'KV_%s' % bucket
    return name if name in found else None


def find_stream(cluster, topic_subject, bucket, timeout=30.0,
                grace=CAPTURE_GRACE):
    """The stream of interest once there is one: a capture stream as soon
    as it exists, the registry bucket's only after ``grace`` seconds (the
    capture stream may be made a moment after the bucket). None if
    neither came within ``timeout``.
    """
    start = time.monotonic()
    while True:
        stream = stream_of_interest(cluster, topic_subject, bucket)
        waited = time.monotonic() - start
        if stream is not None and (not stream.startswith('KV_')
                                   or waited >= grace):
            return stream
        if waited >= timeout:
            return stream
        time.sleep(0.2)


async def _stepdown(url, stream, preferred):
    import nats
    nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
    try:
        payload = b''
        if preferred:
            payload = json.dumps(
                {'placement': {'preferred': preferred}}).encode()
        msg = await nc.request('$JS.API.STREAM.LEADER.STEPDOWN.%s' % stream,
                               payload, timeout=5)
        return json.loads(msg.data)
    finally:
        await nc.close()


def move_stream_leader(cluster, stream, avoid, timeout=20):
    """Step the stream's leader down until it is on no node in ``avoid``
    (names), a few tries at most. Returns the leader then.
    """
    # A stream made a moment ago may not show its leader yet.
    deadline = time.monotonic() + timeout
    leader = (streams(cluster).get(stream) or {}).get('leader')
    while leader is None and time.monotonic() < deadline:
        time.sleep(0.2)
        leader = (streams(cluster).get(stream) or {}).get('leader')
    candidates = [n.name for n in cluster.nodes if n.name not in avoid]
    for _ in range(_STEPDOWN_TRIES):
        if leader not in avoid or not candidates:
            return leader
        try:
            asyncio.run(_stepdown(cluster.urls[0], stream, candidates[0]))
        except Exception as exc:  # an answer or not: look again
            print('  stepdown of %s: %s: %s'
                  % (stream, type(exc).__name__, exc), flush=True)
        deadline = time.monotonic() + timeout
        old, leader = leader, None
        while time.monotonic() < deadline:
            leader = (streams(cluster).get(stream) or {}).get('leader')
            if leader and leader != old:
                break
            time.sleep(0.2)
    return leader


def roles_of(cluster, node, pub_node):
    """What the node held: publisher's node, meta leader, stream leaders.
    """
    roles = []
    if node is pub_node:
        roles.append("publisher's node")
    if meta_leader(cluster) == node.name:
        roles.append('meta leader')
    for name, info in sorted(streams(cluster).items()):
        if info['leader'] == node.name:
            roles.append('leader of %s' % name)
    return roles


# -- one case ---------------------------------------------------------------


def _worker(role, args, urls, workdir, extra=()):
    options = []
    for pair in BASE_OPTIONS + tuple(args.option or ()):
        options += ['--option', pair]
    options += ['--client', args.client]
    return worker_process.WorkerProcess(
        'benchmarks.storm_worker',
        options + list(extra) + [role] + list(urls), world=args.world,
        label=role, paths=[ROOT], new_session=True,
        log_path=os.path.join(workdir, '%s.log' % role))


def _wait_children(forker, n, timeout):
    """{index: connected message} of the ``n`` children, or StormError."""
    children = {}
    deadline = time.monotonic() + timeout
    while len(children) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise StormError('%d of %d subscribers connected within %.0f s'
                             '; log %s' % (len(children), n, timeout,
                                           forker.log_path))
        try:
            message = forker.next(
                lambda m: m.get('type') in ('connected', 'error'), left)[1]
        except worker_process.WorkerError as exc:
            raise StormError(str(exc)) from None
        if message['type'] == 'error':
            raise StormError('subscriber %s failed: %s (its log: %s)' % (
                message.get('index'), message.get('reason'),
                os.path.join(os.path.dirname(forker.log_path),
                             'sub-%05d.log' % (message.get('index') or 0))))
        children[message['index']] = message
    return children


def _option(args, name, default):
    for pair in args.option or ():
        key, _, value = pair.partition('=')
        if key.strip() == name:
            return value.strip()
    return default


def _pick(cluster, case, meta, pub_node):
    """The node to kill in ``case``."""
    by_name = {n.name: n for n in cluster.nodes}
    if case == 'publisher-node':
        return pub_node
    if case == 'meta-leader':
        return by_name[meta]
    if case == 'stream-leader':
        return None  # chosen once the stream exists
    # other-node: neither the publisher's nor the meta leader, if possible.
    others = [n for n in cluster.nodes if n is not pub_node]
    plain = [n for n in others if n.name != meta]
    return (plain or others)[0]


def run_case(case, args, timing):
    """Run one case on a new cluster; its report (storm_report)."""
    workdir = tempfile.mkdtemp(prefix='df-nats-storm-')
    n = args.subscribers
    cluster = embedded_cluster.NatsCluster(size=3, jetstream=True,
                                           name='df-nats-storm')
    procs = []
    notes = {'case': case, 'logs': workdir if args.keep_logs else None}
    try:
        cluster.start(timeout=60)
        meta = meta_leader(cluster)
        # The publisher on a node that is not the meta leader: a case
        # then kills one role. Only its node's URL: when that node dies,
        # it fails over to those the cluster announced.
        pub_node = next(n for n in cluster.nodes if n.name != meta)
        t0 = time.time()
        common = ['--timeout', str(timing['worker_timeout']),
                  '--max-events', str(timing['max_events']),
                  '--rate', str(args.rate)]
        pub = _worker('publisher', args, [pub_node.url], workdir, common)
        procs.append(pub)
        connected = pub.expect('connected', 60)
        if cluster.node_for(connected['url']) is not pub_node:
            raise StormError('the publisher connected to %s, not %s'
                             % (connected['url'], pub_node.url))
        topic_subject = subjects.topic_subject(
            _option(args, 'subject_prefix', DEFAULT_PREFIX),
            storm_worker.TOPIC)
        bucket = _option(args, 'registry_bucket', DEFAULT_BUCKET)
        # The baseline makes no stream.
        stream = find_stream(cluster, topic_subject, bucket) if (
            args.client == 'df-nats') else None
        target = _pick(cluster, case, meta, pub_node)
        if stream is not None:
            if case == 'stream-leader':
                # Neither the publisher's node nor the meta leader.
                leader = move_stream_leader(cluster, stream,
                                            {pub_node.name, meta})
                target = {n.name: n for n in cluster.nodes}.get(leader)
            else:
                move_stream_leader(cluster, stream,
                                   {pub_node.name, target.name})
        if target is None:
            raise StormError('no leader found for stream %s' % stream)
        forker = _worker('forker', args, cluster.urls, workdir, common + [
            '--subscribers', str(n), '--placement', args.placement,
            '--workdir', workdir, '--t0', repr(t0),
            '--close-timeout', str(timing['close_timeout']),
            '--drain', str(DRAIN)])
        procs.append(forker)
        started = time.monotonic()
        children = _wait_children(forker, n, timing['start_timeout'])
        notes['start_seconds'] = round(time.monotonic() - started, 1)
        rss = pss = 0
        for message in children.values():
            r, p = process_memory(message['pid'])
            rss += r or 0
            pss += p or 0
        notes['children_memory'] = {'n': n, 'rss': rss, 'pss': pss}
        print('  %s: %d subscribers connected in %.1f s (%.0f MiB PSS);'
              ' publisher on %s, meta leader %s, stream %s led by %s;'
              ' killing %s' % (
                  case, n, notes['start_seconds'], pss / 2 ** 20,
                  pub_node.name, meta, stream,
                  (streams(cluster).get(stream) or {}).get('leader'),
                  target.name), flush=True)
        time.sleep(1.0)  # the subscriptions' interest crosses the routes
        pub.send('go')
        t_go = time.time()
        # Idle CPU in the steady stream: the second half of the warm-up.
        time.sleep(args.warmup / 2)
        cpu_steady = cpu_times()
        time.sleep(args.warmup / 2)
        notes['killed_roles'] = roles_of(cluster, target, pub_node)
        notes['stream'] = stream
        notes['meta_leader_before'] = meta_leader(cluster)
        rss_before = server_rss(cluster)
        server_pids = {n.pid for n in cluster.nodes}
        cpu_kill = cpu_times()
        t_kill = time.time()
        target.kill()
        time.sleep(args.down)
        t_restart = time.time()
        notes['cpu_idle'] = {
            'before_kill': idle_share(cpu_steady, cpu_kill),
            'while_down': idle_share(cpu_kill, cpu_times())}
        target.start(60)
        t_ready = time.time()
        try:
            cluster.wait_formed(60)
            t_formed = time.time()
        except embedded_cluster.NatsServerError as exc:
            print('  %s: cluster not formed again: %s' % (case, exc),
                  flush=True)
            t_formed = None
        time.sleep(max(t_restart + args.after - time.time(), 0))
        notes['meta_leader_after'] = meta_leader(cluster)
        pub.send('stop')
        t_stop = time.time()
        published = pub.expect('result', 120)
        time.sleep(args.settle)
        rss_after = server_rss(cluster)
        forker.send('done', published=len(published['sent']))
        finished = forker.expect('finished', timing['close_timeout'] + 60)
        records = []
        for index in sorted(children):
            path = os.path.join(workdir, 'sub-%05d.json' % index)
            try:
                with open(path) as f:
                    records.append(json.load(f))
            except (OSError, ValueError) as exc:
                raise StormError('subscriber %d left no record (%s); exit'
                                 ' %s' % (index, exc, finished['statuses']
                                          .get(str(index)))) from None
        notes['pids'] = {
            'servers': sorted(server_pids | {n.pid for n in cluster.nodes
                                             if n.pid}),
            'workers': [pub.pid, forker.pid],
            'subscribers': sorted(m['pid'] for m in children.values())}
        node_of = {}
        for node in cluster.nodes:
            for url in (node.url, node.localhost_url):
                node_of[url] = node.name
        run = dict(notes, sent=published['sent'],
                   refused=published['refused'],
                   node_of=node_of, killed=target.name,
                   publisher_node=pub_node.name,
                   publisher_reconnects=published['conn_stats'].get(
                       'reconnects', 0),
                   publisher_flushed=published['flushed'],
                   publisher_hit_limit=published['hit_limit'],
                   t_go=t_go, t_kill=t_kill,
                   down_seconds=round(t_restart - t_kill, 3),
                   restart_ready_seconds=round(t_ready - t_kill, 3),
                   formed_seconds=None if t_formed is None
                   else round(t_formed - t_kill, 3),
                   stop_seconds=round(t_stop - t_kill, 3),
                   rss_before={k: v[0] for k, v in rss_before.items()},
                   rss_after={k: v[0] for k, v in rss_after.items()},
                   hwm_after={k: v[1] for k, v in rss_after.items()},
                   child_exits=sorted({str(v) for v in
                                       finished['statuses'].values()}))
        return storm_report.case_report(run, records)
    finally:
        for proc in procs:
            proc.kill()
        cluster.cleanup()
        if not args.keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)


# -- the command -------------------------------------------------------------


def cases_of(args):
    """The cases to run: the baseline has no stream (so no stream-leader
    case), and its meta leader is a node like another.
    """
    if args.client == 'df-nats':
        return CASES if args.case == 'all' else (args.case,)
    if args.case == 'all':
        return BASELINE_CASES
    if args.case not in BASELINE_CASES:
        raise StormError('--client %s: no %s case (it makes no stream)'
                         % (args.client, args.case))
    return (args.case,)


def timing_of(args):
    """Bounds derived from the options: every wait ends."""
    n = args.subscribers
    span = args.warmup + args.down + args.after + args.settle
    start = 60 + n * 0.5
    # Children drain (up to DRAIN s) before they close.
    close = 60 + n * 0.2 + DRAIN
    return {
        'start_timeout': start,
        'close_timeout': close,
        # Children and publisher end by themselves after this.
        'worker_timeout': round(start + span + 180 + close),
        # More than the publisher can send in the run, restart included.
        'max_events': int(args.rate * (span + 120)) + 1000,
    }


def _interrupt(signum, frame):
    raise KeyboardInterrupt('signal %d' % signum)


def run(args):
    if args.client != 'df-nats' and args.world != 'native':
        raise StormError('--client %s runs in the native world only'
                         % args.client)
    machine = check_machine(args.subscribers)
    cases = cases_of(args)
    timing = timing_of(args)
    label = args.label or commit() or 'run'
    os.makedirs(args.out, exist_ok=True)
    base = os.path.join(args.out, 'storm-%s-n%d-%s' % (
        label.replace('+', ''), args.subscribers,
        args.world if args.client == 'df-nats' else args.client))
    payload = {
        'commit': commit(),
        'date': datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec='seconds'),
        'config': {'subscribers': args.subscribers, 'world': args.world,
                   'client': args.client,
                   'placement': args.placement, 'rate': args.rate,
                   'down': args.down, 'warmup': args.warmup,
                   'after': args.after, 'settle': args.settle,
                   'options': list(BASE_OPTIONS) + list(args.option or ()),
                   'cases': list(cases)},
        'machine': machine, 'definitions': storm_report.__doc__,
        'cases': {}}
    print('storm: %d subscriber processes, %s client, %s world, %s'
          ' placement, cases %s; load average %s on %s CPUs; about %d MiB'
          ' needed' % (
              args.subscribers, args.client, args.world, args.placement,
              ', '.join(cases), machine['load_1min'], machine['cpus'],
              machine['memory_estimate'] // 2 ** 20), flush=True)
    for case in cases:
        started = time.monotonic()
        report = run_case(case, args, timing)
        report['load_1min_end'] = load_average()
        report['seconds'] = round(time.monotonic() - started, 1)
        payload['cases'][case] = report
        # The cases done so far, should a later one fail; a complete run
        # replaces the report of the previous one only at its end.
        with open(base + '.partial.json', 'w') as f:
            f.write(storm_report.to_json(payload))
        print('  %s done in %.0f s: %d full syncs, %d events lost silently'
              % (case, report['seconds'], report['full_syncs'],
                 report['silent_loss']), flush=True)
    text = storm_report.table(payload)
    print(text, flush=True)
    with open(base + '.json', 'w') as f:
        f.write(storm_report.to_json(payload))
    with open(base + '.txt', 'w') as f:
        f.write(text + '\n')
    os.unlink(base + '.partial.json')
    print('written: %s.json, %s.txt' % (base, base), flush=True)
    return 0


def _positive(kind):
    def parse(text):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError('must be > 0: %r' % text)
        return value
    return parse


def parser():
    p = argparse.ArgumentParser(
        prog='python -m benchmarks.storm',
        description='Kill -9 one node of a 3-node NATS cluster under many'
                    ' subscriber processes and a steady publisher, restart'
                    ' it, and report what recovery cost: full syncs by'
                    ' reason, silent loss, order regressions, time to'
                    ' caught up, server memory.')
    p.add_argument('--subscribers', type=_positive(int), default=300,
                   help='subscriber processes (compute nodes), one'
                        ' connection each (default 300; 1000 for the large'
                        ' storm)')
    p.add_argument('--case', choices=CASES + ('all',), default='all',
                   help='which node to kill (default: all four cases, one'
                        ' after the other, each on a new cluster)')
    p.add_argument('--rate', type=_positive(float), default=200.0,
                   help='events a second the publisher sends (default'
                        ' 200)')
    p.add_argument('--down', type=_positive(float), default=10.0,
                   help='seconds between the kill and the restart'
                        ' (default 10)')
    p.add_argument('--warmup', type=_positive(float), default=5.0,
                   help='seconds of events before the kill (default 5)')
    p.add_argument('--after', type=_positive(float), default=15.0,
                   help='seconds of events after the restart (default 15)')
    p.add_argument('--settle', type=_positive(float), default=2.0,
                   help='seconds between the last event and the end;'
                        ' then each subscriber still waits until it got'
                        ' the last event, or 5 s without any (60 s at'
                        ' most), before it closes (default 2)')
    p.add_argument('--world', choices=('native', 'eventlet'),
                   default='native',
                   help='the processes\' world: native threads, or'
                        ' eventlet monkey-patched before anything is'
                        ' imported (and so before the fork)')
    p.add_argument('--client', choices=storm_worker.CLIENTS,
                   default='df-nats',
                   help='"df-nats", or "nats-py": the baseline, plain'
                        ' nats-py publisher and subscribers (msgpack'
                        ' bodies on core NATS, nats-py\'s reconnect, no'
                        ' recovery), native; cases publisher-node and'
                        ' other-node (default df-nats)')
    p.add_argument('--placement', choices=storm_worker.PLACEMENTS,
                   default='listed',
                   help='"listed": each subscriber is given all three'
                        ' servers, its own first, round robin (nats-py'
                        ' shuffles them at the first connect: the node is'
                        ' random, as for a compute node given the whole'
                        ' cluster); "pinned": only its own, round robin,'
                        ' the others learnt from the cluster (default'
                        ' listed)')
    p.add_argument('--option', action='append', metavar='NAME=VALUE',
                   help='a [df_nats] option for every process, such as'
                        ' resync_interval=0 (repeatable)')
    p.add_argument('--out', default=DEFAULT_OUT,
                   help='directory of the JSON and text reports (default'
                        ' benchmarks/results/storm)')
    p.add_argument('--label', help='name of the report files:'
                   ' storm-LABEL-nN-WORLD.json (default: the commit)')
    p.add_argument('--keep-logs', action='store_true',
                   help='keep the processes\' logs and records (the report'
                        ' says where)')
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    # Also where the shell started it with SIGINT ignored (a background
    # job): an interrupted run still stops what it started.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        return run(args)
    except StormError as exc:
        print('storm: %s' % exc, file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print('storm: interrupted; every process it started is stopped',
              file=sys.stderr, flush=True)
        return 130


if __name__ == '__main__':
    sys.exit(main())
