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

"""A failover run: two worker processes, the cluster broken under them,
and the loss accounting.

``run_failover`` (used by tests/functional/test_failover.py and
benchmarks/failover.py) starts, as workers of df_nats/testing/worker.py in one
world, a subscriber and a publisher process on a NatsCluster, and kills or
restarts nodes while the publisher sends. The workers (``python -m
df_nats.testing.worker --world=W benchmarks.failover_run ROLE URL...``):

``subscriber``
    subscribes to one topic and records every callback (event number from
    the event's value, or ``sync``) with the wall-clock time, until the
    ``done`` command; its ``result`` message holds that log.
``publisher``
    on the ``go`` command, sends ``--events`` Dragonflow-sized events at
    ``--rate`` a second, noting when each entered ``send_event`` (and
    which the driver refused with an error); flushes, and says ``result``.

Both say ``connected`` (``url``) once connected.
"""

import argparse
import bisect
import json
import os
import time

from df_nats.cmd import common
from df_nats.cmd import demo_worker
from df_nats import errors
from df_nats.pubsub import process_context
from df_nats.testing import worker
from df_nats.testing import worker_process

# The repository root: where the workers import ``benchmarks`` from.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOPIC = 'failover'
KILL_SUBSCRIBER_NODE = 'kill-subscriber-node'
KILL_PUBLISHER_NODE = 'kill-publisher-node'
# The subscriber's node, made the capture stream's leader first.
KILL_STREAM_LEADER = 'kill-stream-leader'
ROLLING_RESTART = 'rolling-restart'
# account(): a missing event must be covered by a sync within this many
# seconds of events flowing again.
FLOWING_GRACE = 1.0


# -- worker roles (in the child process) ---------------------------------


def _wait_command(kind, timeout):
    command = worker.next_command(timeout)
    if command is None or command['type'] != kind:
        raise AssertionError('expected the %s command within %ss, got %s'
                             % (kind, timeout, command))


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


def _subscriber(args):
    recorder = Recorder()
    sub = common.load_driver().get_subscriber()
    sub.initialize(recorder)
    sub.register_topic(TOPIC)
    sub.daemonize()
    conn = process_context.current().connection
    worker.say('connected', url=conn.connected_url)
    _wait_command('done', args.timeout)
    url = conn.connected_url
    sub.close()
    worker.say('result', log=list(recorder.log), stats=dict(sub.stats),
               conn_stats=dict(conn.stats), last_url=url)


def _publisher(args):
    pub = common.load_driver().get_publisher()
    pub.initialize()
    conn = process_context.current().connection
    worker.say('connected', url=conn.connected_url)
    _wait_command('go', args.timeout)
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
    worker.say('result', sent=sent, refused=refused, flushed=flushed,
               seconds=elapsed, conn_stats=dict(conn.stats), last_url=url)


def main(argv):
    parser = argparse.ArgumentParser(prog='failover_run')
    parser.add_argument('--events', type=int, default=10000)
    parser.add_argument('--rate', type=float, default=2000.0)
    parser.add_argument('--timeout', type=float, default=300.0)
    parser.add_argument('role', choices=('subscriber', 'publisher'))
    parser.add_argument('urls', nargs='+')
    args = parser.parse_args(argv)
    common.setup_process(servers=args.urls)
    {'subscriber': _subscriber, 'publisher': _publisher}[args.role](args)
    return 0


# -- the parent side: drive workers and the cluster ------------------------


def _worker(world, role, workdir, urls, extra, replicas=3, replay=True):
    """One worker process; its stderr goes to WORKDIR/<role>.log.

    The capture stream has ``replicas`` replicas (one per node), or
    there is none (``replay`` false: every loss is a full resync).
    """
    env = {'OS_DF_NATS__REPLAY_REPLICAS': str(replicas)}
    if not replay:
        env['OS_DF_NATS__REPLAY_STREAM'] = ''
    return worker_process.WorkerProcess(
        'benchmarks.failover_run', list(extra) + [role] + list(urls),
        world=world, label=role, paths=[ROOT], env=env,
        log_path=os.path.join(workdir, '%s.log' % role))


