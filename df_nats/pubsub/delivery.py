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

"""One subscriber's receive path, from the loop thread to the callback."""

import collections
import time

from df_nats.conf import timeouts
from df_nats.loop import log
from df_nats.pubsub import catch_up
from df_nats.pubsub import work_budget
from df_nats.wire import codec
from df_nats.wire import resync
from df_nats.wire import send_time
from df_nats.wire import sequence

# The subscriber's logger: the receive path's lines keep their origin.
LOG = log.get_logger('df_nats.pubsub.subscriber')

# Characters of an untrusted header value quoted in a log line.
_SHOWN = 64
# What a queued message costs in memory besides its body, its subject's
# and its headers' characters (CPython 3.11, 64 bits; measured with
# tracemalloc in tests/unit/pubsub/test_delivery.py): the posted call
# (two tuples, a deque slot), the bytes, subject str and size int
# objects; a headers dict; each header's two str objects and its slot.
# A header value that is not ASCII may take 4 bytes a character.
_MESSAGE_OVERHEAD = 256
_HEADERS_OVERHEAD = 192
_HEADER_OVERHEAD = 128

# Verdicts of the sequence tracker (besides NEXT and UNTRACKED, the
# common ones) -> (whether the message is delivered, the resync reason
# or None, the stats counter).
_VERDICTS = {
    sequence.FIRST: (True, None, None),
    sequence.GAP: (True, 'gap', None),
    # Older than one delivered but never seen: delivered (the newer one
    # may be forged, and a forger must never cost a real event); the gap
    # before it asked for a resync already.
    sequence.LATE: (True, None, 'late'),
    sequence.JUMP: (True, 'implausible sequence number', 'jumps'),
    sequence.RESET: (True, 'sequence re-baseline', 'rebaselines'),
    sequence.BAD_HEADER: (True, None, 'bad_headers'),
    sequence.REFUSED: (True, None, 'untracked_streams'),
    sequence.DUPLICATE: (False, None, 'duplicates'),
    sequence.BEHIND: (False, None, 'duplicates'),
    sequence.CONFLICT: (True, 'conflicting message', 'conflicts'),
    sequence.MARK: (False, None, None),
}
# Verdicts of messages a catch-up fetched that it does not deliver.
_UNTRACKED_VERDICTS = (sequence.UNTRACKED, sequence.BAD_HEADER,
                       sequence.REFUSED)
# Verdicts logged (throttled, each on its own) besides being counted.
_LOGGED_VERDICTS = (sequence.DUPLICATE, sequence.CONFLICT, sequence.JUMP,
                    sequence.RESET, sequence.BAD_HEADER)
# Why a resync was asked for -> the counter of requests for that cause
# (stats "resyncs by cause"); a sync delivered may answer several.
SYNC_CAUSES = {
    'reconnect': 'sync_reconnect',
    'gap': 'sync_gap',
    'implausible sequence number': 'sync_jump',
    'sequence re-baseline': 'sync_rebaseline',
    'delivery queue full': 'sync_overflow',
    'fork': 'sync_fork',
    'conflicting message': 'sync_conflict',
    'receive path over its time budget': 'sync_over_budget',
    'slow consumer': 'sync_slow_consumer',
}
SYNC_CAUSES.update(catch_up.FALLBACKS)
SYNC_OTHER = 'sync_other'


