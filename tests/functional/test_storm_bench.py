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

"""Smoke test of the storm benchmark itself (``python -m benchmarks.storm``)
in both worlds: six subscriber processes forked after the import, one node
killed and restarted after 2 s.

It checks the tool: the report has every field, each subscriber's
events add up (delivered + covered + lost = published), the subscribers
placed on the killed node are those that lost it, and no process
outlives the run; and that its baseline (``--client nats-py``) runs the
same storm with plain nats-py clients. ``test_small_storm_no_resync``
checks the recovery
itself at a small scale: 20 subscriber processes, the publisher's node
killed, no full resync and no silent loss.
"""

import json
import os
import subprocess
import sys

import pytest

from benchmarks import storm_report
from df_nats.testing import worker_process

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
SUBSCRIBERS = 6


def _still_running(pids):
    """Those of ``pids`` that are still a nats-server or a storm worker."""
    alive = []
    for pid in pids:
        try:
            with open('/proc/%d/cmdline' % pid, 'rb') as f:
                cmdline = f.read()
        except OSError:
            continue
        if b'nats-server' in cmdline or b'storm_worker' in cmdline:
            alive.append(pid)
    return alive


def _storm(tmp_path, world, subscribers, case, label, client='df-nats'):
    out = tmp_path / 'out'
    env = worker_process.child_env([REPO])
    proc = subprocess.run(
        [sys.executable, '-m', 'benchmarks.storm', '--subscribers',
         str(subscribers), '--case', case, '--down', '2',
         '--warmup', '2', '--after', '3', '--settle', '1.5',
         '--placement', 'pinned', '--world', world, '--out', str(out),
         '--label', label, '--client', client],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    path = out / ('storm-%s-n%d-%s.json' % (
        label, subscribers, world if client == 'df-nats' else client))
    return proc, out, path, json.loads(path.read_text())


def test_small_storm_no_resync(tmp_path):
    """The publisher's node killed under 20 subscriber processes: the
    publisher resends what it lost, the subscribers of the node catch up
    from the capture stream; none resyncs, none misses an event.
    """
    _, _, _, payload = _storm(tmp_path, 'native', 20, 'publisher-node',
                              'small')
    report = payload['cases']['publisher-node']
    assert report['stream'] == 'DF_NATS_EVENTS'
    assert report['lost_node'] >= 1, report['placement']
    summary = {key: report[key] for key in ('full_syncs', 'silent_loss',
                                            'published', 'delivered',
                                            'killed', 'placement')}
    # On a failure, the subscribers that resynced or missed events, whole.
    summary['troubled'] = [line for line in report['per_subscriber']
                           if line['syncs'] or line['lost']
                           or line['delivered'] != report['published']]
    assert report['full_syncs'] == 0, summary
    assert report['silent_loss'] == 0, summary
    assert report['delivered'] == 20 * report['published'], summary


@pytest.mark.parametrize('world', ['native', 'eventlet'])
def test_storm_bench_smoke(world, tmp_path):
    proc, out, path, payload = _storm(tmp_path, world, SUBSCRIBERS,
                                      'other-node', 'smoke')
    assert not list(out.glob('*.partial.json'))
    assert (out / path.name.replace('.json', '.txt')).read_text().strip() \
        in proc.stdout
    for label, _ in storm_report.ROWS:
        assert label in proc.stdout, label
    assert payload['config']['world'] == world
    assert payload['config']['subscribers'] == SUBSCRIBERS
    assert 'commit' in payload and payload['definitions']
    report = payload['cases']['other-node']
    for field in storm_report.REPORT_FIELDS:
        assert field in report, field
    for field in ('killed_roles', 'rss_before', 'rss_after', 'hwm_after',
                  'children_memory', 'publisher_node', 'stream'):
        assert field in report, field
    # Another plain node: not the publisher's, not the meta leader.
    assert report['killed'] != report['publisher_node']
    assert "publisher's node" not in report['killed_roles']
    assert 'meta leader' not in report['killed_roles']
    assert report['stream'] == 'DF_NATS_EVENTS'
    assert set(report['rss_before']) == {'n1', 'n2', 'n3'}
    assert set(report['rss_after']) == {'n1', 'n2', 'n3'}
    assert all(v > 0 for v in report['rss_after'].values())
    assert report['children_memory']['pss'] > 0
    assert report['child_exits'] == ['0']
    published = report['published']
    # 200 events/s for 2 + 2 + 3 s at least.
    assert published >= 1000, published
    lines = report['per_subscriber']
    assert sorted(line['index'] for line in lines) == list(
        range(SUBSCRIBERS))
    for line in lines:
        assert set(storm_report.SUBSCRIBER_FIELDS) <= set(line)
        assert line['published'] == published
        assert line['delivered'] + line['covered'] + line['lost'] == (
            published), line
        assert line['unknown_events'] == 0
    for key in ('delivered', 'covered'):
        assert report[key] == sum(line[key] for line in lines)
    assert report['silent_loss'] == sum(line['lost'] for line in lines)
    assert report['full_syncs'] == sum(line['syncs'] for line in lines)
    # Pinned round robin: two subscribers a node; those of the killed
    # node lost it and came back elsewhere.
    assert report['placement'] == {'n1': 2, 'n2': 2, 'n3': 2}
    assert report['lost_node'] == 2
    on_killed = [line for line in lines if line['node'] == report['killed']]
    for line in on_killed:
        assert line['reconnects'] >= 1, line
        assert line['last_node'] != report['killed'], line
    assert report['reconnect_after_kill']['n'] == 2
    # The other subscribers kept their node and missed nothing.
    for line in lines:
        if line['node'] != report['killed']:
            assert line['reconnects'] == 0, line
            assert line['delivered'] == published, line
    assert report['latency_before_kill']['n'] > 0
    assert report['caught_up']['n'] + report['never_caught_up'] == (
        SUBSCRIBERS)
    # Nothing it started is left running.
    pids = report['pids']
    assert len(pids['servers']) == 4  # the killed node twice
    assert len(pids['subscribers']) == SUBSCRIBERS
    assert not _still_running(pids['servers'] + pids['workers']
                              + pids['subscribers'])


def test_storm_baseline_smoke(tmp_path):
    """The same storm with plain nats-py clients: the subscribers of the
    killed node reconnect elsewhere with nothing to recover what went by
    (no resync, no stream), the others get every event.
    """
    proc, _, _, payload = _storm(tmp_path, 'native', SUBSCRIBERS,
                                 'other-node', 'baseline', client='nats-py')
    assert 'baseline: plain nats-py, no recovery' in proc.stdout
    assert payload['config']['client'] == 'nats-py'
    report = payload['cases']['other-node']
    assert report['stream'] is None
    assert report['full_syncs'] == 0 and report['replayed'] == 0
    published = report['published']
    assert published >= 1000, published
    lines = report['per_subscriber']
    assert len(lines) == SUBSCRIBERS
    for line in lines:
        assert line['delivered'] + line['lost'] == published, line
        assert line['unknown_events'] == 0 and line['order_regressions'] == 0
        if line['node'] == report['killed']:
            assert line['reconnects'] >= 1, line
            assert line['last_node'] != report['killed'], line
        else:
            assert line['reconnects'] == 0, line
            assert line['delivered'] == published, line
    assert report['lost_node'] == 2
    assert report['latency_before_kill']['n'] > 0
    assert not _still_running(report['pids']['servers']
                              + report['pids']['workers']
                              + report['pids']['subscribers'])
