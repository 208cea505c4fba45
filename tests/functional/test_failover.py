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

import pytest

from benchmarks import failover_run as fs
from tests.functional import test_driver

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
@pytest.mark.parametrize('action', [fs.KILL_SUBSCRIBER_NODE,
                                    fs.KILL_PUBLISHER_NODE])
def test_kill_node_no_silent_loss(world, action, failover_cluster,
                                  tmp_path):
    run = fs.run_failover(failover_cluster, world, action, str(tmp_path),
                          events=10000, rate=2000.0)
    result = _check(run, tmp_path)
    if action == fs.KILL_SUBSCRIBER_NODE:
        # The subscriber lost its server: it reconnected and resynced.
        assert run['sub']['conn_stats'].get('reconnects', 0) >= 1, run['sub']
        assert result['syncs'] >= 1
    else:
        assert run['pub']['conn_stats'].get('reconnects', 0) >= 1, run['pub']
        # It had only the killed node's URL: it failed over to a server
        # it learnt from the cluster.
        assert failover_cluster.node_for(run['pub']['last_url']).name != (
            run['pub_node'])
        # Once back, it marked where its stream stood, so a lost tail
        # would show even if it had stopped publishing.
        assert run['sub']['stats'].get('marks', 0) >= 1, run['sub']


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
