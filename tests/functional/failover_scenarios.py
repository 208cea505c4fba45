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

"""Failover scenarios: worker processes, the run that breaks the cluster
under them, and the loss accounting.

Run as a worker, ``python -m tests.functional.failover_scenarios
--world=eventlet|native ROLE WORKDIR URL...`` (eventlet patches first, as
Dragonflow services do):

``subscriber``
    subscribes to one topic, records every callback (event number from the
    event's value, or ``sync``) with the wall-clock time, until the file
    ``WORKDIR/done`` appears; writes ``WORKDIR/sub.json``.
``publisher``
    waits for ``WORKDIR/go``, then sends ``--events`` Dragonflow-sized
    events at ``--rate`` a second, noting when each entered
    ``send_event`` (and which the driver refused with an error); flushes,
    writes ``WORKDIR/pub.json``.
``fork``
    the fork-safety scenario (see ``role_fork``).

Workers print ``@@connected <url>`` once connected. ``run_failover`` (used
by tests/functional/test_failover.py and benchmarks/failover.py) drives
both workers against a NatsCluster and kills or restarts nodes meanwhile.
"""

import sys

if __name__ == '__main__' and '--world=eventlet' in sys.argv:
    import eventlet
    eventlet.monkey_patch()

import argparse  # noqa: E402
import bisect  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import queue  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

from tests.functional import world_runner  # noqa: E402

_wait = world_runner.wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
TOPIC = 'failover'
KILL_SUBSCRIBER_NODE = 'kill-subscriber-node'
KILL_PUBLISHER_NODE = 'kill-publisher-node'
ROLLING_RESTART = 'rolling-restart'


def _say(line):
    sys.stdout.write('@@%s\n' % line)
    sys.stdout.flush()


def _wait_for_file(path, timeout):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise AssertionError('no %s after %ss' % (path, timeout))
        time.sleep(0.02)


def _write_json(path, data):
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(data, f)
    os.rename(tmp, path)


# -- worker roles (in the child process) ---------------------------------


class Recorder:
    """A Dragonflow callback noting what arrives, and when (wall clock)."""

    def __init__(self):
        self.log = []

    def __call__(self, table, key, action, value, topic):
        now = time.time()
        if action == 'sync':
            self.log.append(['s', now])
        else:
            self.log.append(['e', json.loads(value)['seq'], now])


def role_subscriber(args):
    from df_nats.cmd import common
    from df_nats import process_context

    recorder = Recorder()
    sub = common.load_driver().get_subscriber()
    sub.initialize(recorder)
    sub.register_topic(TOPIC)
    sub.daemonize()
    conn = process_context.current().connection
    _say('connected %s' % conn.connected_url)
    _wait_for_file(os.path.join(args.workdir, 'done'), args.timeout)
    url = conn.connected_url
    sub.close()
    _write_json(os.path.join(args.workdir, 'sub.json'), {
        'log': list(recorder.log), 'stats': dict(sub.stats),
        'conn_stats': dict(conn.stats), 'last_url': url})


def role_publisher(args):
    from df_nats.cmd import common
    from df_nats.cmd import demo_worker
    from df_nats import errors
    from df_nats import process_context

    pub = common.load_driver().get_publisher()
    pub.initialize()
    conn = process_context.current().connection
    _say('connected %s' % conn.connected_url)
    _wait_for_file(os.path.join(args.workdir, 'go'), args.timeout)
    n, rate = args.events, args.rate
    sent = [None] * n
    refused = []
    start = time.monotonic()
    i = 0
    # A steady rate: every few milliseconds, send what is due by now.
    while i < n:
        due = min(n, int((time.monotonic() - start) * rate) + 1)
        while i < due:
            event = demo_worker.demo_event(i, TOPIC, 'failover')
            sent[i] = time.time()
            try:
                pub.send_event(event)
            except errors.PublishBufferFull:
                refused.append(i)
            i += 1
        time.sleep(0.005)
    elapsed = time.monotonic() - start
    flushed = pub.flush(60)
    url = conn.connected_url
    pub.close()
    _write_json(os.path.join(args.workdir, 'pub.json'), {
        'sent': sent, 'refused': refused, 'flushed': flushed,
        'seconds': elapsed, 'conn_stats': dict(conn.stats),
        'last_url': url})


