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

"""nats_compat's uses of nats-py's internals, against a real server.

Each test fails when a nats-py release changes what it relies on
(tox -e nats-lowest runs them with the oldest nats-py supported).
"""

import asyncio

import nats
from nats import errors as nats_errors

from df_nats.transport import nats_compat


def test_pending_written_at_once_and_delivered(nats_server):
    # The drain's shortcut past nats-py's flusher.
    async def scenario():
        sub_nc = await nats.connect(nats_server.url)
        pub_nc = await nats.connect(nats_server.url)
        try:
            sub = await sub_nc.subscribe('df-nats-test.write-now')
            await sub_nc.flush()
            headers = {'Df-Seq': 'pub-1 inc0.3', 'Df-Events': '1 lport'}
            await pub_nc.publish('df-nats-test.write-now', b'now',
                                 headers=headers)
            assert pub_nc._pending, 'nats-py wrote without its flusher'
            nats_compat.write_pending_now(pub_nc)
            assert not pub_nc._pending and not pub_nc._pending_data_size, (
                'nats-py\'s pending list was not written')
            try:
                msg = await sub.next_msg(timeout=10)
            except nats_errors.TimeoutError:
                raise AssertionError(
                    'written, never delivered: publisher connected %s,'
                    ' pending %s, stats %s; subscriber connected %s' % (
                        pub_nc.is_connected, pub_nc._pending_data_size,
                        pub_nc.stats, sub_nc.is_connected))
            assert msg.data == b'now' and dict(msg.headers) == headers
        finally:
            await pub_nc.close()
            await sub_nc.close()

    asyncio.run(scenario())


def test_message_written_past_publish_reaches_a_subscriber(nats_server):
    # The drain's lone-message shortcut writes HPUB itself to nats-py's
    # socket: the server and a nats-py subscriber must read it as
    # nats-py's publish would have sent it.
    async def scenario():
        sub_nc = await nats.connect(nats_server.url)
        pub_nc = await nats.connect(nats_server.url)
        try:
            sub = await sub_nc.subscribe('df-nats-test.hpub')
            await sub_nc.flush()
            await pub_nc.flush()
            writer = nats_compat.idle_writer(pub_nc)
            assert writer is not None, 'no idle writer in nats-py'
            headers = {'Df-Seq': 'pub-1 inc0.7', 'Df-Events': '1 lport'}
            nats_compat.write_hpub(pub_nc, writer, 'df-nats-test.hpub',
                                   b'\x81\xa1k\xa1v', headers)
            msg = await sub.next_msg(timeout=10)
            assert msg.data == b'\x81\xa1k\xa1v'
            assert dict(msg.headers) == headers
            assert pub_nc.stats['out_msgs'] == 1
            assert pub_nc.stats['out_bytes'] == 5
            # The connection is still in order: nats-py's own next.
            await pub_nc.publish('df-nats-test.hpub', b'next')
            await pub_nc.flush()
            assert (await sub.next_msg(timeout=10)).data == b'next'
        finally:
            await pub_nc.close()
            await sub_nc.close()

    asyncio.run(scenario())


def test_flush_pending_writes_a_queued_subscription(nats_server):
    # Connection._confirm: SUB is queued, not written, until then.
    async def scenario():
        sub_nc = await nats.connect(nats_server.url)
        pub_nc = await nats.connect(nats_server.url)
        try:
            sub = await sub_nc.subscribe('df-nats-test.flush-pending')
            assert sub_nc._pending, 'nats-py wrote SUB without its flusher'
            await nats_compat.flush_pending(sub_nc)
            assert not sub_nc._pending, 'flush_pending left SUB queued'
            await sub_nc.flush()
            await pub_nc.publish('df-nats-test.flush-pending', b'x')
            assert (await sub.next_msg(timeout=10)).data == b'x'
        finally:
            await pub_nc.close()
            await sub_nc.close()

    asyncio.run(scenario())


def test_queued_first_goes_out_before_what_nats_py_held(
        nats_server_no_js):
    # The publisher's resends (sender.Sender.connection_lost_on_loop):
    # queued while disconnected, ahead of what nats-py held, they reach a
    # subscriber first once the publisher is back.
    server = nats_server_no_js

    async def scenario():
        back = asyncio.Event()
        lost = asyncio.Event()

        async def on_sub_back():
            back.set()

        async def on_pub_lost():
            lost.set()
        # The subscriber comes back at once, the publisher seconds later:
        # the subscription is there before the publisher writes.
        sub_nc = await nats.connect(server.url, reconnect_time_wait=0.05,
                                    max_reconnect_attempts=-1,
                                    reconnected_cb=on_sub_back)
        pub_nc = await nats.connect(server.url, reconnect_time_wait=3,
                                    max_reconnect_attempts=-1,
                                    disconnected_cb=on_pub_lost)
        try:
            sub = await sub_nc.subscribe('df-nats-test.first')
            await sub_nc.flush()
            server.kill()
            await asyncio.wait_for(lost.wait(), 10)
            await pub_nc.publish('df-nats-test.first', b'held')
            assert pub_nc._pending, 'nats-py did not hold while disconnected'
            headers = {'Df-Seq': 'pub-1 inc0.4', 'Df-Resent': '1'}
            assert nats_compat.queue_first(
                pub_nc, [('df-nats-test.first', b'again', headers)])
            await asyncio.get_running_loop().run_in_executor(
                None, server.start)
            await asyncio.wait_for(back.wait(), 10)
            await sub_nc.flush()
            assert pub_nc.is_reconnecting, 'the publisher came back first'
            first = await sub.next_msg(timeout=15)
            assert (first.data, dict(first.headers)) == (b'again', headers)
            assert (await sub.next_msg(timeout=10)).data == b'held'
        finally:
            await pub_nc.close()
            await sub_nc.close()

    asyncio.run(scenario())


class _CountingClient(nats_compat.HookedClient):
    def __init__(self):
        super().__init__()
        self.hooked = []

    def before_connect(self):
        self.hooked.append(nats_compat.server_name(self))


def test_hook_runs_before_connect_and_every_reconnect(nats_server_no_js):
    # The TLS guard's check (client.GuardedClient) runs here: nats-py
    # must call the override on the first connect and on each reconnect.
    server = nats_server_no_js
    port = server.url.rsplit(':', 1)[1]

    async def scenario():
        reconnected = asyncio.Event()

        async def on_reconnected():
            reconnected.set()

        nc = _CountingClient()
        await nc.connect(server.url, reconnected_cb=on_reconnected,
                         reconnect_time_wait=0.1, max_reconnect_attempts=-1)
        try:
            assert nc.hooked == ['127.0.0.1:' + port], (
                'nats-py did not call _connect_command on connect')
            assert not nats_compat.is_tls(nc)
            await asyncio.to_thread(server.restart)
            await asyncio.wait_for(reconnected.wait(), 15)
            assert nc.hooked == ['127.0.0.1:' + port] * 2, (
                'nats-py did not call _connect_command on reconnect')
        finally:
            await nc.close()

    asyncio.run(scenario())
