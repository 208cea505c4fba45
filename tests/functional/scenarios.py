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

"""Driver scenarios run by world_runner in an eventlet or a native process.

Each ``scenario_<name>(ctx)`` drives the real driver, loaded through
stevedore, against a real nats-server, and asserts what Dragonflow's own
pub/sub tests check. They cover what an operator meets: one process
publishing and subscribing, processes of the other world, odd topics,
concurrency, failing callbacks and reconnects.
"""

import asyncio
import json
import logging as std_logging
import os
import time

from oslo_config import cfg
from oslo_log import log as logging

from df_nats import errors
from df_nats.loop import natives
from df_nats.pubsub import api
from df_nats.pubsub import process_context
from df_nats.testing import worker_process
from df_nats.transport import connection

LOG = logging.getLogger(__name__)

ODD_TOPICS = ['abc', 'abcd', 'ab', '*', '>', 'a.b', 'a.*', 'a b', ' ',
              '$SYS', 'ünïcødé', '', '=41', 'A', 'D', '\x00\r\n',
              'listener_compute-1.example.org',
              '0b4d8f52-7a2e-4c4c-9c3e-2f0e6f1e5d11']


def event(key, topic='D', value=None, table='lport', action='create'):
    return api.DbUpdate(table, key, action, value, topic=topic)


class Collector:
    """A Dragonflow callback that records what it is given."""

    def __init__(self, fail_every=0):
        self.events = []
        self.syncs = 0
        self.calls = 0
        self._fail_every = fail_every

    def __call__(self, table, key, action, value, topic):
        self.calls += 1
        if action == 'sync':
            self.syncs += 1
        else:
            self.events.append((table, key, action, value, topic))
        if self._fail_every and self.calls % self._fail_every == 0:
            raise RuntimeError('callback failure %d (expected)' % self.calls)

    def keys(self, topic=None):
        return [e[1] for e in self.events if topic is None or e[4] == topic]


def _pubsub(ctx, topics=('D',), callback=None):
    """A started subscriber and an initialized publisher, each its own
    driver instance, as Dragonflow's NbApi builds them.
    """
    callback = callback or Collector()
    sub = ctx.driver().get_subscriber()
    sub.initialize(callback)
    for topic in topics:
        assert sub.register_topic(topic) is True
    sub.daemonize()
    pub = ctx.driver().get_publisher()
    pub.initialize()
    return pub, sub, callback


def scenario_one_event_intact(ctx):
    pub, sub, got = _pubsub(ctx)
    value = json.dumps({'id': 'p1', 'name': 'port', 'ips': ['10.0.0.2']})
    pub.send_event(event('p1', value=value, table='lport', action='set'))
    ctx.wait_until(lambda: got.events, what='the event')
    ctx.settle()
    assert got.events == [('lport', 'p1', 'set', value, 'D')], got.events
    pub.close()
    sub.close()


def scenario_loop_wakeup_is_native(ctx):
    # call_soon_threadsafe's socket pair: never eventlet's wrapper, which
    # the loop thread would otherwise read through.
    loop = process_context.current().bridge.loop
    for sock in (loop._ssock, loop._csock):
        assert type(sock).__module__ == 'socket', type(sock)


def scenario_hundred_in_order(ctx):
    pub, sub, got = _pubsub(ctx)
    for i in range(100):
        pub.send_event(event('k%03d' % i))
    ctx.wait_until(lambda: len(got.events) >= 100, what='100 events')
    ctx.settle()
    assert got.keys() == ['k%03d' % i for i in range(100)], got.keys()
    pub.close()
    sub.close()


def scenario_register_unregister(ctx):
    pub, sub, got = _pubsub(ctx, topics=())
    assert sub.register_topic('probe')
    sub.daemonize()
    assert sub.register_topic('t1') is True       # after daemonize
    assert sub.register_topic('t1') is False      # not new
    assert sub.register_topic(b't1') is False     # bytes: the same topic
    pub.send_event(event('a', topic='t1'))
    pub.send_event(event('b', topic='t2'))
    pub.send_event(event('p1', topic='probe'))
    ctx.wait_until(lambda: 'a' in got.keys() and 'p1' in got.keys())
    ctx.settle()
    assert 'b' not in got.keys(), got.events
    sub.unregister_topic('t1')
    pub.send_event(event('c', topic='t1'))
    pub.send_event(event('p2', topic='probe'))
    ctx.wait_until(lambda: 'p2' in got.keys())
    ctx.settle()
    # NATS keeps order per subject; across subjects only per publisher.
    assert sorted(got.keys()) == ['a', 'p1', 'p2'], got.events
    pub.close()
    sub.close()