def role_fork(args):
    """Driver objects made before ``os.fork()`` work in the child.

    The parent initializes a publisher, starts one subscriber and creates
    (without starting) another, then forks, as neutron-server loads its
    plugins and then forks API workers. The child uses the inherited
    publisher, starts the second subscriber, and touches the running one;
    it must get a connection of its own. The parent's connection must be
    left alone: it keeps working, without a single reconnect.
    """
    from df_nats import bridge
    from df_nats.cmd import common
    from df_nats import process_context
    from df_nats import pubsub_api

    def event(key):
        return pubsub_api.DbUpdate('lport', key, 'create', None, topic='F')

    class Keys:
        def __init__(self):
            self.keys, self.syncs = [], 0

        def __call__(self, table, key, action, value, topic):
            if action == 'sync':
                self.syncs += 1
            else:
                self.keys.append(key)

    running_got, later_got = Keys(), Keys()
    pub = common.load_driver().get_publisher()
    pub.initialize()
    running = common.load_driver().get_subscriber()
    running.initialize(running_got)
    running.register_topic('F')
    running.daemonize()
    later = common.load_driver().get_subscriber()
    later.initialize(later_got)
    later.register_topic('F')
    pub.send_event(event('before-fork'))
    _wait(lambda: 'before-fork' in running_got.keys, 10, 'before-fork')
    parent_context = process_context.current()
    parent_conn = parent_context.connection
    parent_bridge = parent_context.bridge
    parent_id = pub.publisher_id
    to_parent_r, to_parent_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            if bridge.is_green():
                # As oslo.service does in a forked worker: a hub of its
                # own, not the parent's epoll.
                from eventlet import hubs
                hubs.use_hub()
            later.daemonize()
            pub.send_event(event('from-child'))
            child_conn = process_context.current().connection
            # The parent's state is marked, never reused.
            assert parent_context.inherited
            assert process_context.current() is not parent_context
            assert child_conn is not parent_conn
            assert pub._conn is child_conn and later._conn is child_conn
            assert process_context.current().bridge is not parent_bridge
            # The child registered itself, under an id of its own.
            child_registration = process_context.current().registration
            assert child_registration.pid == os.getpid()
            assert child_registration.registered
            assert pub.publisher_id == child_registration.publisher_id
            assert pub.publisher_id != parent_id
            _wait(lambda: 'from-child' in later_got.keys, 20, 'from-child')
            # The subscriber that ran in the parent resumes here, on the
            # child's connection, with a sync for what went by unheard.
            assert running.register_topic('G') is True
            assert running._conn is child_conn
            _wait(lambda: running_got.syncs == 1, 10, 'a sync')
            os.write(to_parent_w, b'r')
            _wait(lambda: 'from-parent' in later_got.keys
                  and 'from-parent' in running_got.keys, 20, 'from-parent')
            assert child_conn.stats['reconnects'] == 0
            pub.close()
            later.close()
            running.close()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    # Parent.
    assert os.read(to_parent_r, 1) == b'r'
    pub.send_event(event('from-parent'))
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
    pub.send_event(event('parent-after'))
    _wait(lambda: 'parent-after' in running_got.keys, 10, 'parent-after')
    assert process_context.current() is parent_context
    assert not parent_context.inherited
    assert process_context.current().connection is parent_conn
    assert pub.publisher_id == parent_id
    assert process_context.current().registration.registered
    assert pub._conn is parent_conn and parent_conn.connected
    assert parent_conn.stats['reconnects'] == 0, parent_conn.stats
    assert parent_conn.stats['disconnects'] == 0, parent_conn.stats
    assert running_got.syncs == 0
    # The parent heard the child's events as any other publisher's.
    assert running_got.keys == ['before-fork', 'from-child', 'from-parent',
                                'parent-after'], running_got.keys
    assert later_got.keys == []
    pub.close()
    running.close()
    _say('fork-ok')


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--world', choices=('eventlet', 'native'))
    parser.add_argument('--events', type=int, default=10000)
    parser.add_argument('--rate', type=float, default=2000.0)
    parser.add_argument('--timeout', type=float, default=300.0)
    parser.add_argument('role',
                        choices=('subscriber', 'publisher', 'fork'))
    parser.add_argument('workdir')
    parser.add_argument('urls', nargs='+')
    args = parser.parse_args()
    from df_nats import bridge
    from df_nats.cmd import common
    common.setup_process(servers=args.urls)
    if bridge.is_green() != (args.world == 'eventlet'):
        raise AssertionError('not in the %s world' % args.world)
    globals()['role_' + args.role](args)
    sys.stdout.write('SCENARIO-OK\n')
    sys.stdout.flush()


# -- the parent side: drive workers and the cluster ------------------------


