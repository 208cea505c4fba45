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

"""No silent loss on a real 3-node cluster, and fork safety, both worlds.

A publisher process sends 10,000 events at a steady rate to a subscriber
process connected to another node, while a node is killed -9 (the
subscriber's, or the publisher's), or while all three nodes are restarted
one at a time. Every event must be received, or covered by a ``sync``
callback delivered after it was sent (the definition is in
``benchmarks/failover_run.account``). Run alone with ``pytest -m
failover``.
"""

import json
import os
import signal
import time

import pytest

from benchmarks import failover_run as fs
from df_nats.testing.worker_process import WorkerProcess
from tests.functional import test_driver
from tests.functional.test_registry import write_config

WORLDS = ['eventlet', 'native']
# Where to append one JSON line per run (the loss accounting), if set.
REPORT = os.environ.get('DF_NATS_FAILOVER_REPORT')

pytestmark = pytest.mark.failover


def _check(run, tmp_path):
    result = fs.account(run)
    line = dict(result, world=run['world'], action=run['action'],
                sub_node=run['sub_node'], pub_node=run['pub_node'])
    print('failover accounting: %s' % json.dumps(line))
    if REPORT:
        with open(REPORT, 'a') as f:
            f.write(json.dumps(line) + '\n')
    assert result['neither'] == 0, (
        'events neither received nor covered by a sync: %s (logs in %s)'
        % (line, tmp_path))
    assert result['delivered_twice'] == 0, line
    assert result['received'] > 0, line
    assert run['pub']['flushed'], run['pub']
    return result


@pytest.mark.parametrize('world', WORLDS)
def test_subscriber_node_lost_caught_up_without_resync(
        world, failover_cluster, tmp_path):
    """The subscriber's node dies (the capture stream's leader elsewhere):
    it reconnects and fetches what it missed from the stream; every
    event arrives once, in order, and Dragonflow is never asked to
    resync.
    """
    run = fs.run_failover(failover_cluster, world, fs.KILL_SUBSCRIBER_NODE,
                          str(tmp_path), events=10000, rate=2000.0)
    result = _check(run, tmp_path)
    assert run['stream_leader'] not in (None, run['sub_node']), run
    stats = run['sub']['stats']
    assert run['sub']['conn_stats'].get('reconnects', 0) >= 1, run['sub']
    assert stats.get('catchup_reconnect', 0) >= 1, stats
    assert stats.get('replays', 0) >= 1, stats
    assert result['syncs'] == 0, result
    assert result['received'] == result['sent'], result
    _assert_in_order(run)


@pytest.mark.parametrize('world', WORLDS)
def test_subscriber_node_lost_without_stream_resyncs(
        world, failover_cluster, tmp_path):
    """With ``replay_stream`` empty, a lost node costs a resync, as
    before replay.
    """
    run = fs.run_failover(failover_cluster, world, fs.KILL_SUBSCRIBER_NODE,
                          str(tmp_path), events=4000, rate=2000.0,
                          replay=False)
    result = _check(run, tmp_path)
    assert result['syncs'] >= 1, result
    assert not run['sub']['stats'].get('replays'), run['sub']['stats']


@pytest.mark.parametrize('world', WORLDS)
def test_publisher_node_lost_no_silent_loss(world, failover_cluster,
                                            tmp_path):
    run = fs.run_failover(failover_cluster, world, fs.KILL_PUBLISHER_NODE,
                          str(tmp_path), events=10000, rate=2000.0)
    _check(run, tmp_path)
    assert run['pub']['conn_stats'].get('reconnects', 0) >= 1, run['pub']
    # It had only the killed node's URL: it failed over to a server it
    # learnt from the cluster.
    assert failover_cluster.node_for(run['pub']['last_url']).name != (
        run['pub_node'])
    # Once back, it marked where its stream stood, so a lost tail would
    # show even if it had stopped publishing.
    assert run['sub']['stats'].get('marks', 0) >= 1, run['sub']
    _assert_in_order(run)


@pytest.mark.parametrize('world', WORLDS)
def test_stream_leader_lost_no_silent_loss(world, failover_cluster,
                                           tmp_path):
    """The subscriber's node leads the capture stream and dies: what
    the stream could not store while it had no leader is either fetched
    later or covered by a resync; nothing is lost silently.
    """
    run = fs.run_failover(failover_cluster, world, fs.KILL_STREAM_LEADER,
                          str(tmp_path), events=10000, rate=2000.0)
    assert run['stream_leader'] == run['sub_node'], run
    _check(run, tmp_path)
    _assert_in_order(run)


def _assert_in_order(run):
    """No event of the publisher delivered after a later one."""
    seqs = [entry[1] for entry in run['sub']['log'] if entry[0] == 'e']
    regressions = [(a, b) for a, b in zip(seqs, seqs[1:]) if b < a]
    assert not regressions, regressions[:10]


@pytest.mark.parametrize('world', WORLDS)
def test_rolling_restart_no_silent_loss(world, failover_cluster, tmp_path):
    run = fs.run_failover(failover_cluster, world, fs.ROLLING_RESTART,
                          str(tmp_path), events=10000, rate=800.0,
                          break_at=0.1)
    _check(run, tmp_path)
    assert run['sub']['conn_stats'].get('reconnects', 0) >= 1
    assert run['pub']['conn_stats'].get('reconnects', 0) >= 1
    # The restarts happened under load, not after it.
    last_restart_done = run['broken'][-1][2]
    assert last_restart_done < run['pub']['sent'][-1], run['broken']


