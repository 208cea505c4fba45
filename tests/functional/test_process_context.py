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

"""A process's context at its end: events queued are sent at exit."""

import asyncio
import os
import sys

import nats
import pytest

from tests.functional.test_driver import ROOT

_SCRIPT = r'''
import sys
if sys.argv[2] == 'eventlet':
    import eventlet
    eventlet.monkey_patch()
from df_nats.cmd import common
from df_nats import pubsub_api
common.setup_process([sys.argv[1]])
pub = common.load_driver().get_publisher()
pub.initialize()
# Enough that the drain is still going when the script ends: without the
# flush at exit, the eventlet run lost events.
for n in range(50000):
    pub.send_event(pubsub_api.DbUpdate('t', str(n), 'set', '{}',
                                       topic='exit'))
print('SENT', flush=True)
# No flush, no close: the interpreter's exit sends what is queued.
'''


@pytest.mark.parametrize('world', ['eventlet', 'native'])
def test_events_queued_at_exit_are_sent(nats_server, world):
    async def run():
        nc = await nats.connect(nats_server.url)
        try:
            sub = await nc.subscribe('dragonflow.topic.exit')
            await nc.flush()
            env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep
                       + os.environ.get('PYTHONPATH', ''))
            child = await asyncio.create_subprocess_exec(
                sys.executable, '-c', _SCRIPT, nats_server.url, world,
                cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(child.communicate(), 60)
            assert child.returncode == 0, err.decode()[-3000:]
            assert out.decode().strip() == 'SENT'
            received = 0
            while received < 50000:
                msg = await sub.next_msg(timeout=10)
                # A batch says how many events it holds.
                received += int(msg.headers['Df-Events'].split()[0])
            return received
        finally:
            await nc.close()

    assert asyncio.run(run()) == 50000
