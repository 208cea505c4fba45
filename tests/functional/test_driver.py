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

"""The driver on a real nats-server, in an eventlet and a native process.

Each scenario of tests/functional/scenarios.py runs in a subprocess of its
own (monkey-patching is process-global) through world_runner.
"""

import os
import subprocess
import sys

import pytest

WORLDS = ['eventlet', 'native']
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

SCENARIOS = [
    'one_event_intact',
    'loop_wakeup_is_native',
    'register_unregister',
    'callback_replaced',
    'listen_addresses',
    'two_publisher_processes',
    'odd_topic_isolation',
    'concurrent_senders',
    'raising_callback',
    'values',
    'malformed_dropped',
    'close',
    'shared_connection',
]


def _start(world, scenario, urls, tmp_path, debug=False,
           module='scenarios'):
    cmd = [sys.executable, '-m', 'tests.functional.world_runner',
           '--world=%s' % world, '--module=%s' % module, scenario] + list(
               urls)
    if debug:
        cmd.insert(4, '--debug')
    env = dict(os.environ, DF_NATS_TEST_TMP=str(tmp_path),
               PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH',
                                                             ''))
    return subprocess.Popen(cmd, cwd=ROOT, env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def _finish(proc, timeout=120, with_stderr=False):
    """Wait for a scenario; its stdout (and stderr) once it passed."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail('scenario hung; stderr tail:\n%s' % err[-4000:])
    assert proc.returncode == 0 and out.rstrip().endswith('SCENARIO-OK'), (
        'exit %s\nstdout:\n%s\nstderr tail:\n%s'
        % (proc.returncode, out[-2000:], err[-6000:]))
    return (out, err) if with_stderr else out


@pytest.mark.parametrize('world', WORLDS)
@pytest.mark.parametrize('scenario', SCENARIOS)
def test_scenario(world, scenario, nats_server, tmp_path):
    _finish(_start(world, scenario, [nats_server.url], tmp_path))


@pytest.mark.parametrize('world', WORLDS)
def test_hundred_in_order_by_ip_and_by_name(world, nats_url, tmp_path):
    """nats://127.0.0.1 and nats://localhost (name resolution must not go
    through asyncio's green default executor under eventlet).
    """
    _finish(_start(world, 'hundred_in_order', [nats_url], tmp_path))


def _restart_when_asked(proc, server):
    """Kill and restart ``server`` when the scenario asks, then finish."""
    line = proc.stdout.readline()
    if line.strip() != '@@restart-server':
        proc.kill()
        pytest.fail('expected @@restart-server, got %r; stderr:\n%s'
                    % (line, proc.stderr.read()[-4000:]))
    server.kill()
    server.restart()
    proc.stdin.write('done\n')
    proc.stdin.flush()
    _finish(proc)


@pytest.mark.parametrize('world', WORLDS)
def test_sync_after_server_restart(world, fresh_nats_server, tmp_path):
    proc = _start(world, 'sync_on_reconnect', [fresh_nats_server.url],
                  tmp_path)
    _restart_when_asked(proc, fresh_nats_server)


@pytest.mark.parametrize('world', WORLDS)
def test_bad_start_is_clear_and_hides_secrets(world, tmp_path):
    proc = _start(world, 'bad_start', ['nats://127.0.0.1:1'], tmp_path)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-4000:]
    assert 'hunter2' not in out + err


def test_logging_storm_under_eventlet(nats_server, tmp_path):
    """Heavy DEBUG logging from greenthreads and the loop thread at once:
    loop-thread records must never take a green logging lock.
    """
    out = _finish(_start('eventlet', 'logging_storm', [nats_server.url],
                         tmp_path, debug=True), timeout=180)
    assert 'storm:' in out
