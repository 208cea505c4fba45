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

"""Stand-ins for the connection and the caller's world (no network)."""

import types

from df_nats.transport import outbox


class World:
    """Runs what the subscriber posts to the caller's world at once, or,
    when ``deferred``, when ``run()`` says (as the dispatcher would, later).
    """

    def __init__(self):
        self.deferred = False
        self.posted = []

    def post(self, fn, *args):
        if self.deferred:
            self.posted.append((fn, args))
        else:
            fn(*args)

    def run(self):
        while self.posted:
            fn, args = self.posted.pop(0)
            fn(*args)


class Loop:
    """Keeps the timers set on the loop thread; ``fire(seconds)`` moves
    its clock (``now``) on and runs the timers then due.
    """

    def __init__(self):
        self.now = 0.0
        self.timers = []   # (when, fn, args)

    def call_later(self, delay, fn, *args):
        self.timers.append((self.now + delay, fn, args))

    def fire(self, seconds):
        self.now += seconds
        due = [t for t in self.timers if t[0] <= self.now]
        self.timers = [t for t in self.timers if t[0] > self.now]
        for _, fn, args in due:
            fn(*args)


class Service:
    """What publishers and subscribers tell the process's NATS service."""

    def __init__(self):
        self.publishers = []    # publisher ids, once per publisher
        self.subscribers = []   # the stats of every running subscriber

    def publisher_joined(self, publisher_id):
        self.publishers.append(publisher_id)

    def publisher_left(self, publisher_id):
        self.publishers.remove(publisher_id)

    def subscriber_joined(self, stats, gauges=None):
        self.subscribers.append(stats)

    def subscriber_left(self, stats):
        self.subscribers.remove(stats)


class Sender:
    """Records what publishers ask of the connection's sender."""

    def __init__(self):
        self.queued = []        # (stream, body, label) of every send
        self.marks = []
        self.flushed = []       # the timeout of every flush

    def send(self, stream, body, label=outbox.RAW):
        self.queued.append((stream, body, label))

    def queue_mark_on_loop(self, stream):
        self.marks.append(stream)

    def flush(self, timeout):
        self.flushed.append(timeout)
        return True


class Connection:
    """Records what publishers and subscribers ask of the connection."""

    def __init__(self, conf):
        self.conf = conf
        # call_soon runs on the spot what would run on the loop thread:
        # the test's thread stands for it.
        self.bridge = types.SimpleNamespace(
            world=World(), loop=Loop(), call_soon=lambda fn, *a: fn(*a),
            on_loop_thread=lambda: True)
        self.service = Service()
        self.connected = True
        self.subscribed = []    # (subject, queue) of every SUB
        self.unsubscribed = []  # the same, for every UNSUB
        self.users = 0
        self.listeners = []
        self.slow_listeners = []
        self.lost_listeners = []
        self.sender = Sender()
        self.disconnected_ns = 0

    def acquire(self):
        self.users += 1

    def release(self):
        self.users -= 1

    def subscribe(self, subject, handler, queue=''):
        self.subscribed.append((subject, queue))
        return (subject, queue, len(self.subscribed))

    def unsubscribe(self, sub):
        self.unsubscribed.append(sub[:2])

    def add_listener(self, listener):
        self.listeners.append(listener)

    def remove_listener(self, listener):
        if listener in self.listeners:
            self.listeners.remove(listener)
        for listeners in (self.slow_listeners, self.lost_listeners):
            if listener in listeners:
                listeners.remove(listener)

    def add_slow_consumer_listener(self, listener):
        self.slow_listeners.append(listener)

    def add_disconnect_listener(self, listener):
        self.lost_listeners.append(listener)
