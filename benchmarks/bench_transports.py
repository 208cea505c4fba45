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

"""The transports the bench compares, and the events they carry.

Every transport gets the same events (``make_events``: plain dicts with
Dragonflow's five event fields) and hands each one to the same callback,
``on_event(conn, table, key, action, value, topic)``:

* ``df-nats``: the driver, loaded through stevedore as Dragonflow does,
  used only through its public API (``send_event``, the subscriber
  callback), so that the bench keeps measuring whatever the runtime does;
* ``nats-py``: **plain** nats-py as a user would write it, the baseline:
  pure asyncio, ``msgpack.packb(update_dict)`` as the body, no headers, one
  event per message;
* ``nats-py-headers``: the same with the four headers df-nats put on every
  event until its batching (``Df-Table``, ``Df-Action``, ``Df-Publisher``,
  ``Df-Seq``), built here with their values as df-nats wrote them; for
  comparison only;
* ``redis``: redis-py ``PUBLISH`` / ``SUBSCRIBE``, the transport of
  Dragonflow's Redis driver;
* ``zmq``: pyzmq ``PUB`` bound on tcp, ``SUB`` connected to it, multipart
  ``[topic, body]`` as Dragonflow's ZeroMQ driver sends.

The baselines pack with ``msgpack.packb`` and unpack with
``msgpack.unpackb``, as Dragonflow's own drivers do; nothing of df-nats
(codec, subjects, sequence numbers) is on their path, so that they carry
none of its costs.

Sync publishers (``send``) run in the caller's greenthread or thread; the
nats-py publisher runs whole loops on its own asyncio loop thread, which a
nats-py subscriber of the same process shares (one asyncio program with a
connection for each side).
"""

import asyncio
import collections
import json
import secrets
import threading
import time
import uuid

import msgpack

TOPIC = str(uuid.uuid5(uuid.NAMESPACE_URL, 'df-nats-bench-tenant'))
# The subject of the nats-py baselines: the shape df-nats uses, written out.
RAW_SUBJECT = 'dragonflow.topic.' + TOPIC
# The JSON value of an event is MIN_VALUE..MAX_VALUE bytes: packed, a
# Dragonflow-sized event of ~470 bytes on average.
MIN_VALUE = 200
MAX_VALUE = 500
_TABLES = ('lport', 'lswitch', 'lrouter', 'secgroup', 'floatingip')
_ACTIONS = ('create', 'set', 'delete')


def event_key(seq):
    return str(uuid.uuid5(uuid.NAMESPACE_URL, 'df-nats-bench-%d' % seq))


def make_event(seq):
    """A Dragonflow event as a dict (``DbUpdate.to_dict()``'s fields)."""
    key = event_key(seq)
    size = MIN_VALUE + (seq * 7919) % (MAX_VALUE - MIN_VALUE + 1)
    value = {'id': key, 'topic': TOPIC, 'version': seq,
             'name': 'obj-%d' % seq, 'unique_key': seq,
             'lswitch': 'net-%d' % (seq % 7), 'enabled': True,
             'chassis': 'compute-%d' % (seq % 5), 'extra': ''}
    pad = size - len(json.dumps(value))
    value['extra'] = 'x' * max(pad, 0)
    return {'table': _TABLES[seq % len(_TABLES)], 'key': key,
            'action': _ACTIONS[seq % len(_ACTIONS)],
            'value': json.dumps(value), 'topic': TOPIC}


def make_events(n):
    return [make_event(seq) for seq in range(n)]


def mean_packed_size(events):
    """Average bytes of an event packed as the baselines pack it."""
    return sum(len(msgpack.packb(e)) for e in events) / max(len(events), 1)


def key_index(n):
    """key -> seq of the first ``n`` events."""
    return {event_key(seq): seq for seq in range(n)}


class Unavailable(RuntimeError):
    """A transport's library or server is missing."""


class _Publisher:
    """What every publisher offers: ``prepare`` then ``send`` each item."""

    is_async = False

    def prepare(self, events):
        """The objects ``send`` takes, built from event dicts, off the clock.
        """
        return events

    def flush(self):
        pass

    def close(self):
        pass


