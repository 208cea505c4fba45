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

"""A process forked under eventlet that keeps its parent's hub.

The hub's epoll is then shared by parent and children, so each gets the
others' wake-ups. oslo.service replaces the hub in its workers; a program
that does not gets a warning naming the fix, and df-nats still works,
because a doorbell woken with nothing to read waits again.
"""

import os
import subprocess
import sys

import pytest

from tests.functional.test_driver import ROOT

_SCRIPT = r'''
import sys
import eventlet
eventlet.monkey_patch()
import os
import traceback
from df_nats.cmd import common
from df_nats import pubsub_api
common.setup_process([sys.argv[1]])
use_hub = sys.argv[2] == 'use_hub'
parent = common.load_driver().get_publisher()
parent.initialize()
children = []
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            if use_hub:
                eventlet.hubs.use_hub()
            pub = common.load_driver().get_publisher()
            pub.initialize()
            for n in range(200):
                pub.send_event(pubsub_api.DbUpdate('t', str(n), 'set', '{}'))
            assert pub.flush(10)
            pub.close()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    children.append(pid)
for pid in children:
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
parent.send_event(pubsub_api.DbUpdate('t', 'p', 'set', '{}'))
assert parent.flush(10)
parent.close()
print('FORK-OK')
'''


@pytest.mark.parametrize('use_hub', [True, False])
def test_forked_children_under_eventlet(nats_server, use_hub):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep
               + os.environ.get('PYTHONPATH', ''))
    out = subprocess.run(
        [sys.executable, '-c', _SCRIPT, nats_server.url,
         'use_hub' if use_hub else 'keep_hub'],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith('FORK-OK')
    warnings = out.stderr.count("still runs its parent's hub")
    assert warnings == (0 if use_hub else 2), out.stderr[-3000:]
