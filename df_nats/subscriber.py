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

import collections
import threading

from df_nats import codec
from df_nats import errors
from df_nats import loop_logging
from df_nats import process_context
from df_nats import pubsub_api
from df_nats import registry_watch
from df_nats import resync
from df_nats import sequence
from df_nats import subjects

LOG = loop_logging.get_logger(__name__)

# Characters of an untrusted header value quoted in a log line.
_SHOWN = 64
# Bytes counted for a message besides its body and header values.
_MESSAGE_OVERHEAD = 64

# Verdicts of the sequence tracker (besides NEXT and UNTRACKED, the
# common ones) -> (whether the message is delivered, the resync reason
# or None, the stats counter).
_VERDICTS = {
    sequence.FIRST: (True, None, None),
    sequence.GAP: (True, 'gap', None),
    sequence.LATE: (True, None, 'late'),
    sequence.JUMP: (True, 'implausible sequence number', 'jumps'),
    sequence.RESET: (True, 'sequence re-baseline', 'rebaselines'),
    sequence.BAD_HEADER: (True, None, 'bad_headers'),
    sequence.REFUSED: (True, None, 'untracked_streams'),
    sequence.DUPLICATE: (False, None, 'duplicates'),
    sequence.MARK: (False, None, None),
}
# Verdicts logged (throttled, each on its own) besides being counted.
_LOGGED_VERDICTS = (sequence.DUPLICATE, sequence.JUMP, sequence.RESET,
                    sequence.BAD_HEADER)


