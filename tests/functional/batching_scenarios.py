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

"""Batching scenarios, run by world_runner (``--module=batching_scenarios``).

Events that accumulate in the outbox go out as one message per topic; these
check on a real server, in both worlds, that order and completeness hold,
that malformed elements of a batch cost only themselves, and that the
server's max_payload is never exceeded.
"""

import json
import time

import nats
from oslo_config import cfg

from df_nats import errors
from df_nats.pubsub import api
from df_nats.pubsub import process_context
from df_nats.transport import sender
from df_nats.wire import codec
from tests.functional import scenarios


def _burst(ctx, n, keys, topics=('D', 'E')):
    """``n`` events over ``keys`` keys and ``topics``, tracked per key.

    A key stays on one topic (order holds per topic); the topic changes
    every ``keys / len(topics)`` events, and runs of one topic are what
    goes out as one message.
    """
    got = scenarios.Collector()
    pub, sub, _ = scenarios._pubsub(ctx, topics=topics, callback=got)
    conn = process_context.current().connection
    for i in range(n):
        key = 'k%03d' % (i % keys)
        pub.send_event(api.DbUpdate(
            'lport', key, 'set', json.dumps({'v': i // keys}),
            topic=topics[i % keys * len(topics) // keys]))
    ctx.wait_until(lambda: len(got.events) >= n, timeout=180,
                   what='%d events' % n)
    ctx.settle()
    versions = {}
    for table, key, action, value, topic in got.events:
        versions.setdefault(key, []).append(json.loads(value)['v'])
    per_key = n // keys
    for key, seen in versions.items():
        assert seen == list(range(per_key)), (key, seen[:20])
    assert len(versions) == keys and len(got.events) == n
    assert got.syncs == 0, sub.stats
    return pub, sub, conn


def scenario_burst_in_order(ctx):
    # Thousands at once: they leave in batches and arrive in order.
    pub, sub, conn = _burst(ctx, 20000, keys=100)
    assert conn.stats['messages'] < conn.stats['published'] / 4, conn.stats
    assert sub.stats['malformed'] == 0 and sub.stats['duplicates'] == 0
    pub.close()
    sub.close()


def scenario_burst_no_slow_consumer(ctx):
    # 200,000 events in one process: the drain yields after each batch,
    # so the process reads while it writes and the server never cuts it
    # off as a slow consumer.
    pub, sub, conn = _burst(ctx, 200000, keys=1000)
    assert conn.stats['disconnects'] == 0, conn.stats
    assert conn.stats['errors'] == 0, conn.stats
    pub.close()
    sub.close()


def _raw_client(ctx, conn):
    return conn.bridge.run(nats.connect(ctx.url), timeout=10)


def scenario_malformed_in_batch(ctx):
    pub, sub, got = scenarios._pubsub(ctx)
    conn = process_context.current().connection
    raw = _raw_client(ctx, conn)

    def event(key):
        return codec.pack_event({'table': 'lport', 'key': key,
                                 'action': 'set', 'value': None,
                                 'topic': 'D'})
    batch = codec.batch_body([
        event('a'), b'\x81\x01\x02',        # a map with an int key
        event('b'), b'\xa2\xff\xfe',        # a string that is not UTF-8
        event('c'), b'\x81\xa5table\xa1t',  # a map missing fields
        event('d')])

    async def publish():
        await raw.publish('dragonflow.topic.D', batch)
        await raw.publish('dragonflow.topic.D', b'not msgpack at all')
        await raw.publish('dragonflow.topic.D', event('e'))
        await raw.flush()
        await raw.close()
    conn.bridge.run(publish(), timeout=10)
    ctx.wait_until(lambda: len(got.events) >= 5, what='the good events')
    ctx.settle()
    assert got.keys() == ['a', 'b', 'c', 'd', 'e'], got.events
    assert sub.stats['malformed'] == 4, sub.stats
    assert sub.stats['received'] == 5, sub.stats
    pub.close()
    sub.close()


def scenario_oversized_event_refused(ctx):
    pub, sub, got = scenarios._pubsub(ctx)
    conn = process_context.current().connection
    limit = conn._nc.max_payload
    big = 'x' * (limit + 10)
    try:
        pub.send_event(scenarios.event('big', value=big))
    except errors.EventTooLarge as exc:
        text = str(exc)
        assert 'of %d bytes' % len(codec.pack_event(
            {'table': 'lport', 'key': 'big', 'action': 'create',
             'value': big, 'topic': 'D'})) in text, text
        assert 'max_payload is %d bytes' % limit in text, text
    else:
        raise AssertionError('an event above max_payload was accepted')
    pub.send_event(scenarios.event('after'))
    ctx.wait_until(lambda: got.events, what='the next event')
    assert got.keys() == ['after'] and got.syncs == 0
    pub.close()
    sub.close()


def scenario_small_max_payload(ctx):
    # The server was started with max_payload 8192: batches stay below it
    # (a violation makes the server close the connection), events up to
    # the limit less the header room go alone, larger ones are refused.
    pub, sub, got = scenarios._pubsub(ctx)
    conn = process_context.current().connection
    assert conn._nc.max_payload == 8192
    raw = _raw_client(ctx, conn)
    sizes = []

    async def record(msg):
        sizes.append((len(msg.data), msg.headers))
    conn.bridge.run(raw.subscribe('dragonflow.topic.D', cb=record),
                    timeout=10)
    conn.bridge.run(raw.flush(), timeout=10)
    n = 3000
    for i in range(n):
        pub.send_event(scenarios.event('k%05d' % i))
    alone = 'y' * (8192 - sender.HEADER_ROOM - 100)
    pub.send_event(scenarios.event('alone', value=alone))
    try:
        pub.send_event(scenarios.event('big', value='z' * 8000))
    except errors.EventTooLarge as exc:
        assert 'max_payload is 8192' in str(exc), exc
    else:
        raise AssertionError('an event above max_payload was accepted')
    ctx.wait_until(lambda: len(got.events) >= n + 1, timeout=60,
                   what='%d events' % (n + 1))
    ctx.settle()
    assert got.keys() == ['k%05d' % i for i in range(n)] + ['alone']
    assert conn.stats['disconnects'] == 0 and conn.stats['errors'] == 0, (
        conn.stats)
    assert max(size for size, _ in sizes) <= 8192 - sender.HEADER_ROOM
    counts = [int(h['Df-Events'].split()[0]) for _, h in sizes]
    assert sum(counts) == n + 1 and max(counts) > 1, counts[:50]
    conn.bridge.run(raw.close(), timeout=10)
    pub.close()
    sub.close()


def scenario_linger_gathers_what_trickles_in(ctx):
    # Events 2 ms apart go out one a message without a linger; with
    # publish_linger those published meanwhile leave together, in order,
    # and every one arrives.
    cfg.CONF.set_override('publish_linger', 0.05, group='df_nats')
    pub, sub, got = scenarios._pubsub(ctx)
    conn = process_context.current().connection
    n = 100
    for i in range(n):
        pub.send_event(scenarios.event('k%05d' % i))
        time.sleep(0.002)
    ctx.wait_until(lambda: len(got.events) >= n, timeout=60,
                   what='%d events' % n)
    ctx.settle()
    assert got.keys() == ['k%05d' % i for i in range(n)]
    assert got.syncs == 0, sub.stats
    assert conn.stats['published'] == n, conn.stats
    assert conn.stats['messages'] <= n / 5, conn.stats
    pub.close()
    sub.close()
