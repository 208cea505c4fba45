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


def _ensure_capture_stream(url, user=None, password=None, **values):
    """The capture stream as a publisher makes it (``ensure_on_loop``)."""
    import asyncio
    import types

    import nats

    from df_nats.transport import capture_stream

    conf = dict(subject_prefix='dragonflow', replay_stream='DF_NATS_EVENTS',
                replay_max_age=600, replay_max_bytes=1024 ** 3)
    conf.update(values)

    async def ensure():
        nc = await nats.connect(url, user=user, password=password)
        try:
            return await capture_stream.ensure_on_loop(
                nc, types.SimpleNamespace(**conf), 1, 5.0)
        finally:
            await nc.close()
    return asyncio.run(ensure())


def _capture_line(out):
    return next(line for line in out.stdout.splitlines()
                if line[6:].startswith('capture'))


def test_all_well_on_an_open_server(fresh_nats_server):
    url = fresh_nats_server.url
    # No capture stream yet: a warning, catch-up would resync.
    out, _ = _check('--servers', url, '--role', 'df-local-controller')
    assert out.returncode == 1, out.stdout
    line = _capture_line(out)
    assert line.startswith('WARN  capture'), line
    assert 'stream DF_NATS_EVENTS does not exist' in line
    assert 'catch-up falls back to full resyncs' in line
    assert _ensure_capture_stream(url) == 'created'
    for role in ('neutron-server', 'df-local-controller', 'tools'):
        out, _ = _check('--servers', url, '--role', role, '--json')
        report = json.loads(out.stdout)
        assert out.returncode == 0, out.stdout
        checks = {c['check']: c for c in report['checks']}
        assert checks['connect']['status'] == 'OK'
        assert checks['jetstream']['status'] == 'OK'
        # The bucket exists once a publisher ran; absent is fine.
        assert checks['registry']['status'] in ('OK', 'INFO')
        assert checks['capture']['status'] == 'OK'
        assert checks['capture']['message'] == (
            'stream DF_NATS_EVENTS: 0 message(s), 0 bytes; captures'
            ' dragonflow.topic.>, max age 600 s, max bytes 1073741824, 1'
            ' replica(s), direct get allowed')
        assert checks['permissions']['status'] == 'OK'
        assert role in checks['permissions']['message']


def test_capture_stream_settings_that_differ_are_a_warning(
        fresh_nats_server, tmp_path):
    """A stream made with other replay_* settings (another section's):
    each difference named, and so are the options.
    """
    url = fresh_nats_server.url
    assert _ensure_capture_stream(url, replay_max_age=60) == 'created'
    out, _ = _check('--servers', url)
    assert out.returncode == 1, out.stdout
    line = _capture_line(out)
    assert line.startswith('WARN  capture'), line
    assert ('differs from [df_nats]: max age 60 s, [df_nats] replay_max_age'
            ' = 600') in line
    # Replay off: nothing to look up.
    config = tmp_path / 'off.conf'
    config.write_text('[df_nats]\nservers = %s\nreplay_stream =\n' % url)
    out, _ = _check(config=config)
    line = _capture_line(out)
    assert line.startswith('INFO  capture      replay off'), line


def test_no_jetstream_is_a_warning_about_resyncs(nats_server_no_js):
    out, _ = _check('--servers', nats_server_no_js.url, '--role',
                    'df-local-controller')
    assert out.returncode == 1, out.stdout
    assert _capture_line(out) == (
        'WARN  capture      no JetStream: no capture stream DF_NATS_EVENTS;'
        ' catch-up falls back to full resyncs')


def test_another_stream_over_the_topics_is_named(fresh_nats_server):
    """A stream of another name capturing the topics keeps publishers
    from creating the capture stream: the check says which.
    """
    import asyncio

    import nats

    async def add_stream():
        nc = await nats.connect(fresh_nats_server.url)
        await nc.jetstream().add_stream(name='DF_CAPTURE',
                                        subjects=['dragonflow.topic.>'])
        await nc.close()
    asyncio.run(add_stream())
    assert _ensure_capture_stream(fresh_nats_server.url) == 'failed'
    out, _ = _check('--servers', fresh_nats_server.url)
    assert out.returncode == 1, out.stdout
    line = _capture_line(out)
    assert line.startswith('WARN  capture'), line
    assert ('stream DF_NATS_EVENTS does not exist (a publisher creates it'
            ' at its start); stream DF_CAPTURE captures dragonflow.topic.>,'
            ' so it cannot be created; catch-up falls back to full'
            ' resyncs') in line


# A controller that may not subscribe to its topics; a neutron-server
# whose stated permissions lack the listeners' queue group; an operator
# who may not ask the server for its permissions; a controller with the
# permissions of before the capture stream; an administrator (who makes
# the capture stream).
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
      publish: {allow: ["_INBOX.>", "dragonflow.listeners",
                        "$JS.API.STREAM.INFO.DF_NATS_EVENTS",
                        "$JS.API.DIRECT.GET.DF_NATS_EVENTS"]}
      subscribe: {allow: ["_INBOX.>", "$SRV.>", "dragonflow.topic.>"]}
    }}
    {user: "ctl-old", password: "old-secret", permissions: {
      publish: {allow: ["_INBOX.>", "dragonflow.listeners",
                        "$SYS.REQ.USER.INFO"]}
      subscribe: {allow: ["$SRV.>", "dragonflow.topic.>"]}
    }}
    {user: "admin", password: "admin-secret"}
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
        assert _ensure_capture_stream(server.url, 'admin',
                                      'admin-secret') == 'created'
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
        assert _capture_line(out).startswith('OK    capture')
        # The controller's permissions before catch-up by replay: the
        # stream's requests and the inbox of its answers are missing.
        config = _config(tmp_path, 'ctl-old', 'old-secret', server.url)
        out, _ = _check('--role', 'df-local-controller', '--json',
                        '--timeout', '15', config=config)
        assert out.returncode == 1, out.stdout
        checks = json.loads(out.stdout)['checks']
        missing = [c['message'] for c in checks if c['check'] == 'permission']
        assert missing == [
            'missing: subscribe _INBOX.df-nats-check (JetStream replies)']
        # Without an inbox the server's statement cannot come back either.
        [unknown] = [c['message'] for c in checks
                     if c['check'] == 'permissions' and c['status'] == 'INFO']
        assert ('publish $JS.API.STREAM.INFO.DF_NATS_EVENTS (the capture'
                ' stream: its settings and window); publish'
                ' $JS.API.DIRECT.GET.DF_NATS_EVENTS (catch-up: read back'
                ' missed events)') in unknown
        [capture] = [c for c in checks if c['check'] == 'capture']
        assert capture['status'] == 'WARN', capture
        assert capture['message'].startswith(
            'stream DF_NATS_EVENTS not looked up: the server refused'), (
                capture)