def scenario_callback_replaced(ctx):
    first, second = Collector(), Collector()
    pub, sub, _ = _pubsub(ctx, callback=first)
    pub.send_event(event('one'))
    ctx.wait_until(lambda: first.events)
    sub.initialize(second)  # NbApi does this for the neutron listener
    pub.send_event(event('two'))
    ctx.wait_until(lambda: second.events)
    ctx.settle()
    assert first.keys() == ['one'] and second.keys() == ['two']
    pub.close()
    sub.close()


def scenario_listen_addresses(ctx):
    pub, sub, got = _pubsub(ctx)
    assert sub.register_listen_address('tcp://10.0.0.1:8866') is True
    assert sub.register_listen_address('tcp://10.0.0.1:8866') is False
    sub.unregister_listen_address('tcp://10.0.0.1:8866')
    sub.unregister_listen_address('tcp://never-registered:1')
    pub.send_event(event('still-works'))
    ctx.wait_until(lambda: got.events)
    pub.close()
    sub.close()


def _publisher_process(ctx, world, origin, events, topics='D'):
    args = ['--role', 'publisher', '--topics', topics, '--events', events,
            '--origin', origin]
    for url in ctx.urls:
        args += ['--servers', url]
    return worker_process.WorkerProcess('df_nats.cmd.demo_worker', args,
                                        world=world)


def scenario_two_publisher_processes(ctx):
    got = Collector()
    sub = ctx.driver().get_subscriber()
    sub.initialize(got)
    sub.register_topic('D')
    sub.daemonize()
    n = 300
    procs = [_publisher_process(ctx, world, world, n)
             for world in ('eventlet', 'native')]
    for proc in procs:
        assert proc.wait(60) == 0, proc.stderr_text(2000)
        assert proc.expect('summary', timeout=0)['sent'] == n
    ctx.wait_until(lambda: len(got.events) >= 2 * n, timeout=20,
                   what='%d events' % (2 * n))
    ctx.settle()
    assert len(got.events) == 2 * n
    for origin in ('eventlet', 'native'):
        seqs = [json.loads(e[3])['seq'] for e in got.events
                if json.loads(e[3])['origin'] == origin]
        assert seqs == list(range(n)), (origin, seqs[:20])
    sub.close()


def scenario_odd_topic_isolation(ctx):
    subs = {}
    for topic in ODD_TOPICS:
        got = Collector()
        sub = ctx.driver().get_subscriber()
        sub.initialize(got)
        sub.register_topic(topic)
        sub.daemonize()
        subs[topic] = (sub, got)
    pub = ctx.driver().get_publisher()
    pub.initialize()
    for i, topic in enumerate(ODD_TOPICS):
        pub.send_event(event('k%d' % i, topic=topic), topic=topic)
        # bytes, as Dragonflow's publisher encodes topics
        pub.send_event(event('b%d' % i, topic=topic),
                       topic=topic.encode('utf-8'))
    ctx.wait_until(lambda: all(len(g.events) >= 2
                               for _, g in subs.values()),
                   what='every topic')
    ctx.settle()
    for i, topic in enumerate(ODD_TOPICS):
        sub, got = subs[topic]
        assert got.keys() == ['k%d' % i, 'b%d' % i], (topic, got.events)
        sub.close()
    pub.close()


def scenario_concurrent_senders(ctx):
    pub, sub, got = _pubsub(ctx)
    senders, per_sender = 20, 50

    def send(sender):
        for i in range(per_sender):
            pub.send_event(event('%02d-%03d' % (sender, i)))
            if i % 7 == 0:
                time.sleep(0)  # let the others interleave

    handles = [ctx.spawn(send, s) for s in range(senders)]
    for handle in handles:
        ctx.join(handle)
    total = senders * per_sender
    ctx.wait_until(lambda: len(got.events) >= total, what='all events')
    ctx.settle()
    assert len(got.events) == total
    for s in range(senders):
        mine = [k for k in got.keys() if k.startswith('%02d-' % s)]
        assert mine == ['%02d-%03d' % (s, i) for i in range(per_sender)]
    pub.close()
    sub.close()


