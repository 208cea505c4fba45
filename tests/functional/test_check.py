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


"""``df-nats check`` against real servers: the exit status monitoring
systems read, within its timeout.
"""

import json
import subprocess
import sys
import time

from df_nats.testing.embedded_server import free_port
from df_nats.testing.embedded_server import NatsServer
from df_nats.testing.worker_process import child_env
from tests.functional.test_driver import ROOT


def _check(*args, config=None, env=None, timeout=60):
    cmd = [sys.executable, '-m', 'df_nats.cmd.main', 'check'] + list(args)
    if config:
        cmd += ['--config-file', str(config)]
    started = time.monotonic()
    out = subprocess.run(cmd, cwd=ROOT, env=child_env([ROOT], **(env or {})),
                         capture_output=True, text=True, timeout=timeout)
    return out, time.monotonic() - started


def test_a_dead_server_is_a_failure_within_the_timeout():
    port = free_port()   # nothing listens there
    out, took = _check('--servers', 'nats://127.0.0.1:%d' % port)
    assert out.returncode == 2, out.stdout + out.stderr
    assert took < 6.0, took
    lines = out.stdout.splitlines()
    assert lines[0].startswith('OK    config')
    assert lines[1].startswith('FAIL  connect')
    assert lines[-1] == 'df-nats check: CRITICAL (1)'
    # No log line every second on the way.
    assert 'WARNING' not in out.stderr, out.stderr


def test_bad_configuration_is_a_failure_naming_the_option(tmp_path):
    config = tmp_path / 'bad.conf'
    config.write_text('[df_nats]\nservers = nats://127.0.0.1:1\n'
                      'delivery_queue_size = 5\n')
    out, _ = _check('--json', config=config)
    assert out.returncode == 2
    report = json.loads(out.stdout)
    assert report['status'] == 'CRITICAL' and report['exit'] == 2
    [config_check] = report['checks']
    assert config_check['status'] == 'FAIL'
    assert 'delivery_queue_size' in config_check['message']


def test_all_well_on_an_open_server(nats_server):
    for role in ('neutron-server', 'df-local-controller', 'tools'):
        out, _ = _check('--servers', nats_server.url, '--role', role,
                        '--json')
        report = json.loads(out.stdout)
        assert out.returncode == 0, out.stdout
        checks = {c['check']: c for c in report['checks']}
        assert checks['connect']['status'] == 'OK'
        assert checks['jetstream']['status'] == 'OK'
        # The bucket exists once a publisher ran; absent is fine.
        assert checks['registry']['status'] in ('OK', 'INFO')
        assert checks['capture']['status'] == 'INFO'
        assert 'absent' in checks['capture']['message']
        assert checks['permissions']['status'] == 'OK'
        assert role in checks['permissions']['message']


def test_a_capture_stream_is_found_by_its_subject(fresh_nats_server):
    import asyncio

    import nats

    async def add_stream():
        nc = await nats.connect(fresh_nats_server.url)
        await nc.jetstream().add_stream(name='DF_CAPTURE',
                                        subjects=['dragonflow.topic.>'])
        await nc.close()
    asyncio.run(add_stream())
    out, _ = _check('--servers', fresh_nats_server.url)
    assert out.returncode == 0, out.stdout
    line = next(line for line in out.stdout.splitlines()
                if line.startswith('OK    capture'))
    assert 'stream DF_CAPTURE captures dragonflow.topic.>' in line


# A controller that may not subscribe to its topics; a neutron-server
# whose stated permissions lack the listeners' queue group; an operator
# who may not ask the server for its permissions.
_USERS = '''
authorization {
  users = [
    {user: "ctl", password: "ctl-secret", permissions: {
      publish: {allow: ["_INBOX.>", "$SYS.REQ.USER.INFO"]}
      subscribe: {allow: ["_INBOX.>", "$SRV.>"]}
    }}
    {user: "neutron", password: "neutron-secret", permissions: {
      publish: {allow: ["dragonflow.topic.>", "$JS.API.>", "$KV.>",
                        "$SYS.REQ.USER.INFO"]}
      subscribe: {allow: ["_INBOX.>", "$SRV.>"]}
    }}
    {user: "ctl-ok", password: "ok-secret", permissions: {
      publish: {allow: ["_INBOX.>", "dragonflow.listeners"]}
      subscribe: {allow: ["_INBOX.>", "$SRV.>", "dragonflow.topic.>"]}
    }}
  ]
}
'''


def _config(tmp_path, user, password, url):
    # Used with --timeout 15: a loaded machine takes seconds to start.
    config = tmp_path / ('%s.conf' % user)
    config.write_text('[df_nats]\nservers = %s\nuser = %s\npassword = %s\n'
                      % (url, user, password))
    return config


def test_a_missing_permission_is_a_warning(tmp_path):
    with NatsServer(jetstream=True, extra_config=_USERS) as server:
        # Probed: the subscription is refused by the server.
        config = _config(tmp_path, 'ctl', 'ctl-secret', server.url)
        out, _ = _check('--role', 'df-local-controller', '--timeout', '15',
                        config=config)
        assert out.returncode == 1, out.stdout + out.stderr
        assert ('WARN  permission   missing: subscribe'
                ' dragonflow.topic.df-nats-check') in out.stdout
        assert out.stdout.splitlines()[-1].startswith(
            'df-nats check: WARNING')
        assert 'ctl-secret' not in out.stdout + out.stderr
        # Stated by the server: the queue group is not allowed, and no
        # probe joined it.
        config = _config(tmp_path, 'neutron', 'neutron-secret', server.url)
        out, _ = _check('--role', 'neutron-server', '--json', '--timeout',
                        '15', config=config)
        assert out.returncode == 1, out.stdout
        missing = [c['message'] for c in json.loads(out.stdout)['checks']
                   if c['check'] == 'permission']
        assert missing == ['missing: subscribe dragonflow.listeners queue'
                           ' df-listeners (port status (the listeners\''
                           ' queue group))']
        # Not stated (USER.INFO refused): subscriptions probed, the
        # publish to the listeners' subject not checked, said so.
        config = _config(tmp_path, 'ctl-ok', 'ok-secret', server.url)
        out, _ = _check('--role', 'df-local-controller', '--timeout', '15',
                        config=config)
        assert out.returncode == 0, out.stdout
        assert 'not checked: publish dragonflow.listeners' in out.stdout
        assert 'the server did not state them' in out.stdout
