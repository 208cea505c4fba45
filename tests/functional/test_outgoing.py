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

"""The drain's write-now shortcut against nats-py and a real server."""

import asyncio

import nats

from df_nats import outgoing


def test_pending_written_at_once_and_delivered(nats_server):
    # The drain's shortcut past nats-py's flusher relies on nats-py's
    # internals: this fails when a release changes them.
    async def scenario():
        sub_nc = await nats.connect(nats_server.url)
        pub_nc = await nats.connect(nats_server.url)
        try:
            sub = await sub_nc.subscribe('df-nats-test.write-now')
            await sub_nc.flush()
            await pub_nc.publish('df-nats-test.write-now', b'now')
            assert pub_nc._pending, 'nats-py wrote without its flusher'
            outgoing.write_pending_now(pub_nc)
            assert not pub_nc._pending and not pub_nc._pending_data_size
            msg = await sub.next_msg(timeout=5)
            assert msg.data == b'now'
        finally:
            await pub_nc.close()
            await sub_nc.close()

    asyncio.run(scenario())