class NatsSubscriber(pubsub_api.SubscriberApi):
    """Delivers events of registered topics to the Dragonflow callback.

    The callback runs in the caller's world (a greenthread under eventlet, a
    native thread otherwise), one event at a time, in arrival order. After
    the connection comes back from an outage, and after a gap in a
    publisher's sequence numbers, it is called with
    ``(None, None, 'sync', None, None)``: events may have been missed and
    Dragonflow answers with a full resync. Syncs asked for while one is
    still queued are delivered once, and at most one per
    ``resync_interval`` (``resync.ResyncPacer``). Duplicates are dropped.

    Everything received is untrusted: events of the wrong types, control
    actions and forged sequence headers are counted and dropped or
    tracked harmlessly (``codec``, ``sequence``), and messages wait for
    the callback in a queue of at most ``delivery_queue_size`` bytes;
    what overflows it is dropped, counted and followed by a resync.

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
        self._callback = None
        # topic bytes -> nats Subscription, _SharedSubscription or None
        self._topics = {}
        self._shared = {}  # subject -> _SharedSubscription
        self._uris = []
        self._conn = None
        self._subjects = None
        self._running = False
        self._stopped = threading.Event()
        self._publisher_feed = None
        # Malformed messages and gaps are all counted, and logged at most
        # once a second each.
        self._malformed_warning = loop_logging.Throttled(LOG)
        self._gap_warning = loop_logging.Throttled(LOG)
        self._tracker = sequence.SequenceTracker()
        self._pacer = resync.ResyncPacer(0.0)
        self._sync_reasons = set()
        # Duplicates, unbelievable numbers, unreadable headers and a full
        # delivery queue: each kind logged at most once a second.
        self._odd_warnings = {kind: loop_logging.Throttled(LOG)
                              for kind in _LOGGED_VERDICTS + ('overflow',)}
        # The delivery queue's bytes: added on the loop thread, taken off
        # in the caller's world; each counter has one writer.
        self._queue_limit = 0
        self._queued_in = 0
        self._queued_out = 0
        self._overflow_loop = 0       # messages dropped (loop thread)
        self._overflow_counted = 0    # of those, in stats (caller's world)
        self._overflow_noted = False
        self.stats = collections.Counter()

    def initialize(self, callback):
        """Store the callback; a later call replaces it (newest wins)."""
        self._callback = callback

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
            return self._conn.subscribe(subject, self._on_message)
        shared = self._shared.get(subject)
        if shared is None:
            LOG.info('df-nats: joining queue group %s on %s', queue, subject)
            shared = _SharedSubscription(self._conn.subscribe(
                subject, self._on_message, queue=queue), subject)
            self._shared[subject] = shared
        shared.topics += 1
        return shared

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
            self._request_sync('fork')

    def _forget_parent(self) -> bool:
        """Drop what the parent process had, without a call on it.

        Returns whether the subscriber was running there.
        """
        self._context = None
        self._stopped = threading.Event()
        self._reset_delivery_state()
        was_running, self._running = self._running, False
        self._conn = None
        self._publisher_feed = None  # the parent's watch, on its loop
        for key in self._topics:
            self._topics[key] = None
        self._shared.clear()
        return was_running

    def _reset_delivery_state(self):
        """Forget what the parent had queued and asked for (after fork).

        Its posted calls never run here: their bytes would stay counted.
        """
        self._pacer.reset()
        self._queued_in = self._queued_out = 0
        self._overflow_loop = self._overflow_counted = 0
        self._overflow_noted = False

    def daemonize(self):
        """Connect and subscribe every registered topic; returns at once."""
        self._check_fork()
        if self._running:
            return
        if self._callback is None:
            raise errors.UsageError('df-nats subscriber: initialize(callback)'
                                    ' must come before daemonize()')
        context = self._given_context or process_context.current()
        conn = context.connection
        conn.acquire()
        self._context = context
        self._conn = conn
        self._subjects = subjects.SubjectMap(conn.conf.subject_prefix,
                                             conn.conf.listener_queue_group)
        self._tracker.max_streams = conn.conf.sequence_streams
        self._pacer.interval = conn.conf.resync_interval
        self._pacer.reset()
        self._queue_limit = conn.conf.delivery_queue_size
        self._shared.clear()  # what a failed daemonize() left behind
        try:
            for key in list(self._topics):
                self._topics[key] = self._subscribe(key)
        except Exception:
            # A refused topic (SubscribePermissionDenied) fails the whole
            # start: end what was subscribed before it.
            self._unsubscribe_all(conn)
            self._conn = None
            conn.release()
            raise
        conn.add_listener(self._on_reconnected)
        conn.service.subscriber_joined(self.stats)
        self._stopped.clear()
        self._running = True
        if conn.conf.publisher_events:
            self._publisher_feed = registry_watch.start_publisher_feed(
                conn, self._on_publisher_event)

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
        conn.remove_listener(self._on_reconnected)
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

    # -- delivery -------------------------------------------------------------

    async def _on_message(self, msg):
        # Loop thread: hand the message over, check and decode it in the
        # caller's world (one dispatcher: the tracker needs no lock). The
        # queue is bounded in bytes: what does not fit is dropped and a
        # resync follows (_note_overflow).
        data, headers = msg.data, msg.headers
        size = len(data) + _MESSAGE_OVERHEAD
        if headers:
            for name, value in headers.items():
                size += len(name) + len(value)
        queued = self._queued_in - self._queued_out
        if queued and queued + size > self._queue_limit:
            self._overflow()
            return
        self._queued_in += size
        self._conn.bridge.world.post(self._deliver, msg.subject, headers,
                                     data, size)

    def _overflow(self):
        # Loop thread: count, and have the caller's world note it once
        # for all the drops until it does.
        self._overflow_loop += 1
        if not self._overflow_noted:
            self._overflow_noted = True
            self._conn.bridge.world.post(self._note_overflow)

    def _note_overflow(self):
        # Cleared before the count is read: a drop after this read posts
        # again.
        self._overflow_noted = False
        dropped = self._overflow_loop - self._overflow_counted
        self._overflow_counted += dropped
        self.stats['overflow'] += dropped
        self._odd_warnings['overflow'].warning(
            'df-nats: the delivery queue is full ([df_nats]'
            ' delivery_queue_size = %d bytes): %d message(s) dropped, %d so'
            ' far; asking for a resync', self._queue_limit, dropped,
            self.stats['overflow'])
        self._request_sync('delivery queue full')

    def _on_reconnected(self):
        # Loop thread: the sync itself is decided in the caller's world.
        self._conn.bridge.world.post(self._request_sync, 'reconnect')

    def _on_publisher_event(self, table, key, action, value, topic):
        # A publisher joined or left the registry: its streams are
        # protected from eviction while it is registered.
        self._tracker.set_known(key, action != 'delete')
        self._call(table, key, action, value, topic)

    def _deliver(self, subject, headers, data, size=0):
        self._queued_out += size
        if not self._running:
            return
        verdict, missed = self._check_sequence(subject, headers)
        sync_reason = None
        if verdict is not sequence.NEXT and verdict is not sequence.UNTRACKED:
            deliver, sync_reason = self._sequence_verdict(
                verdict, missed, subject, headers)
            if not deliver:
                if sync_reason:
                    self._request_sync(sync_reason)
                return
        # A single event or a batch, decoded in one call; a malformed
        # element of a batch is dropped without its neighbours.
        events, dropped, problem = codec.unpack_events(data)
        if dropped:
            self._count_malformed(data, problem, dropped)
        self.stats['received'] += len(events)
        callback = self._callback
        for event in events:
            # _call's work inlined: a batch is hundreds of events.
            try:
                callback(event['table'], event['key'], event['action'],
                         event['value'], event['topic'])
            except Exception:
                self._callback_failed(event['action'], event['table'],
                                      event['key'])
        if sync_reason:
            self._request_sync(sync_reason)

    def _sequence_verdict(self, verdict, missed, subject, headers):
        """What a message the tracker did not find in step comes to.

        Returns (deliver it, the reason of the resync it asks for or
        None); counts and logs (rate-limited) what is odd. A mark is
        never delivered. Nothing a forger can put in the headers makes
        later genuine messages dropped: at worst a resync, paced.
        """
        deliver, reason, counter = _VERDICTS[verdict]
        if counter:
            self.stats[counter] += 1
        if verdict == sequence.GAP:
            self._count_gap(subject, headers, missed)
        elif verdict in _LOGGED_VERDICTS:
            self._odd_warnings[verdict].warning(
                'df-nats: %s on %s: Df-Seq %s (%d so far); anyone who may'
                ' publish there can copy or forge Df-Seq headers', verdict,
                subject, _shown(headers.get(sequence.HEADER_SEQ)),
                self.stats[counter])
        if self._tracker.is_mark(headers):
            self.stats['marks'] += 1
            return False, reason
        return deliver, reason

    def _check_sequence(self, subject, headers):
        """The tracker's verdict on a message, as ``_deliver`` wants it.

        On a queue group's subject each member gets only its share of a
        publisher's stream: the holes are not losses, so numbers are not
        checked there, and a mark there is just dropped (as ``MARK``).
        """
        if not self._subjects.is_shared(subject):
            return self._tracker.check(subject, headers)
        if self._tracker.is_mark(headers):
            return sequence.MARK, 0
        return sequence.UNTRACKED, 0

    def _request_sync(self, reason):
        """Ask for one resync, paced by ``resync_interval`` (caller's world).

        The first is queued at once behind what is queued now; one asked
        for within the interval after the last comes at the interval's
        end. Gaps found, reconnects heard and overflows before a pending
        sync is delivered are covered by it: they are about messages sent
        before it is delivered. Those are counted as suppressed.
        """
        self._sync_reasons.add(reason)
        if self._conn is None:
            return
        delay = self._pacer.request()
        if delay is None:
            self.stats['syncs_suppressed'] += 1
        elif delay <= 0:
            self._conn.bridge.world.post(self._deliver_sync)
        else:
            self.stats['syncs_delayed'] += 1
            self._post_later(delay, self._deliver_sync)

    def _post_later(self, delay, fn):
        # The loop thread keeps the time: fn is posted to the caller's
        # world after ``delay`` seconds, in either world.
        bridge = self._conn.bridge
        bridge.call_soon(bridge.loop.call_later, delay, bridge.world.post, fn)

    def _deliver_sync(self):
        reasons, self._sync_reasons = self._sync_reasons, set()
        if not self._running:
            self._pacer.reset()
            return
        self._pacer.delivered()
        self.stats['syncs'] += 1
        LOG.warning('df-nats: events may have been missed (%s),'
                    ' asking for a resync', ', '.join(sorted(reasons)))
        self._call(None, None, 'sync', None, None)

    def _count_gap(self, subject, headers, missed):
        self.stats['gaps'] += 1
        self.stats['missed'] += missed
        self._gap_warning.warning(
            'df-nats: %d messages of publisher %s on %s missed (%d gaps, %d'
            ' messages so far)', missed, _shown(sequence.parse(headers)[0]),
            subject, self.stats['gaps'], self.stats['missed'])

    def _call(self, table, key, action, value, topic):
        try:
            self._callback(table, key, action, value, topic)
        except Exception:
            self._callback_failed(action, table, key)

    def _callback_failed(self, action, table, key):
        # In the except clause of the caller: logs its exception.
        self.stats['callback_errors'] += 1
        LOG.exception('df-nats: the subscriber callback failed on'
                      ' %s %s %s', action, table, key)

    def _count_malformed(self, data, problem, dropped=1):
        self.stats['malformed'] += dropped
        self._malformed_warning.warning(
            'df-nats: dropped %d malformed event(s) of a message of %d bytes'
            ' (%s); %d dropped so far', dropped, len(data), problem,
            self.stats['malformed'])


def _shown(value):
    """An untrusted header value as a log line may quote it: short."""
    if isinstance(value, (str, bytes)):
        value = value[:_SHOWN + 1]   # a header may be a megabyte
    text = codec.header_value(value) or ''
    if len(text) > _SHOWN:
        return text[:_SHOWN] + '...'
    return text


class _SharedSubscription:
    """One queue-group subscription and the count of topics using it."""

    __slots__ = ('subscription', 'subject', 'topics')

    def __init__(self, subscription, subject):
        self.subscription = subscription
        self.subject = subject
        self.topics = 0
