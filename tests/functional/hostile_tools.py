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


"""Hostile peers for the tools' tests: a replier and escape sequences.

``Replier`` runs a nats-py client on a thread of its own (its own
asyncio loop) that answers the df-nats service's requests as an
attacker would, for as long as the test needs it.
"""

import asyncio
import json
import threading

import nats

# Eight escape sequences a terminal obeys: cursor up, erase the line,
# clear the screen, cursor home, a window title (OSC 0), a colour, save
# the cursor, a hyperlink (OSC 8).
ESCAPES = ('\x1b[A', '\x1b[2K', '\x1b[2J', '\x1b[H', '\x1b]0;pwned\x07',
           '\x1b[31m', '\x1b7', '\x1b]8;;http://example.invalid\x1b\\')
HOSTILE_TEXT = 'x'.join(ESCAPES) + '\u202e\x9b'


def deep_json(depth=200000) -> bytes:
    """A JSON document nested ``depth`` levels deep."""
    return b'[' * depth + b']' * depth


def fake_stats_reply(service_id, **metadata) -> bytes:
    """A well-formed df-nats STATS reply that no real process sent."""
    meta = {'host': 'neutron-1' + HOSTILE_TEXT, 'pid': '1',
            'process': 'neutron-server' + HOSTILE_TEXT,
            'threads': 'eventlet', 'role': 'publisher',
            'publisher_id': 'f' * 36, 'subject_prefix': 'dragonflow',
            'df_nats_version': '9.9.9' + HOSTILE_TEXT}
    meta.update(metadata)
    return json.dumps({
        'type': 'io.nats.micro.v1.stats_response', 'name': 'df-nats',
        'id': service_id, 'version': '9.9.9', 'metadata': meta,
        'started': '2026-01-01T00:00:00Z',
        'endpoints': [{'name': 'counters', 'subject': 'x',
                       'num_requests': 0, 'num_errors': 0,
                       'processing_time': 0,
                       'average_processing_time': 0,
                       'data': {'connection': {'published': 10 ** 9},
                                'subscriber': {'received': 'many'},
                                'last_error': HOSTILE_TEXT}}]}).encode()


class Replier:
    """Answers ``$SRV.STATS.df-nats`` with ``bodies`` (one reply each).

    ``serve_ids``: instance ids whose ``counters`` endpoint subject this
    client also subscribes to, as a forger that registers a fake
    instance does. ``connect``: nats-py connect keyword arguments.
    """

    def __init__(self, url, bodies, serve_ids=(), **connect):
        self.url = url
        self.bodies = list(bodies)
        self.serve_ids = serve_ids
        self.connect = connect
        self.requests = 0
        self._ready = threading.Event()
        self._stop = None
        self._loop = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        if not self._ready.wait(20):
            raise RuntimeError('the hostile replier did not start')
        return self

    def __exit__(self, *exc):
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(20)

    def _run(self):
        asyncio.run(self._main())

    async def _main(self):
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        nc = await nats.connect(self.url, **self.connect)

        async def on_request(msg):
            self.requests += 1
            for body in self.bodies:
                await nc.publish(msg.reply, body)

        await nc.subscribe('$SRV.STATS.df-nats', cb=on_request)
        for service_id in self.serve_ids:
            await nc.subscribe('$SRV.df-nats.counters.%s' % service_id)
        await nc.flush()
        self._ready.set()
        await self._stop.wait()
        await nc.close()