class Worker:
    """One worker process; its stderr goes to WORKDIR/<role>.log."""

    def __init__(self, world, role, workdir, urls, extra=()):
        self.role = role
        self.log_path = os.path.join(workdir, '%s.log' % role)
        cmd = [sys.executable, '-m', 'tests.functional.failover_scenarios',
               '--world=%s' % world] + list(extra) + [role, workdir]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [ROOT, os.environ.get('PYTHONPATH', '')]))
        self._err = open(self.log_path, 'w')
        self.proc = subprocess.Popen(cmd + list(urls), cwd=ROOT, env=env,
                                     text=True, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE,
                                     stderr=self._err)
        self._lines = queue.Queue()
        self.out = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.out.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def expect(self, prefix, timeout=60):
        """The rest of the next ``@@<prefix> ...`` line."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(
                    timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                line = None
            if line is None:
                raise AssertionError('%s: no @@%s line\n%s' % (
                    self.role, prefix, self.stderr_tail()))
            if line.startswith('@@' + prefix):
                return line[len(prefix) + 2:].strip()

    def finish(self, timeout):
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError('%s hung\n%s' % (self.role,
                                                  self.stderr_tail()))
        finally:
            self._err.close()
        time.sleep(0.05)  # let the reader thread see the last lines
        if self.proc.returncode != 0 or not any(
                line.startswith('SCENARIO-OK') for line in self.out):
            raise AssertionError('%s exited %s\n%s' % (
                self.role, self.proc.returncode, self.stderr_tail()))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stderr_tail(self, chars=6000):
        try:
            with open(self.log_path, errors='replace') as f:
                return f.read()[-chars:]
        except OSError:
            return '(no log)'


def run_failover(cluster, world, action, workdir, events=10000, rate=2000.0,
                 break_at=0.3, settle=2.0):
    """Publish under ``action`` on a healthy 3-node ``cluster``.

    The subscriber gets every node's URL; the publisher only the URL of a
    node other than the subscriber's, and must find the others through the
    cluster's announcements. ``break_at`` (a fraction of the sending time)
    is when the node is killed, or the rolling restart begins. Returns the
    raw material for ``account``.
    """
    duration = events / rate
    extra = ['--events', str(events), '--rate', str(rate)]
    sub = Worker(world, 'subscriber', workdir, cluster.urls, extra)
    pub = None
    try:
        sub_node = cluster.node_for(sub.expect('connected'))
        pub_node = [n for n in cluster.nodes if n is not sub_node][0]
        pub = Worker(world, 'publisher', workdir, [pub_node.url], extra)
        assert cluster.node_for(pub.expect('connected')) is pub_node
        time.sleep(1.0)  # the subscription's interest crosses the routes
        with open(os.path.join(workdir, 'go'), 'w'):
            pass
        time.sleep(duration * break_at)
        broken = []
        if action == ROLLING_RESTART:
            for node in cluster.nodes:
                started = time.time()
                node.restart()
                cluster.wait_formed(30)
                broken.append((node.name, started, time.time()))
                time.sleep(0.3)
        else:
            node = sub_node if action == KILL_SUBSCRIBER_NODE else pub_node
            broken.append((node.name, time.time(), None))
            node.kill()
        pub.finish(duration * 4 + 90)
        time.sleep(settle)
        with open(os.path.join(workdir, 'done'), 'w'):
            pass
        sub.finish(60)
    finally:
        for worker in (pub, sub):
            if worker is not None:
                worker.kill()
    with open(os.path.join(workdir, 'pub.json')) as f:
        published = json.load(f)
    with open(os.path.join(workdir, 'sub.json')) as f:
        subscribed = json.load(f)
    return {'world': world, 'action': action, 'broken': broken,
            'sub_node': sub_node.name, 'pub_node': pub_node.name,
            'pub': published, 'sub': subscribed}


def account(run):
    """Sort every event sent into received, covered by a sync, or neither.

    *Received*: the subscriber's callback got it (any number of times is
    counted in ``delivered_twice`` beyond the first). *Covered by a sync*:
    not received, but a ``sync`` callback was delivered at or after the
    moment the event entered ``send_event``; Dragonflow's answer to that
    sync reads the northbound database, which held the event's change
    before it was published. *Neither*: lost silently, a failure. Events
    the driver refused with ``PublishBufferFull`` are counted apart (the
    caller was told) and must be covered like any missing event.
    """
    sent = run['pub']['sent']
    refused = set(run['pub']['refused'])
    log = run['sub']['log']
    syncs = sorted(entry[1] for entry in log if entry[0] == 's')
    seen = {}
    for entry in log:
        if entry[0] == 'e':
            seen[entry[1]] = seen.get(entry[1], 0) + 1
    received = covered = neither = 0
    cover_delays, lost = [], []
    for seq, t_sent in enumerate(sent):
        if seq in seen and seq not in refused:
            received += 1
            continue
        at = bisect.bisect_left(syncs, t_sent)
        if at < len(syncs):
            covered += 1
            cover_delays.append(syncs[at] - t_sent)
        else:
            neither += 1
            lost.append(seq)
    return {
        'sent': len(sent), 'received': received, 'covered_by_sync': covered,
        'neither': neither, 'refused': len(refused),
        'delivered_twice': sum(c - 1 for c in seen.values()),
        'syncs': len(syncs),
        'max_cover_delay': round(max(cover_delays), 3)
        if cover_delays else None,
        'lost_examples': lost[:20],
        'sub_stats': run['sub']['stats'],
    }


def recovery_times(run):
    """Seconds from the kill -9 to the first event received again (the
    first one sent after the kill), and to the first sync after it.
    """
    t_kill = run['broken'][0][1]
    sent = run['pub']['sent']
    first_event = first_sync = None
    for entry in run['sub']['log']:
        if entry[0] == 's':
            if first_sync is None and entry[1] >= t_kill:
                first_sync = entry[1] - t_kill
        elif first_event is None and sent[entry[1]] > t_kill:
            first_event = entry[2] - t_kill
    return first_event, first_sync


if __name__ == '__main__':
    main()