def _place_stream_leader(cluster, action, sub_node, pub_node):
    """Put the capture stream's leader where ``action`` wants it: on the
    subscriber's node to kill it there, else off the node killed.
    """
    from benchmarks import storm   # the cluster helpers; heavy imports
    stream = storm.find_stream(cluster, '%s.topic.%s' % ('dragonflow',
                                                         TOPIC),
                               'df_publishers', timeout=30, grace=30)
    if stream is None or stream.startswith('KV_'):
        return None
    deadline = time.monotonic() + 20
    while not (storm.streams(cluster).get(stream) or {}).get('leader'):
        if time.monotonic() > deadline:
            return None
        time.sleep(0.2)
    if action == KILL_STREAM_LEADER:
        avoid = [n.name for n in cluster.nodes if n is not sub_node]
    elif action == KILL_PUBLISHER_NODE:
        avoid = [pub_node.name]
    elif action == KILL_SUBSCRIBER_NODE:
        avoid = [sub_node.name]
    else:
        avoid = []
    return storm.move_stream_leader(cluster, stream, avoid)


def _result(proc, timeout):
    """The worker's ``result``, once it exited cleanly."""
    result = proc.expect('result', timeout)
    if proc.wait(60) != 0:
        raise proc.error('exited %s' % proc.proc.returncode)
    return result


def run_failover(cluster, world, action, workdir, events=10000, rate=2000.0,
                 break_at=0.3, settle=2.0, replay=True):
    """Publish under ``action`` on a healthy 3-node ``cluster``.

    The subscriber gets every node's URL; the publisher only the URL of a
    node other than the subscriber's, and must find the others through the
    cluster's announcements. ``break_at`` (a fraction of the sending time)
    is when the node is killed, or the rolling restart begins. Returns the
    raw material for ``account``; the workers' logs are in ``workdir``.
    """
    duration = events / rate
    extra = ['--events', str(events), '--rate', str(rate)]
    replicas = len(cluster.nodes)
    sub = _worker(world, 'subscriber', workdir, cluster.urls, extra,
                  replicas, replay)
    pub = None
    try:
        sub_node = cluster.node_for(sub.expect('connected')['url'])
        pub_node = [n for n in cluster.nodes if n is not sub_node][0]
        pub = _worker(world, 'publisher', workdir, [pub_node.url], extra,
                      replicas, replay)
        assert cluster.node_for(pub.expect('connected')['url']) is pub_node
        leader = (_place_stream_leader(cluster, action, sub_node, pub_node)
                  if replay else None)
        time.sleep(1.0)  # the subscription's interest crosses the routes
        pub.send('go')
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
            node = pub_node if action == KILL_PUBLISHER_NODE else sub_node
            broken.append((node.name, time.time(), None))
            node.kill()
        published = _result(pub, duration * 4 + 90)
        time.sleep(settle)
        sub.send('done')
        subscribed = _result(sub, 60)
    finally:
        for proc in (pub, sub):
            if proc is not None:
                proc.kill()
    return {'world': world, 'action': action, 'broken': broken,
            'sub_node': sub_node.name, 'pub_node': pub_node.name,
            'stream_leader': leader,
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

    *Late*: covered, but by a sync more than ``FLOWING_GRACE`` seconds
    after events flowed again (a later event reached the callback):
    Dragonflow stayed stale that long. ``cover_after_flow`` is the worst
    such wait, in seconds.
    """
    sent = run['pub']['sent']
    refused = set(run['pub']['refused'])
    log = run['sub']['log']
    syncs = sorted(entry[1] for entry in log if entry[0] == 's')
    seen = {}
    for entry in log:
        if entry[0] == 'e':
            seen[entry[1]] = seen.get(entry[1], 0) + 1
    # flowing[seq]: when the callback first got an event sent after seq.
    first_rx = {}
    for entry in log:
        if entry[0] == 'e' and entry[1] not in first_rx:
            first_rx[entry[1]] = entry[2]
    flowing, earliest = [None] * len(sent), None
    for seq in range(len(sent) - 1, -1, -1):
        flowing[seq] = earliest
        t_rx = first_rx.get(seq)
        if t_rx is not None and (earliest is None or t_rx < earliest):
            earliest = t_rx
    received = covered = neither = late = 0
    cover_delays, after_flow, lost = [], [], []
    for seq, t_sent in enumerate(sent):
        if seq in seen and seq not in refused:
            received += 1
            continue
        at = bisect.bisect_left(syncs, t_sent)
        if at < len(syncs):
            covered += 1
            cover_delays.append(syncs[at] - t_sent)
            if flowing[seq] is not None:
                after_flow.append(syncs[at] - flowing[seq])
                late += after_flow[-1] > FLOWING_GRACE
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
        'late_covers': late,
        'cover_after_flow': round(max(after_flow), 3) if after_flow else None,
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