@pytest.mark.parametrize('world', WORLDS)
def test_fork_driver_made_before_fork(world, failover_cluster, tmp_path):
    test_driver._finish(test_driver._start(
        world, 'driver_made_before_fork', failover_cluster.urls, tmp_path,
        module='process_scenarios'))


# -- the publisher closes its own hole (issue 18) ---------------------------

def _node_worker(world, config, role, host, tmp_path):
    return WorkerProcess(
        'tests.functional.node_worker', ['--config', config, role, host],
        world=world, paths=[test_driver.ROOT], cwd=test_driver.ROOT,
        new_session=True,
        log_path=os.path.join(str(tmp_path), '%s-%s.log' % (role, world)))


def _topology_keys(proc):
    return [(m['t'], m['k']) for m in proc.received()
            if m.get('type') == 'topology']


def _wait_for_keys(proc, count, timeout):
    deadline = time.monotonic() + timeout
    while len(_topology_keys(proc)) < count:
        if time.monotonic() > deadline:
            return
        time.sleep(0.05)


def _stats(proc):
    proc.send('stats')
    return proc.expect('stats')['stats']


def _wait_reconnected(proc, cluster, lost, timeout=15.0):
    deadline = time.monotonic() + timeout
    while cluster.node_for(_stats(proc)['server']) in (lost, None):
        assert time.monotonic() < deadline, 'never reconnected'
        time.sleep(0.1)


@pytest.mark.parametrize('world', WORLDS)
def test_publisher_resends_what_its_dead_server_swallowed(
        world, failover_cluster, tmp_path):
    """What a publisher wrote to a server that died before routing it
    reaches the subscribers anyway, in order, once, with no resync.

    The publisher's node is stopped (SIGSTOP: it reads nothing more),
    10 events are written into its socket, and it is killed -9: those
    events are lost deterministically. The publisher reconnects to
    another node and sends them again; the subscriber, on a third node
    that never failed, drops nothing and resyncs nothing.
    """
    pub_node, sub_node = failover_cluster.nodes[0], failover_cluster.nodes[1]
    sub = _node_worker(world, write_config(
        tmp_path, servers=sub_node.url, client_name='df-test-resend-sub'),
        'df-local-controller', 'compute-1', tmp_path)
    pub = _node_worker(world, write_config(
        tmp_path, servers=pub_node.url, client_name='df-test-resend-pub'),
        'neutron-server', 'net-1', tmp_path)
    stopped = False
    try:
        sub.expect('ready')
        pub.expect('ready')
        assert failover_cluster.node_for(_stats(pub)['server']) is pub_node
        time.sleep(1.0)  # the subscription's interest crosses the routes
        pub.send('topology', n=20, first=0)
        assert pub.expect('sent')['sent']
        _wait_for_keys(sub, 20, 10)
        assert len(_topology_keys(sub)) == 20

        os.kill(pub_node.pid, signal.SIGSTOP)
        stopped = True
        # Written to the stopped server's socket, never read by it; its
        # flush cannot complete until the publisher reconnects.
        pub.send('topology', n=10, first=20)
        time.sleep(0.5)
        pub_node.kill()   # well within RESEND_WINDOW of those writes
        stopped = False
        pub.expect('sent', timeout=30)
        _wait_reconnected(pub, failover_cluster, pub_node)
        pub.send('topology', n=10, first=30)
        assert pub.expect('sent')['sent']
        _wait_for_keys(sub, 40, 15)
        time.sleep(1.0)  # late duplicates, if any, would show by now
        sub_stats, pub_stats = _stats(sub), _stats(pub)
        got = _topology_keys(sub)
        syncs = [m for m in sub.received() if m.get('type') == 'sync']
    finally:
        if stopped:
            pub_node.kill()
        for proc in (pub, sub):
            proc.kill()
    figures = {'world': world, 'received': len(got),
               'resent': pub_stats['connection'].get('resent', 0),
               'duplicates': sub_stats['subscriber'].get('duplicates', 0),
               'syncs': sub_stats['subscriber'].get('syncs', 0),
               'gaps': sub_stats['subscriber'].get('gaps', 0)}
    print('resend after a kill: %s' % json.dumps(figures, sort_keys=True))
    # Every event once, in its publisher's order on each topic.
    expected = [(('D', 'T')[i % 2], 'net-1-%d' % i) for i in range(40)]
    assert sorted(got) == sorted(expected), figures
    for topic in ('D', 'T'):
        assert [k for t, k in got if t == topic] == [
            k for t, k in expected if t == topic], got
    assert not syncs and sub_stats['subscriber'].get('syncs', 0) == 0, figures
    assert sub_stats['subscriber'].get('gaps', 0) == 0, figures
    assert pub_stats['connection'].get('reconnects', 0) >= 1, pub_stats
    # The lost ones (at least) went again.
    assert pub_stats['connection'].get('resent', 0) >= 10, figures
