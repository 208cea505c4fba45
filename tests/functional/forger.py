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

"""A hostile publisher: a raw nats-py client sending prepared messages.

``python -m tests.functional.forger URL FILE [--rate N]`` publishes the
messages listed in FILE, a msgpack array of ``[subject, headers, body,
repeat]`` (headers a map or nil), each ``repeat`` times; in a repeated
message's header values ``{i}`` becomes the repetition's index. With
``--rate`` it paces itself to N messages a second. It uses nothing of
df_nats: it is what anyone allowed to publish on a subject can do. Prints
``forged <count> in <seconds> s, last at <t>`` when every message reached
the server, ``t`` the ``time.monotonic()`` at which the last one was
handed to the client (the clock is the machine's: comparable in another
process).

``--follow SUBJECT`` reads the wire first, as anyone allowed to subscribe
there can: it subscribes to SUBJECT, prints ``listening``, and waits for
the first message with a ``Df-Seq`` header. In the items' header values
``{next}`` then becomes that ``Df-Seq`` with the next number (the one
its publisher is about to use); an item whose headers and body are the
string ``copy`` sends that message again, byte for byte.
"""

import argparse
import asyncio
import sys
import time

import msgpack
import nats


SEQ = 'Df-Seq'


def _messages(items, seen=None):
    for subject, headers, body, repeat in items:
        if headers == 'copy' and body == 'copy':
            headers, body = seen.headers, seen.data
        elif seen is not None and headers:
            publisher_inc, _, n = seen.headers[SEQ].rpartition('.')
            following = '%s.%d' % (publisher_inc, int(n) + 1)
            headers = {k: v.replace('{next}', following)
                       for k, v in headers.items()}
        for i in range(repeat):
            if headers and repeat > 1:
                yield subject, {k: v.replace('{i}', str(i))
                                for k, v in headers.items()}, body
            else:
                yield subject, headers, body


async def _follow(nc, subject):
    """The first message on ``subject`` with a Df-Seq header."""
    first = asyncio.get_running_loop().create_future()

    async def on_message(msg):
        if msg.headers and SEQ in msg.headers and not first.done():
            first.set_result(msg)
    sub = await nc.subscribe(subject, cb=on_message)
    await nc.flush(timeout=10)
    sys.stdout.write('listening\n')
    sys.stdout.flush()
    try:
        return await asyncio.wait_for(first, 60)
    finally:
        await sub.unsubscribe()


async def _forge(url, items, rate, follow=None):
    nc = await nats.connect(url, connect_timeout=5, allow_reconnect=False,
                            pending_size=64 * 1024 * 1024)
    seen = None
    if follow:
        seen = await _follow(nc, follow)
    start = time.monotonic()
    count = 0
    try:
        for subject, headers, body in _messages(items, seen):
            await nc.publish(subject, body, headers=headers or None)
            count += 1
            last = time.monotonic()
            if rate:
                ahead = start + count / rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            elif count % 200 == 0:
                await nc.flush(timeout=30)
        await nc.flush(timeout=60)
    finally:
        await nc.close()
    return count, time.monotonic() - start, last


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('url')
    parser.add_argument('file')
    parser.add_argument('--rate', type=float, default=0.0)
    parser.add_argument('--follow', metavar='SUBJECT')
    args = parser.parse_args()
    with open(args.file, 'rb') as spec:
        items = msgpack.unpackb(spec.read(), raw=False)
    count, seconds, last = asyncio.run(
        _forge(args.url, items, args.rate, args.follow))
    sys.stdout.write('forged %d in %.2f s, last at %.6f\n' % (
        count, seconds, last))
    sys.stdout.flush()


if __name__ == '__main__':
    main()
