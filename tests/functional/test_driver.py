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

import json
import os

import pytest

from df_nats.testing.worker_process import WorkerError
from df_nats.testing.worker_process import WorkerProcess

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
    args = ['--module=%s' % module] + (['--debug'] if debug else [])
    return WorkerProcess(
        'tests.functional.world_runner', args + [scenario] + list(urls),
        world=world, label=scenario, paths=[ROOT], cwd=ROOT,
        env={'DF_NATS_TEST_TMP': str(tmp_path)},
        log_path=os.path.join(str(tmp_path),
                              '%s-%s.log' % (scenario, world)))


def _finish(proc, timeout=120, with_stderr=False):
    """Wait for the scenario's end; what it printed (not its messages),
    and with ``with_stderr`` also all it wrote to stderr.
    """
    try:
        code = proc.wait(timeout)
    except WorkerError as exc:
        pytest.fail(str(exc))
    messages = proc.received()
    kinds = [message.get('type') for message in messages]
    assert code == 0 and kinds[-2:] == ['scenario-ok', 'eof'], (
        'exit %s\nmessages:\n%s\nstderr tail:\n%s'
        % (code, messages[-20:], proc.stderr_text()))
    out = '\n'.join(message['text'] for message in messages
                    if message.get('type') == 'text')
    return (out, proc.stderr_text(None)) if with_stderr else out


def _answer(proc, request, timeout=120):
    """Wait until the scenario asks ``request ...``; the rest of it."""
    try:
        asked = proc.expect('ask', timeout)['request']
    except WorkerError as exc:
        pytest.fail(str(exc))
    if asked.split()[0] != request:
        proc.kill()
        pytest.fail('expected %s, got %r; stderr:\n%s'
                    % (request, asked, proc.stderr_text(4000)))
    return asked.split()[1:]


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
    _answer(proc, 'restart-server')
    server.kill()
    server.restart()
    proc.send('answer', answer='done')
    _finish(proc)


@pytest.mark.parametrize('world', WORLDS)
def test_sync_after_server_restart(world, fresh_nats_server, tmp_path):
    proc = _start(world, 'sync_on_reconnect', [fresh_nats_server.url],
                  tmp_path)
    _restart_when_asked(proc, fresh_nats_server)


@pytest.mark.parametrize('world', WORLDS)
def test_bad_start_is_clear_and_hides_secrets(world, tmp_path):
    proc = _start(world, 'bad_start', ['nats://127.0.0.1:1'], tmp_path,
                  debug=True)
    _finish(proc, timeout=60)
    said = json.dumps(proc.received()) + proc.stderr_text(None)
    assert 'df_nats.servers' in said   # the options were logged
    assert 'hunter2' not in said


def test_logging_storm_under_eventlet(nats_server, tmp_path):
    """Heavy DEBUG logging from greenthreads and the loop thread at once:
    loop-thread records must never take a green logging lock.
    """
    out = _finish(_start('eventlet', 'logging_storm', [nats_server.url],
                         tmp_path, debug=True), timeout=180)
    assert 'storm:' in out