class Delivery:
    """One subscriber's receive path.

    The byte-bounded hand-off from the loop thread to the caller's world,
    sequence checks, decoding, the callback, paced resyncs and counters.
    ``on_message`` and ``reconnected_on_loop`` run on the loop thread; the rest
    runs in the caller's world (a greenthread under eventlet, a native
    thread otherwise), one call at a time, so the tracker needs no lock.

    The callback gets events one at a time, in arrival order. After a
    gap in a publisher's sequence numbers it is called with
    ``(None, None, 'sync', None, None)``. After the connection comes
    back from an outage, what was missed is first fetched from the
    capture stream (``catch_up``): the sync follows only when that
    cannot prove nothing was lost, or at once with ``replay_stream``
    empty. Syncs asked for while one is still queued are delivered once,
    and at most one per ``resync_interval`` (``resync.ResyncPacer``).
    Duplicates (the very same message again) are dropped; another message
    under a number delivered already is delivered, counted as a conflict
    and followed by a resync.

    Everything received is untrusted: events of the wrong types, control
    actions and forged sequence headers are counted and dropped or
    tracked harmlessly (``codec``, ``sequence``), and messages wait for
    the callback in a queue of at most ``delivery_queue_size`` bytes of
    memory (what each message really costs, objects included); what
    overflows it is dropped, counted and followed by a catch-up (or a
    resync). The work spent on messages that deliver nothing or hold
    malformed events has a time budget per slice of the queue: a flood of
    messages expensive to decode costs at most about that much delay
    before what is queued is dropped as an overflow and one resync asked
    for (``work_budget``).
    Messages on a queue group's shared subject are not sequence-checked.

    ``callback`` may be replaced at any time (newest wins); ``stats`` is
    the counter the subscriber shows to the process service.
    """

    # Whether a gap in a live publisher's numbers starts a catch-up. Off:
    # anyone who may publish can forge gaps, and under a flood of them
    # (tests/functional/test_hostile.py's fuzz) catch-ups that hold every
    # publisher's messages lost real events. A gap is answered by a paced
    # resync, as before replay; what a gap mostly came from, a
    # publisher's server lost, the publisher's resend now closes.
    catch_up_gaps = False

    def __init__(self):
        self.callback = None
        self.stats = collections.Counter()
        self._conn = None
        self._subjects = None
        self._running = False
        # Malformed messages and gaps are all counted, and logged at most
        # once a second each.
        self._malformed_warning = log.Throttled(LOG)
        self._gap_warning = log.Throttled(LOG)
        self._tracker = sequence.SequenceTracker()
        self._pacer = resync.ResyncPacer(0.0)
        self._sync_reasons = set()
        # Duplicates, unbelievable numbers, unreadable headers and a full
        # delivery queue: each kind logged at most once a second.
        self._odd_warnings = {kind: log.Throttled(LOG)
                              for kind in _LOGGED_VERDICTS + (
                                  'overflow', 'over_budget')}
        # The delivery queue's bytes: added on the loop thread, taken off
        # in the caller's world; each counter has one writer.
        self._queue_limit = 0
        self._queued_in = 0
        self._queued_out = 0
        self._queued_in_msgs = 0      # loop thread
        self._queued_out_msgs = 0     # caller's world
        self._overflow_loop = 0       # messages dropped (loop thread)
        self._overflow_counted = 0    # of those, in stats (caller's world)
        self._overflow_noted = False
        # The receive path's time budget (caller's world), and what is
        # dropped once it ran over (messages queued before _queued_out
        # passes this many bytes).
        self._budget = work_budget.WorkBudget()
        self._drop_through = -1
        # Posted once per message: one bound method, not one each time.
        self._deliver = self.deliver
        # Publish to callback (``send_time``), and when the last sync was
        # delivered (wall clock, 0: never): read by the process service.
        self.lag = send_time.LagSummary()
        self._lag_due = 0   # time.time_ns() of the next lag sample
        self.last_sync = 0.0
        # Catching up from the capture stream; the wall-clock time
        # (time.time_ns) of the last live message checked, and of the
        # start, where a catch-up begins.
        self._catch_up = catch_up.CatchUp(self)
        self._last_rx = 0
        self._overflow_since = 0   # loop thread: the first drop's time
        self._slow_noted = False
        self._sync_now = False     # an unpaced sync is posted already

    def attach(self, conn, subject_map, subjects=lambda: ()):
        """Use ``conn`` and its configuration, before subscribing.

        ``subjects()`` names the subjects a catch-up fetches: the
        subscriber's own, but for queue groups'.
        """
        self._conn = conn
        self._subjects = subject_map
        self._catch_up.attach(conn, subjects)
        self._last_rx = time.time_ns()
        self._tracker.max_streams = conn.conf.sequence_streams
        self._pacer.interval = conn.conf.resync_interval
        self._pacer.reset()
        self._queue_limit = conn.conf.delivery_queue_size

    def start(self):
        """Deliver from now on (the subscriber runs)."""
        self._running = True

    def stop(self):
        """Deliver nothing more and leave the connection.

        The subscriber closed, failed to start, or was inherited through
        fork.
        """
        self._running = False
        self._conn = None
        self._catch_up.stop()

    def reset(self):
        """Forget what the parent had queued and asked for (after fork).

        Its posted calls never run here: their bytes would stay counted.
        """
        self._pacer.reset()
        self._queued_in = self._queued_out = 0
        self._queued_in_msgs = self._queued_out_msgs = 0
        self._overflow_loop = self._overflow_counted = 0
        self._overflow_noted = False
        self._budget.end_slice()
        self._drop_through = -1
        self._catch_up.stop()
        self._sync_now = False

    async def on_message(self, msg):
        # Loop thread: hand the message over, check and decode it in the
        # caller's world (one dispatcher: the tracker needs no lock). The
        # queue is bounded in bytes: what does not fit is dropped and a
        # resync follows (_note_overflow). A message is counted at what
        # it costs in memory while queued.
        data, headers, subject = msg.data, msg.headers, msg.subject
        size = len(data) + len(subject) + _MESSAGE_OVERHEAD
        if headers:
            size += _HEADERS_OVERHEAD
            for name, value in headers.items():
                size += _HEADER_OVERHEAD + len(name) + (
                    len(value) if value.isascii() else 4 * len(value))
        queued = self._queued_in - self._queued_out
        if queued and queued + size > self._queue_limit:
            self._overflow_on_loop()
            return
        self._queued_in += size
        self._queued_in_msgs += 1
        self._conn.bridge.world.post(self._deliver, subject, headers, data,
                                     size)

    def _overflow_on_loop(self):
        # Loop thread: count, and have the caller's world note it once
        # for all the drops until it does.
        assert self._conn.bridge.on_loop_thread()
        self._overflow_loop += 1
        if not self._overflow_noted:
            self._overflow_noted = True
            self._overflow_since = time.time_ns()
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
            ' far; catching up', self._queue_limit, dropped,
            self.stats['overflow'])
        self.recover('delivery queue full', self._overflow_since)

    def reconnected_on_loop(self):
        # Loop thread: what follows is decided in the caller's world,
        # behind the messages queued before the reconnect.
        assert self._conn.bridge.on_loop_thread()
        since = self._conn.disconnected_ns or time.time_ns()
        self._conn.bridge.world.post(self.recover, 'reconnect', since)

    def disconnected_on_loop(self):
        # Loop thread: from here on, behind the messages queued before,
        # hold until the reconnect's catch-up (CatchUp.hold_until_reconnect).
        assert self._conn.bridge.on_loop_thread()
        self._conn.bridge.world.post(self._catch_up.hold_until_reconnect)

    def slow_consumer_on_loop(self):
        # Loop thread: nats-py dropped a message of a subscription; one
        # post for all the drops until the caller's world handles it.
        assert self._conn.bridge.on_loop_thread()
        if not self._slow_noted:
            self._slow_noted = True
            self._conn.bridge.world.post(self._note_slow_consumer,
                                         time.time_ns())

    def _note_slow_consumer(self, since_ns):
        self._slow_noted = False
        self.recover('slow consumer', since_ns)

    def recover(self, reason, since_ns):
        """Messages published since ``since_ns`` may be lost: catch up
        from the capture stream, or ask for a resync (caller's world).
        """
        if self._conn is None:
            return
        if not self._catch_up.start(reason, since_ns):
            self.request_sync(reason, paced=reason != 'reconnect')

    def on_publisher_event(self, table, key, action, value, topic):
        # A publisher joined or left the registry: its streams are
        # protected from eviction while it is registered. A change means
        # another process took the id: its old streams are let go.
        self._tracker.set_known(key, action != 'delete')
        if action == 'set':
            self._tracker.publisher_changed(key)
        self._call(table, key, action, value, topic)

    def deliver(self, subject, headers, data, size=0):
        self._queued_out += size
        if size:
            self._queued_out_msgs += 1
        if not self._running:
            return
        if self._queued_out <= self._drop_through:
            # Queued before the receive path ran over its time budget.
            self.stats['overflow'] += 1
            return
        if self._catch_up.active:
            self._catch_up.hold(subject, headers, data, size)
            return
        now = _clock()
        if now >= self._lag_due:
            self._sample_lag(headers, now)
        verdict, missed = self._check_sequence(
            subject, headers, data,
            self.catch_up_gaps and self._catch_up.enabled)
        if verdict is sequence.AHEAD:
            # Messages of this publisher are missing: fetch them before
            # this one, from about when the last one arrived.
            since = min(self._last_rx, (send_time.sent_us(headers)
                                        or now // 1000) * 1000)
            if self._catch_up.start('gap', since):
                self._catch_up.hold(subject, headers, data, size)
                return
            verdict, missed = self._check_sequence(subject, headers, data)
        self._last_rx = now
        self._deliver_verdict(subject, headers, data, verdict, missed, now)

    def deliver_checked(self, subject, headers, data, replayed=False,
                        hold_gaps=True) -> bool:
        """Check and deliver a message a catch-up held or fetched.

        True (nothing done) when it is ahead of its publisher's numbers
        and ``hold_gaps``: the catch-up holds it back. A fetched message
        is only ever delivered as a tracked one, and copies of what was
        delivered are dropped quietly: a catch-up fetches some.
        """
        if not self._running:
            return False
        # Held or fetched, a message far below its stream's last number
        # was delivered already (BEHIND), by the catch-up or before it.
        verdict, missed = self._check_sequence(subject, headers, data,
                                               hold_gaps, True)
        if verdict is sequence.AHEAD:
            return True
        if verdict is sequence.BEHIND or (
                replayed and verdict is sequence.DUPLICATE):
            self.stats['duplicates'] += 1
            return False
        if replayed:
            if verdict in _UNTRACKED_VERDICTS:
                self.stats['replay_untracked'] += 1
                return False
        self._deliver_verdict(subject, headers, data, verdict, missed, None,
                              replayed)
        return False

    def _deliver_verdict(self, subject, headers, data, verdict, missed, now,
                         replayed=False):
        """Deliver a checked message (``now``: a live one, on the clock
        of the receive path's time budget).
        """
        sync_reason = None
        if verdict is not sequence.NEXT and verdict is not sequence.UNTRACKED:
            deliver, sync_reason = self._sequence_verdict(
                verdict, missed, subject, headers)
            if not deliver:
                if now is not None:
                    self._charge(now)
                if sync_reason:
                    self.request_sync(sync_reason)
                return
        # A single event or a batch, decoded in one call; a malformed
        # element of a batch is dropped without its neighbours.
        events, dropped, problem = codec.unpack_events(data)
        if dropped:
            self._count_malformed(data, problem, dropped)
            if now is not None:
                self._charge(now)
        elif (self._budget.since is not None
              and self._queued_out >= self._queued_in):
            # Nothing queued after this message: the slice ends.
            self._budget.end_slice()
        self.stats['received'] += len(events)
        if replayed:
            self.stats['replayed'] += len(events)
        callback = self.callback
        for event in events:
            # _call's work inlined: a batch is hundreds of events.
            try:
                callback(event['table'], event['key'], event['action'],
                         event['value'], event['topic'])
            except Exception:
                self._callback_failed(event['action'], event['table'],
                                      event['key'])
        if sync_reason:
            self.request_sync(sync_reason)

    def _charge(self, started):
        """Charge the work on a wasted message (nothing delivered, or
        malformed elements dropped) to the time budget; past it,
        everything queued now is dropped as an overflow and a resync
        asked for (paced). The clock is the wall clock the lag is
        measured with: one read per message; a step of it may miscount
        one message's work.
        """
        over = self._budget.charge(started, _clock(),
                                   self._queued_out >= self._queued_in)
        if over is not None:
            self._over_budget(*over)

    def _over_budget(self, work, span):
        # Both in nanoseconds: the wasted work, and the slice's time.
        # What is queued now goes; what the loop thread posts from now on
        # is a new slice.
        self._drop_through = self._queued_in
        self.stats['over_budget'] += 1
        self._odd_warnings['over_budget'].warning(
            'df-nats: decoding and checking received messages that'
            ' delivered nothing or malformed events took %.1f s of the'
            ' last %.1f s (over its budget of %.1f s): dropping what is'
            ' queued (%d bytes) and asking for a resync; %d time(s) so far',
            work / 1e9, span / 1e9, timeouts.DELIVERY_WORK_BUDGET,
            self._queued_in - self._queued_out, self.stats['over_budget'])
        self.request_sync('receive path over its time budget')

    def _sample_lag(self, headers, now_ns):
        # At most one message per send_time.SAMPLE_NS is measured: a
        # clock read per message is all the others cost.
        self._lag_due = now_ns + send_time.SAMPLE_NS
        sent = send_time.sent_us(headers)
        if sent is not None:
            self.lag.note(sent, now_ns // 1000)

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
        elif verdict in _LOGGED_VERDICTS and not (
                verdict is sequence.DUPLICATE
                and sequence.HEADER_RESENT in headers):
            # (A resent copy of what arrived is expected after a
            # publisher's reconnect: counted, not logged.)
            self._odd_warnings[verdict].warning(
                'df-nats: %s on %s: Df-Seq %s (%d so far); anyone who may'
                ' publish there can copy or forge Df-Seq headers', verdict,
                subject, _shown(headers.get(sequence.HEADER_SEQ)),
                self.stats[counter])
        if self._tracker.is_mark(headers):
            self.stats['marks'] += 1
            return False, reason
        return deliver, reason

    def _check_sequence(self, subject, headers, data, hold_gaps=False,
                        replayed=False):
        """The tracker's verdict on a message, as ``deliver`` wants it.

        With ``hold_gaps``, ``AHEAD`` rather than ``GAP`` (see
        ``SequenceTracker.check``).

        On a queue group's subject each member gets only its share of a
        publisher's stream: the holes are not losses, so numbers are not
        checked there, and a mark there is just dropped (as ``MARK``).
        """
        if not self._subjects.is_shared(subject):
            return self._tracker.check(subject, headers, data, hold_gaps,
                                       replayed)
        if self._tracker.is_mark(headers):
            return sequence.MARK, 0
        return sequence.UNTRACKED, 0

    def request_sync(self, reason, paced=True):
        """Ask for one resync (caller's world).

        Paced by ``resync_interval``: the first is queued at once behind
        what is queued now; one asked for within the interval after the
        last comes at the interval's end. Unpaced (a reconnect's, which
        no peer can cause), it is queued at once, taking the place of a
        paced one still waiting. Gaps found, reconnects heard and
        overflows before a pending sync is delivered are covered by it:
        they are about messages sent before it is delivered. Those are
        counted as suppressed.
        """
        self._sync_reasons.add(reason)
        self.stats[SYNC_CAUSES.get(reason, SYNC_OTHER)] += 1
        if self._conn is None:
            return
        if not paced:
            if self._sync_now:
                self.stats['syncs_suppressed'] += 1
                return
            self._pacer.pending = True
            self._sync_now = True
            self._conn.bridge.world.post(self._deliver_sync)
            return
        delay = self._pacer.request()
        if delay is None:
            self.stats['syncs_suppressed'] += 1
        elif delay <= 0:
            self._sync_now = True
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
        if not self._pacer.pending:
            return   # delivered already, by an unpaced one
        self._sync_now = False
        reasons, self._sync_reasons = self._sync_reasons, set()
        if not self._running:
            self._pacer.reset()
            return
        self._pacer.delivered()
        self.stats['syncs'] += 1
        self.last_sync = time.time()
        LOG.warning('df-nats: events may have been missed (%s),'
                    ' asking for a resync', ', '.join(sorted(reasons)))
        self._call(None, None, 'sync', None, None)

    def gauges(self):
        """What the delivery holds and measured now (any thread).

        The delivery queue's depth in messages and bytes, the lag from
        publish to callback in microseconds (last, moving average,
        maximum; ``send_time``), and the wall-clock time of the last
        sync (0: none yet). Each value is read once: a moment's view.
        """
        lag = self.lag
        return {'queue_messages': max(
                    self._queued_in_msgs - self._queued_out_msgs, 0),
                'queue_bytes': max(self._queued_in - self._queued_out, 0),
                'lag_last_us': lag.last_us, 'lag_avg_us': lag.avg_us,
                'lag_max_us': lag.max_us, 'lag_measured': lag.measured,
                'lag_ignored': lag.ignored,
                'last_sync': int(self.last_sync)}

    def _count_gap(self, subject, headers, missed):
        self.stats['gaps'] += 1
        self.stats['missed'] += missed
        self._gap_warning.warning(
            'df-nats: %d messages of publisher %s on %s missed (%d gaps, %d'
            ' messages so far)', missed, _shown(sequence.parse(headers)[0]),
            subject, self.stats['gaps'], self.stats['missed'])

    def _call(self, table, key, action, value, topic):
        try:
            self.callback(table, key, action, value, topic)
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


# Read once per message delivered: the lag's clock, and the time budget's.
_clock = time.time_ns


def _shown(value):
    """An untrusted header value as a log line may quote it: short."""
    if isinstance(value, (str, bytes)):
        value = value[:_SHOWN + 1]   # a header may be a megabyte
    text = codec.header_value(value) or ''
    if len(text) > _SHOWN:
        return text[:_SHOWN] + '...'
    return text
