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
``forged <count> in <seconds> s`` when every message reached the server.
"""

import argparse
import asyncio
import sys
import time

import msgpack
import nats


def _messages(items):
    for subject, headers, body, repeat in items:
        for i in range(repeat):
            if headers and repeat > 1:
                yield subject, {k: v.replace('{i}', str(i))
                                for k, v in headers.items()}, body
            else:
                yield subject, headers, body


async def _forge(url, items, rate):
    nc = await nats.connect(url, connect_timeout=5, allow_reconnect=False,
                            pending_size=64 * 1024 * 1024)
    start = time.monotonic()
    count = 0
    try:
        for subject, headers, body in _messages(items):
            await nc.publish(subject, body, headers=headers or None)
            count += 1
            if rate:
                ahead = start + count / rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            elif count % 200 == 0:
                await nc.flush(timeout=30)
        await nc.flush(timeout=60)
    finally:
        await nc.close()
    return count, time.monotonic() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('url')
    parser.add_argument('file')
    parser.add_argument('--rate', type=float, default=0.0)
    args = parser.parse_args()
    with open(args.file, 'rb') as spec:
        items = msgpack.unpackb(spec.read(), raw=False)
    count, seconds = asyncio.run(_forge(args.url, items, args.rate))
    sys.stdout.write('forged %d in %.2f s\n' % (count, seconds))
    sys.stdout.flush()


if __name__ == '__main__':
    main()