def scenario_raising_callback(ctx):
    got = Collector(fail_every=2)
    pub, sub, _ = _pubsub(ctx, callback=got)
    for i in range(10):
        pub.send_event(event('k%d' % i))
    ctx.wait_until(lambda: len(got.events) >= 10, what='10 events')
    assert got.keys() == ['k%d' % i for i in range(10)]
    assert sub.stats['callback_errors'] == 5, sub.stats
    assert sub.is_running
    pub.close()
    sub.close()


def scenario_values(ctx):
    pub, sub, got = _pubsub(ctx)
    big = json.dumps({'id': 'big', 'blob': ['x' * 1000] * 200})
    assert len(big) > 200 * 1000
    values = [None, 'ünïcødé ✓ 中文', big, '', json.dumps({'a': None})]
    for i, value in enumerate(values):
        pub.send_event(event('v%d' % i, value=value))
    ctx.wait_until(lambda: len(got.events) >= len(values))
    assert [e[3] for e in got.events] == values
    pub.close()
    sub.close()


def scenario_malformed_dropped(ctx):
    pub, sub, got = _pubsub(ctx)
    pub._send_event(b'\xc1 not msgpack', 'D')
    # An array is a batch: three elements that are not maps, three drops.
    pub._send_event(b'\x93\x01\x02\x03', 'D')
    pub._send_event(b'\x81\xa5table\xa1t', 'D')  # a map missing keys
    pub.send_event(event('good'))
    ctx.wait_until(lambda: got.events, what='the good event')
    ctx.settle()
    assert got.keys() == ['good']
    assert sub.stats['malformed'] == 5, sub.stats
    pub.close()
    sub.close()


def scenario_close(ctx):
    pub, sub, got = _pubsub(ctx)
    assert sub.is_running and sub.is_daemonize()
    sub.close()
    sub.close()
    assert not sub.is_running and not sub.is_daemonize()
    pub.send_event(event('after-close'))
    pub.flush()
    ctx.settle()
    assert got.events == []
    pub.close()
    pub.close()
    try:
        pub.send_event(event('x'))
    except RuntimeError as exc:
        assert 'initialize' in str(exc)
    else:
        raise AssertionError('send_event after close() did not fail')
    # A closed driver pair may start again, as a restarted service would.
    pub2, sub2, got2 = _pubsub(ctx)
    pub2.send_event(event('again'))
    ctx.wait_until(lambda: got2.events)
    pub2.close()
    sub2.close()


def scenario_shared_connection(ctx):
    pub, sub, got = _pubsub(ctx)
    assert pub._conn is sub._conn is process_context.current().connection
    pub.close()
    # the subscriber still holds the connection
    pub2 = ctx.driver().get_publisher()
    pub2.initialize()
    pub2.send_event(event('k'))
    ctx.wait_until(lambda: got.events)
    pub2.close()
    sub.close()


def scenario_sync_on_reconnect(ctx):
    # Without a capture stream: a reconnect is a resync, as before
    # replay (replay_scenarios has the catch-up).
    cfg.CONF.set_override('replay_stream', '', 'df_nats')
    pub, sub, got = _pubsub(ctx)
    pub.send_event(event('before'))
    ctx.wait_until(lambda: got.events)
    assert ctx.ask_parent('restart-server') == 'done'
    ctx.wait_until(lambda: got.syncs == 1, timeout=20, what='a sync')
    pub.send_event(event('after'))
    ctx.wait_until(lambda: 'after' in got.keys(), timeout=10)
    ctx.settle(1.0)
    assert got.syncs == 1 and got.keys() == ['before', 'after'], (
        got.syncs, got.events)
    pub.close()
    sub.close()


