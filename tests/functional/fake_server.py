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

"""A fake NATS server on 127.0.0.1 that records what clients send it.

It greets every client with an INFO that asks for credentials but leaves
``tls_required`` out, as a downgraded or misconfigured server would, and
answers PING with PONG. Only a test of what a client must never send
uses it; behaviour tests use real nats-servers.
"""

import asyncio
import json
import threading

from df_nats.testing import embedded_server


class PlaintextFakeServer:
    """``with PlaintextFakeServer(port) as fake:`` ... ``fake.received``."""

    def __init__(self, port=None):
        self.port = port or embedded_server.free_port()
        self.connections = 0
        self._chunks = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._server = None
        self._writers = set()  # open client connections (loop thread)
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        daemon=True)

    @property
    def url(self):
        return 'nats://127.0.0.1:%d' % self.port

    @property
    def received(self) -> bytes:
        """Every byte any client sent, in arrival order."""
        with self._lock:
            return b''.join(self._chunks)

    def _info(self):
        return ('INFO %s\r\n' % json.dumps({
            'server_id': 'FAKE', 'server_name': 'fake', 'version': '2.11.0',
            'proto': 1, 'host': '127.0.0.1', 'port': self.port,
            'headers': True, 'auth_required': True,
            'max_payload': 1048576})).encode()

    async def _client(self, reader, writer):
        self._writers.add(writer)
        with self._lock:
            self.connections += 1
        writer.write(self._info())
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                with self._lock:
                    self._chunks.append(data)
                if b'PING' in data:
                    writer.write(b'PONG\r\n')
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def __enter__(self):
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._client, '127.0.0.1', self.port),
            self._loop).result(10)
        return self

    def __exit__(self, *exc):
        async def stop():
            self._server.close()
            for writer in list(self._writers):
                writer.close()  # their readers end, and close nothing more
            await asyncio.sleep(0.05)
            await self._server.wait_closed()
        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