# -- publishers ---------------------------------------------------------------


class DfNatsPublisher(_Publisher):
    """The driver's publisher: ``send_event(DbUpdate)``."""

    def __init__(self, endpoint):
        from df_nats.cmd import common
        common.setup_process(servers=[endpoint])
        self._pub = common.load_driver().get_publisher()
        self._pub.initialize()
        self.send = self._pub.send_event

    def prepare(self, events):
        from df_nats.pubsub import api
        return [api.DbUpdate(e['table'], e['key'], e['action'],
                             e['value'], topic=e['topic'])
                for e in events]

    def flush(self):
        self._pub.flush(60)

    def close(self):
        self._pub.close()


class RedisPublisher(_Publisher):
    def __init__(self, endpoint):
        redis = _import('redis')
        host, port = endpoint.rsplit(':', 1)
        self._client = redis.Redis(host=host, port=int(port))
        self._client.ping()
        self._topic = TOPIC.encode()

    def send(self, update):
        # PUBLISH waits for the server's reply: nothing to flush.
        self._client.publish(self._topic, msgpack.packb(update))

    def close(self):
        self._client.close()


class ZmqPublisher(_Publisher):
    def __init__(self, endpoint):
        zmq = _import('zmq')
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.PUB)
        self._socket.bind(endpoint)
        self._topic = TOPIC.encode()

    def send(self, update):
        # Brokerless: nothing to flush or confirm.
        self._socket.send_multipart([self._topic, msgpack.packb(update)])

    def close(self):
        self._socket.close(linger=1000)
        self._context.term()


class _LoopThread:
    """An asyncio loop running on a daemon thread of its own."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()


class NatsPyPublisher(_Publisher):
    """Plain nats-py: a msgpack body, no headers, one event a message.

    ``run`` executes a coroutine on its loop thread.
    """

    is_async = True

    def __init__(self, endpoint):
        self.loop_thread = _LoopThread()
        self.run = self.loop_thread.run
        self._nc = self.run(_nats_connect(endpoint))

    async def send(self, update):
        await self._nc.publish(RAW_SUBJECT, msgpack.packb(update))

    async def flush(self):
        await self._nc.flush(timeout=60)

    def close(self):
        self.run(self._nc.close())


class NatsPyHeadersPublisher(NatsPyPublisher):
    """nats-py with the four headers df-nats sent on every event.

    Values as df-nats wrote them: table, action, a publisher UUID and
    ``<incarnation>.<n>``.
    """

    def __init__(self, endpoint):
        super().__init__(endpoint)
        self._publisher_id = str(uuid.uuid4())
        self._incarnation = secrets.token_hex(4)
        self._seq = 0

    async def send(self, update):
        self._seq += 1
        await self._nc.publish(
            RAW_SUBJECT, msgpack.packb(update),
            headers={'Df-Table': update['table'],
                     'Df-Action': update['action'],
                     'Df-Publisher': self._publisher_id,
                     'Df-Seq': '%s.%d' % (self._incarnation, self._seq)})


# -- subscribers ----------------------------------------------------------


def _deliver(on_event, conn, data):
    event = msgpack.unpackb(data)
    on_event(conn, event['table'], event['key'], event['action'],
             event['value'], event['topic'])


class DfNatsSubscriber:
    """Driver subscribers, through the public API only.

    Across processes (no ``publisher``) each ``add`` is a driver instance
    with a NATS connection of its own, as if each were a compute node (a
    real process shares one connection between its driver instances). In
    one process with a df-nats publisher, the subscriber joins that
    process's connection, as Dragonflow's services do.
    """

    def __init__(self, endpoint, on_event, publisher=None):
        from df_nats.cmd import common
        if publisher is None:
            common.setup_process(servers=[endpoint])
        self._common = common
        self._own_connection = publisher is None
        self._on_event = on_event
        self._subs = []

    def add(self, conn):
        if self._own_connection and self._subs:
            _forget_df_nats_connection()
        sub = self._common.load_driver().get_subscriber()

        def callback(table, key, action, value, topic):
            self._on_event(conn, table, key, action, value, topic)
        sub.initialize(callback)
        sub.register_topic(TOPIC)
        sub.daemonize()
        self._subs.append(sub)


def _forget_df_nats_connection():
    """Make the next driver instance open a NATS connection of its own.

    df-nats shares one connection per process; the bench gives the process
    a new context (the instances made before keep theirs).
    """
    from df_nats.pubsub import process_context
    process_context.renew()


class NatsPySubscriber:
    """Plain nats-py subscriptions, each on a connection of its own."""

    def __init__(self, endpoint, on_event, publisher=None):
        self._endpoint = endpoint
        self._on_event = on_event
        loop_thread = getattr(publisher, 'loop_thread', None)
        self._loop_thread = loop_thread or _LoopThread()

    def add(self, conn):
        self._loop_thread.run(self._add(conn))

    async def _add(self, conn):
        nc = await _nats_connect(self._endpoint)
        on_event = self._on_event

        async def handler(msg):
            event = msgpack.unpackb(msg.data)
            on_event(conn, event['table'], event['key'], event['action'],
                     event['value'], event['topic'])
        await nc.subscribe(RAW_SUBJECT, cb=handler)
        await nc.flush()


class RedisSubscriber:
    """A thread per connection blocked in ``listen()``, as Dragonflow's."""

    def __init__(self, endpoint, on_event, publisher=None):
        self._redis = _import('redis')
        self._host, port = endpoint.rsplit(':', 1)
        self._port = int(port)
        self._on_event = on_event
        self._clients = []  # a collected client closes its connections

    def add(self, conn):
        client = self._redis.Redis(host=self._host, port=self._port)
        pubsub = client.pubsub()
        self._clients.append((client, pubsub))
        pubsub.subscribe(TOPIC.encode())
        # Wait for the confirmation so that no event is sent before.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            reply = pubsub.get_message(timeout=1)
            if reply and reply['type'] == 'subscribe':
                break
        threading.Thread(target=self._listen, args=(conn, pubsub),
                         daemon=True).start()

    def _listen(self, conn, pubsub):
        for item in pubsub.listen():
            if item['type'] == 'message':
                _deliver(self._on_event, conn, item['data'])


