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

"""The transports ``df-nats bench`` compares, and the events they carry.

Every transport gets the same events (``make_events``) and hands each one
to the same callback signature, ``on_event(conn, table, key, action, value,
topic)``, after decoding it with ``df_nats.codec``:

* ``df-nats``: the driver, loaded through stevedore as Dragonflow does;
* ``nats-py``: raw nats-py on the same server, pure asyncio, the same
  subject, body and headers as df-nats puts on the wire;
* ``redis``: redis-py ``PUBLISH`` / ``SUBSCRIBE``, the transport of
  Dragonflow's Redis driver;
* ``zmq``: pyzmq ``PUB`` bound on tcp, ``SUB`` connected to it, multipart
  ``[topic, body]`` as Dragonflow's ZeroMQ driver sends.

Sync publishers (``send``) run in the caller's greenthread or thread; the
nats-py publisher runs whole loops on its own asyncio loop thread.
"""

import asyncio
import collections
import json
import threading
import time
import uuid

from df_nats import codec
from df_nats import pubsub_api
from df_nats import sequence
from df_nats import subjects

TOPIC = str(uuid.uuid5(uuid.NAMESPACE_URL, 'df-nats-bench-tenant'))
SUBJECT_PREFIX = 'dragonflow'
MIN_VALUE = 200
MAX_VALUE = 2000
_TABLES = ('lport', 'lswitch', 'lrouter', 'secgroup', 'floatingip')
_ACTIONS = ('create', 'set', 'delete')


def event_key(seq):
    return str(uuid.uuid5(uuid.NAMESPACE_URL, 'df-nats-bench-%d' % seq))


def make_event(seq):
    """A Dragonflow event whose JSON value is 200..2,000 bytes long."""
    key = event_key(seq)
    size = MIN_VALUE + (seq * 7919) % (MAX_VALUE - MIN_VALUE + 1)
    value = {'id': key, 'topic': TOPIC, 'version': seq,
             'name': 'obj-%d' % seq, 'unique_key': seq,
             'lswitch': 'net-%d' % (seq % 7), 'enabled': True,
             'chassis': 'compute-%d' % (seq % 5), 'extra': ''}
    pad = size - len(json.dumps(value))
    value['extra'] = 'x' * max(pad, 0)
    return pubsub_api.DbUpdate(_TABLES[seq % len(_TABLES)], key,
                               _ACTIONS[seq % len(_ACTIONS)],
                               json.dumps(value), topic=TOPIC)


def make_events(n):
    return [make_event(seq) for seq in range(n)]


def key_index(n):
    """key -> seq of the first ``n`` events."""
    return {event_key(seq): seq for seq in range(n)}


class Unavailable(RuntimeError):
    """A transport's library or server is missing."""


# -- publishers ---------------------------------------------------------------


class DfNatsPublisher:
    is_async = False

    def __init__(self, endpoint):
        from df_nats.cmd import common
        common.setup_process(servers=[endpoint])
        self._pub = common.load_driver().get_publisher()
        self._pub.initialize()
        self.send = self._pub.send_event

    def flush(self):
        self._pub.flush(60)

    def close(self):
        self._pub.close()


class RedisPublisher:
    is_async = False

    def __init__(self, endpoint):
        redis = _import('redis')
        host, port = endpoint.rsplit(':', 1)
        self._client = redis.Redis(host=host, port=int(port))
        self._client.ping()
        self._topic = TOPIC.encode()

    def send(self, update):
        self._client.publish(self._topic,
                             codec.pack_event(update.to_dict()))

    def flush(self):
        pass  # PUBLISH waits for the server's reply

    def close(self):
        self._client.close()


class ZmqPublisher:
    is_async = False

    def __init__(self, endpoint):
        zmq = _import('zmq')
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.PUB)
        self._socket.bind(endpoint)
        self._topic = TOPIC.encode()

    def send(self, update):
        self._socket.send_multipart(
            [self._topic, codec.pack_event(update.to_dict())])

    def flush(self):
        pass  # brokerless: nothing to confirm

    def close(self):
        self._socket.close(linger=1000)
        self._context.term()


class NatsPyPublisher:
    """Raw nats-py; ``run`` executes a coroutine on its loop thread."""

    is_async = True

    def __init__(self, endpoint):
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        self._subject = subjects.topic_subject(SUBJECT_PREFIX, TOPIC)
        self._publisher_id = str(uuid.uuid4())
        self._incarnation = sequence.new_incarnation()
        self._seq = 0
        self._nc = self.run(_nats_connect(endpoint))

    def run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def send(self, update):
        # The headers df-nats sends: labels, publisher and sequence.
        self._seq += 1
        await self._nc.publish(
            self._subject, codec.pack_event(update.to_dict()),
            headers={**codec.event_headers(update.table, update.action),
                     sequence.HEADER_PUBLISHER: self._publisher_id,
                     sequence.HEADER_SEQ: sequence.seq_header(
                         self._incarnation, self._seq)})

    async def flush(self):
        await self._nc.flush(timeout=60)

    def close(self):
        self.run(self._nc.close())


# -- subscribers ----------------------------------------------------------


def _deliver(on_event, conn, data):
    event = codec.unpack_event(data)
    on_event(conn, event['table'], event['key'], event['action'],
             event['value'], event['topic'])


class DfNatsSubscriber:
    """One driver subscriber, with a NATS connection of its own, per conn.

    A real process shares one connection between all its driver
    instances; here each stands for one Dragonflow node.
    """

    def __init__(self, endpoint, on_event):
        from df_nats.cmd import common
        from df_nats import connection
        common.setup_process(servers=[endpoint])
        self._common = common
        self._connection = connection
        self._on_event = on_event
        self._subs = []

    def add(self, conn):
        self._connection._connection = None  # a new connection for each
        sub = self._common.load_driver().get_subscriber()

        def callback(table, key, action, value, topic):
            self._on_event(conn, table, key, action, value, topic)
        sub.initialize(callback)
        sub.register_topic(TOPIC)
        sub.daemonize()
        self._subs.append(sub)


class NatsPySubscriber:
    def __init__(self, endpoint, on_event):
        self._endpoint = endpoint
        self._on_event = on_event
        self._subject = subjects.topic_subject(SUBJECT_PREFIX, TOPIC)
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, daemon=True).start()

    def add(self, conn):
        asyncio.run_coroutine_threadsafe(self._add(conn), self._loop).result()

    async def _add(self, conn):
        nc = await _nats_connect(self._endpoint)
        on_event = self._on_event

        async def handler(msg):
            _deliver(on_event, conn, msg.data)
        await nc.subscribe(self._subject, cb=handler)
        await nc.flush()


class RedisSubscriber:
    """A thread per connection blocked in ``listen()``, as Dragonflow's."""

    def __init__(self, endpoint, on_event):
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

    def __init__(self, endpoint, on_event):
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
              'redis': RedisPublisher, 'zmq': ZmqPublisher}
SUBSCRIBERS = {'df-nats': DfNatsSubscriber, 'nats-py': NatsPySubscriber,
               'redis': RedisSubscriber, 'zmq': ZmqSubscriber}


def _import(name):
    try:
        return __import__(name)
    except ImportError as exc:
        raise Unavailable('%s is not installed (pip install df-nats[bench]):'
                          ' %s' % (name, exc)) from None


async def _nats_connect(url):
    import nats
    return await nats.connect(url, connect_timeout=5)
