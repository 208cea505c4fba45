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

"""The drain's shortcuts to nats-py's socket, against a real server."""

import asyncio

import nats

from df_nats.transport import messages


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
            messages.write_pending_now(pub_nc)
            assert not pub_nc._pending and not pub_nc._pending_data_size
            msg = await sub.next_msg(timeout=5)
            assert msg.data == b'now'
        finally:
            await pub_nc.close()
            await sub_nc.close()

    asyncio.run(scenario())


def test_message_written_past_publish_reaches_a_subscriber(nats_server):
    # The drain's lone-message shortcut writes HPUB itself to nats-py's
    # socket: the server and a nats-py subscriber must read it as
    # nats-py's publish would have sent it. Fails when nats-py's
    # internals change (no idle writer found).
    async def scenario():
        sub_nc = await nats.connect(nats_server.url)
        pub_nc = await nats.connect(nats_server.url)
        try:
            sub = await sub_nc.subscribe('df-nats-test.hpub')
            await sub_nc.flush()
            await pub_nc.flush()
            writer = messages.idle_writer(pub_nc)
            assert writer is not None, 'no idle writer in nats-py'
            headers = {'Df-Seq': 'pub-1 inc0.7', 'Df-Events': '1 lport'}
            messages.write_message(pub_nc, writer, 'df-nats-test.hpub',
                                   b'\x81\xa1k\xa1v', headers)
            msg = await sub.next_msg(timeout=5)
            assert msg.data == b'\x81\xa1k\xa1v'
            assert dict(msg.headers) == headers
            assert pub_nc.stats['out_msgs'] == 1
            # The connection is still in order: nats-py's own next.
            await pub_nc.publish('df-nats-test.hpub', b'next')
            await pub_nc.flush()
            assert (await sub.next_msg(timeout=5)).data == b'next'
        finally:
            await pub_nc.close()
            await sub_nc.close()

    asyncio.run(scenario())
