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

"""The subscriber: NATS subjects to the Dragonflow callback."""

import threading

from df_nats import errors
from df_nats.loop import log
from df_nats.pubsub import api
from df_nats.pubsub import delivery
from df_nats.pubsub import process_context
from df_nats.registry import watch
from df_nats.wire import subjects

LOG = log.get_logger(__name__)


class NatsSubscriber(api.SubscriberApi):
    """Delivers events of registered topics to the Dragonflow callback.

    The callback runs in the caller's world (a greenthread under eventlet, a
    native thread otherwise), one event at a time, in arrival order. After
    a gap in a publisher's sequence numbers it is called with
    ``(None, None, 'sync', None, None)``: events may have been missed and
    Dragonflow answers with a full resync. After the connection comes back
    from an outage, the subscriber first catches up from the capture
    stream: the sync follows only when that cannot prove nothing was
    lost, or at once with ``replay_stream`` empty. Syncs asked for while
    one is still queued are delivered once, and at most one per
    ``resync_interval`` (``resync.ResyncPacer``). Duplicates are dropped.

    Everything received is untrusted: malformed events, forged sequence
    headers and messages beyond ``delivery_queue_size`` bytes are counted
    (``stats``) and dropped, or answered with a catch-up or a resync. The
    receive path itself is ``delivery.Delivery``.

    After a fork, a subscriber inherited from the parent moves to the
    child's own connection on the child's first ``register_topic``,
    ``unregister_topic``, ``daemonize`` or ``run``, followed by a sync.

    With ``[df_nats] listener_queue_group``, every neutron listener topic
    registered here is received through one queue-group subscription of
    the shared listeners subject (see ``subjects``), made for the first
    of them and ended with the last. Sequence numbers are not checked on
    that subject: each member sees only its share of every stream.
    """

    def __init__(self, context=None):
        """``context``: a ``process_context.ProcessContext`` to use rather
        than the process's own (tests); Dragonflow passes none.
        """
        super().__init__()
        self._given_context = context
        # The context daemonize() last joined (kept after close(): a fork
        # then still gives this subscriber fresh process state).
        self._context = None
        # topic bytes -> nats Subscription, _SharedSubscription or None
        self._topics = {}
        self._shared = {}  # subject -> _SharedSubscription
        self._uris = []
        self._conn = None
        self._subjects = None
        self._running = False
        self._stopped = threading.Event()
        self._publisher_feed = None
        self._delivery = delivery.Delivery()
        # The Counter the process service shows (subscriber_joined).
        self.stats = self._delivery.stats

    def initialize(self, callback):
        """Store the callback; a later call replaces it (newest wins)."""
        self._delivery.callback = callback

    # -- listen addresses: no routing meaning with a broker ---------------

    def register_listen_address(self, uri):
        if uri in self._uris:
            return False
        self._uris.append(uri)
        return True

    def unregister_listen_address(self, uri):
        if uri in self._uris:
            self._uris.remove(uri)

    # -- topics -------------------------------------------------------------

    def register_topic(self, topic):
        """Receive ``topic``; True if it was not registered yet."""
        self._check_fork()
        key = subjects.topic_bytes(topic)
        if key in self._topics:
            return False
        LOG.info('df-nats: register topic %r', topic)
        self._topics[key] = None
        if self._running:
            try:
                self._topics[key] = self._subscribe(key)
            except Exception:
                # Refused (SubscribePermissionDenied) or failed: not
                # registered, so that a later call asks the server again.
                del self._topics[key]
                raise
        return True

    def unregister_topic(self, topic):
        """Stop receiving ``topic``."""
        self._check_fork()
        key = subjects.topic_bytes(topic)
        if key not in self._topics:
            LOG.warning('df-nats: topic %r was not registered', topic)
            return
        LOG.info('df-nats: unregister topic %r', topic)
        sub = self._release(self._topics.pop(key))
        if sub is not None:
            self._conn.unsubscribe(sub)

    def _subscribe(self, key):
        subject = self._subjects.subject(key)
        queue = self._subjects.queue_group(subject)
        if queue is None:
            return self._conn.subscribe(subject, self._delivery.on_message)
        shared = self._shared.get(subject)
        if shared is None:
            LOG.info('df-nats: joining queue group %s on %s', queue, subject)
            shared = _SharedSubscription(self._conn.subscribe(
                subject, self._delivery.on_message, queue=queue), subject)
            self._shared[subject] = shared
        shared.topics += 1
        return shared

    def _replay_subjects(self):
        """The subjects a catch-up fetches: the topics', not a queue
        group's (each member gets only a share of those anyway).
        """
        subject_map = self._subjects
        if subject_map is None:
            return []
        subjects = set()
        for key in list(self._topics):
            subject = subject_map.subject(key)
            if subject_map.queue_group(subject) is None:
                subjects.add(subject)
        return sorted(subjects)

    def _unsubscribe_all(self, conn):
        subs = {id(sub): sub for sub in self._topics.values()
                if sub is not None}
        for key in self._topics:
            self._topics[key] = None
        self._shared.clear()
        for sub in subs.values():
            if isinstance(sub, _SharedSubscription):
                sub = sub.subscription
            try:
                conn.unsubscribe(sub)
            except Exception as exc:
                LOG.warning('df-nats: unsubscribing: %s: %s',
                            type(exc).__name__, exc)

    def _release(self, sub):
        """The NATS subscription to end as one topic stops using ``sub``.

        None while other topics still share it (or there is none).
        """
        if not isinstance(sub, _SharedSubscription):
            return sub
        sub.topics -= 1
        if sub.topics > 0:
            return None
        del self._shared[sub.subject]
        return sub.subscription

    # -- lifecycle ------------------------------------------------------------

    def _check_fork(self):
        """Move a subscriber inherited through fork to this process.

        The parent's connection, subscriptions and loop thread are not the
        child's: forget them without touching them. A subscriber that was
        running subscribes again on the child's own connection and asks
        for a resync, since events went by while nobody listened here.
        """
        context = self._context
        if context is None or not context.inherited:
            return
        if self._forget_parent():
            LOG.info('df-nats: subscriber used in a forked process,'
                     ' subscribing again')
            self.daemonize()
            self._delivery.request_sync('fork')

    def _forget_parent(self) -> bool:
        """Drop what the parent process had, without a call on it.

        Returns whether the subscriber was running there.
        """
        self._context = None
        self._stopped = threading.Event()
        self._delivery.reset()
        was_running, self._running = self._running, False
        self._conn = None
        self._delivery.stop()
        self._publisher_feed = None  # the parent's watch, on its loop
        for key in self._topics:
            self._topics[key] = None
        self._shared.clear()
        return was_running

    def daemonize(self):
        """Connect and subscribe every registered topic; returns at once."""
        self._check_fork()
        if self._running:
            return
        if self._delivery.callback is None:
            raise errors.UsageError('df-nats subscriber: initialize(callback)'
                                    ' must come before daemonize()')
        context = self._given_context or process_context.current()
        conn = context.connection
        conn.acquire()
        self._context = context
        self._conn = conn
        self._subjects = subjects.SubjectMap(conn.conf.subject_prefix,
                                             conn.conf.listener_queue_group)
        self._delivery.attach(conn, self._subjects, self._replay_subjects)
        self._shared.clear()  # what a failed daemonize() left behind
        try:
            for key in list(self._topics):
                self._topics[key] = self._subscribe(key)
        except Exception:
            # A refused topic (SubscribePermissionDenied) fails the whole
            # start: end what was subscribed before it.
            self._unsubscribe_all(conn)
            self._conn = None
            self._delivery.stop()
            conn.release()
            raise
        conn.add_listener(self._delivery.reconnected_on_loop)
        conn.add_slow_consumer_listener(self._delivery.slow_consumer_on_loop)
        conn.add_disconnect_listener(self._delivery.disconnected_on_loop)
        conn.service.subscriber_joined(self.stats, self._delivery.gauges)
        self._stopped.clear()
        self._running = True
        self._delivery.start()
        if conn.conf.publisher_events:
            self._publisher_feed = watch.start_publisher_feed(
                conn, self._delivery.on_publisher_event,
                stats=self._delivery.stats)

    def run(self):
        """Receive until ``close()``: ``daemonize`` and wait."""
        self.daemonize()
        self._stopped.wait()

    @property
    def is_running(self):
        return self._running

    def is_daemonize(self):
        """Dragonflow 4.0.0's name for ``is_running``."""
        return self._running

    # -- Dragonflow's database failover hooks -------------------------------
    # Dragonflow defines these on SubscriberAgentBase, not on the
    # SubscriberApi this class derives from, and NbApi calls them on every
    # controller (4.0.0 initialize(), master set_db_change_callback()).
    # They serve the Redis DB driver's HA; reconnecting to NATS and the
    # sync after it are this driver's own business, so they do nothing.

    def set_subscriber_for_failover(self, sub, callback):
        """Dragonflow hook for NB database failover: nothing to do."""

    def register_hamsg_for_db(self):
        """Dragonflow hook for NB database failover: nothing to do."""

    def process_ha(self):
        """Dragonflow hook after an NB database failover: nothing to do."""

    def close(self):
        """Unsubscribe and leave the connection; safe to call twice."""
        context = self._context
        if context is not None and context.inherited:
            # Inherited from the parent: nothing of it is ours to close.
            self._forget_parent()
            return
        if not self._running:
            return
        self._running = False
        conn, self._conn = self._conn, None
        self._delivery.stop()
        conn.remove_listener(self._delivery.reconnected_on_loop)
        conn.remove_listener(self._delivery.slow_consumer_on_loop)
        conn.remove_listener(self._delivery.disconnected_on_loop)
        conn.service.subscriber_left(self.stats)
        feed, self._publisher_feed = self._publisher_feed, None
        if feed is not None:
            feed.stop()
        for key, sub in list(self._topics.items()):
            self._topics[key] = None
            sub = self._release(sub)
            if sub is not None and conn.connected:
                try:
                    conn.unsubscribe(sub)
                except Exception as exc:
                    LOG.warning('df-nats: unsubscribe on close: %s', exc)
        conn.release()
        self._stopped.set()


class _SharedSubscription:
    """One queue-group subscription and the count of topics using it."""

    __slots__ = ('subscription', 'subject', 'topics')

    def __init__(self, subscription, subject):
        self.subscription = subscription
        self.subject = subject
        self.topics = 0
