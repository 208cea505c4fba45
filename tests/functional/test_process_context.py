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

import nats
import pytest

from tests.functional import test_driver


@pytest.mark.parametrize('world', ['eventlet', 'native'])
def test_events_queued_at_exit_are_sent(nats_server, world, tmp_path):
    async def run():
        nc = await nats.connect(nats_server.url)
        try:
            sub = await nc.subscribe('dragonflow.topic.exit')
            await nc.flush()
            proc = test_driver._start(world, 'events_queued_at_exit',
                                      [nats_server.url], tmp_path,
                                      module='process_scenarios')
            out = await asyncio.to_thread(test_driver._finish, proc, 60)
            assert out.strip() == 'SENT'
            received = 0
            while received < 50000:
                msg = await sub.next_msg(timeout=10)
                # A batch says how many events it holds.
                received += int(msg.headers['Df-Events'].split()[0])
            return received
        finally:
            await nc.close()

    assert asyncio.run(run()) == 50000