def scenario_logging_storm(ctx):
    """DEBUG logging from greenthreads/threads and from the loop thread at
    once, for several seconds; a hang is caught by the runner's timeout.
    """
    log_path = os.path.join(os.environ['DF_NATS_TEST_TMP'], 'storm.log')
    handler = _YieldingFileHandler(log_path)
    std_logging.getLogger().addHandler(handler)
    std_logging.getLogger().setLevel(std_logging.DEBUG)
    pub, sub, got = _pubsub(ctx)
    the_bridge = process_context.current().bridge
    loop_lines = 20000

    nats_logger = std_logging.getLogger('nats.aio.client')

    async def loop_side():
        for i in range(loop_lines):
            # An ordinary call on a df-nats module's logger, on the loop
            # thread: the diverter hands it to the caller's world.
            connection.LOG.debug('loop-side line %d', i)
            if i % 1000 == 0:  # as nats-py itself logs on the loop thread
                nats_logger.debug('nats-side line %d', i)
            if i % 100 == 0:
                await asyncio.sleep(0)

    def caller_side(n):
        for i in range(2000):
            LOG.debug('caller-side %d line %d', n, i)
            pub.send_event(event('%d-%d' % (n, i)))
            if i % 50 == 0:
                time.sleep(0)

    deadline = time.monotonic() + 5.0
    rounds = 0
    while time.monotonic() < deadline:
        the_bridge.call_soon(lambda: the_bridge.loop.create_task(
            loop_side()))
        handles = [ctx.spawn(caller_side, n) for n in range(4)]
        for handle in handles:
            ctx.join(handle)
        rounds += 1
    ctx.wait_until(lambda: len(got.events) >= rounds * 8000, timeout=60,
                   what='all storm events')
    pub.close()
    sub.close()
    handler.flush()
    with open(log_path) as log:
        text = log.read()
    loop_count = text.count('loop-side line')
    assert text.count('caller-side') == rounds * 8000
    # Every loop-side line arrives, even those queued at the end.
    ctx.wait_until(lambda: _count(log_path, 'loop-side line')
                   >= rounds * loop_lines, timeout=30, what='loop lines')
    # Under eventlet every record, the loop thread's included, was emitted
    # by the hub's native thread, where green locks belong.
    main_thread = natives.original('_thread').get_ident()
    assert handler.native_threads == {main_thread}, handler.native_threads
    print('storm: %d rounds, %d loop lines seen before close' % (
        rounds, loop_count))


class _YieldingFileHandler(std_logging.FileHandler):
    """A handler that yields while it holds its lock, as one writing to a
    slow disk or socket does under eventlet: its lock is then contended,
    and a native thread taking it would hit greenlet's "Cannot switch to a
    different thread". It notes the native thread of every emit.
    """

    def __init__(self, path):
        super().__init__(path)
        self.native_threads = set()
        self._native_ident = natives.original('_thread').get_ident

    def emit(self, record):
        self.native_threads.add(self._native_ident())
        super().emit(record)
        time.sleep(0)


def _count(path, needle):
    with open(path) as log:
        return log.read().count(needle)


def scenario_bad_start(ctx):
    """Unreachable NATS and bad options fail at start, clearly, and never
    show the password.
    """
    cfg.CONF.set_override('servers', ['nats://user:hunter2@127.0.0.1:1'],
                          group='df_nats')
    # What every Dragonflow service does at start (at DEBUG): the
    # refused URL was logged with its password (issue 19, item 7).
    cfg.CONF.log_opt_values(LOG, std_logging.DEBUG)
    try:
        ctx.driver().get_publisher().initialize()
    except errors.ConfigError as exc:
        # Credentials belong in user/password, never in a URL.
        assert str(exc).startswith('[df_nats] servers:'), exc
        assert 'hunter2' not in str(exc) and '***@127.0.0.1:1' in str(exc)
    else:
        raise AssertionError('a password in a URL was accepted')
    process_context.renew()  # the options are read again
    cfg.CONF.set_override('servers', ['nats://127.0.0.1:1'], group='df_nats')
    cfg.CONF.set_override('user', 'user', group='df_nats')
    cfg.CONF.set_override('password', 'hunter2', group='df_nats')
    cfg.CONF.set_override('initial_connect_wait', 1.0, group='df_nats')
    try:
        ctx.driver().get_publisher().initialize()
    except errors.ConnectError as exc:
        assert 'initial_connect_wait' in str(exc), exc
        assert 'hunter2' not in str(exc) and '127.0.0.1:1' in str(exc)
    else:
        raise AssertionError('connected to a closed port?')
    process_context.renew()  # the options are read again
    cfg.CONF.set_override('servers', ['redis://127.0.0.1:6379'],
                          group='df_nats')
    try:
        ctx.driver().get_publisher().initialize()
    except errors.ConfigError as exc:
        assert str(exc).startswith('[df_nats] servers:'), exc
    else:
        raise AssertionError('a redis:// URL was accepted')
