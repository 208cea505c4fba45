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

import os
import queue
import subprocess
import sys
import time

from df_nats.cmd import demo
from tests.functional.test_driver import ROOT


def test_demo_passes():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep
               + os.environ.get('PYTHONPATH', ''))
    out = subprocess.run(
        [sys.executable, '-m', 'df_nats.cmd.main', 'demo', '--events',
         '300'], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120)
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
                        (sub, {'type': 'exit'}),
                        (pub, {'type': 'summary', 'sent': 1})):
        lines.put((worker, msg))
    results = demo._wait_for(lines, 'summary', [pub, sub],
                             time.time() + 5)
    assert results[pub]['sent'] == 1 and results[sub]['received'] == 1