class ZmqSubscriber:
    """SUB sockets connected to the publisher, read by one poller thread."""

    def __init__(self, endpoint, on_event, publisher=None):
        self._zmq = _import('zmq')
        self._endpoint = endpoint
        self._on_event = on_event
        self._context = self._zmq.Context()
        self._poller = self._zmq.Poller()
        self._sockets = {}
        self._new = collections.deque()
        threading.Thread(target=self._poll, daemon=True).start()

    def add(self, conn):
        sock = self._context.socket(self._zmq.SUB)
        sock.connect(self._endpoint)
        sock.setsockopt(self._zmq.SUBSCRIBE, TOPIC.encode())
        self._new.append((sock, conn))  # the poller thread owns sockets

    def _poll(self):
        while True:
            while self._new:
                sock, conn = self._new.popleft()
                self._sockets[sock] = conn
                self._poller.register(sock, self._zmq.POLLIN)
            for sock, _ in self._poller.poll(20):
                conn = self._sockets[sock]
                while True:
                    try:
                        _, data = sock.recv_multipart(self._zmq.NOBLOCK)
                    except self._zmq.Again:
                        break
                    _deliver(self._on_event, conn, data)


PUBLISHERS = {'df-nats': DfNatsPublisher, 'nats-py': NatsPyPublisher,
              'nats-py-headers': NatsPyHeadersPublisher,
              'redis': RedisPublisher, 'zmq': ZmqPublisher}
SUBSCRIBERS = {'df-nats': DfNatsSubscriber, 'nats-py': NatsPySubscriber,
               'nats-py-headers': NatsPySubscriber,
               'redis': RedisSubscriber, 'zmq': ZmqSubscriber}


def _import(name):
    try:
        return __import__(name)
    except ImportError as exc:
        raise Unavailable('%s is not installed (pip install -r'
                          ' benchmarks/requirements.txt): %s' % (name, exc)
                          ) from None


async def _nats_connect(url):
    import nats
    return await nats.connect(url, connect_timeout=5)
