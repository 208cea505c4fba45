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

"""A subscriber's catch-up: what it missed, from the capture stream.

When a subscriber may have lost messages (its connection came back,
nats-py dropped messages of a slow consumer, the delivery queue
overflowed; a publisher's numbers jumped, with
``Delivery.catch_up_gaps``), it fetches what was stored since shortly
before the loss (``replay_fetch``) instead of asking Dragonflow for a
full resync. Meanwhile live messages are held, up to
``delivery_queue_size`` bytes. The replayed messages, then the held
ones, go through the sequence tracker: copies of what was delivered are
dropped, and each publisher's messages are delivered in its order, none
after a later one. A publisher whose numbers still miss some (a hole in
the stream: stored while it had no leader, or not routed yet) is held
back and asked for again every ``REPLAY_RETRY``; when a fetch asked
for ``REPLAY_HOLE_WAIT`` after the first answer still finds the hole,
the catch-up gives up. A full resync is asked for only when replay
cannot prove nothing was lost: no stream, its window passed, JetStream
silent (a fetch left unanswered is asked again once, before the
deadline), more to fetch than the limits, a hole that stayed, held
messages beyond the queue's bytes, or no end by the deadline (later, up
to a last deadline, on a loaded machine where the fetch still hears from
the servers).

Catch-ups are rate-limited, but for a reconnect: a gap, a slow consumer
and an overflow can all be provoked by anyone who may publish. Beyond
the rate the loss is answered as without replay, by a resync paced by
``resync_interval``; so is the fallback of such a catch-up. After a
reconnect, which no peer can cause, the catch-up starts at once and its
fallback resync is not paced.

Everything runs in the caller's world except the fetch, on the loop
thread (``_fetch_on_loop``).
"""

import asyncio
import collections
import time

from df_nats.conf import timeouts
from df_nats.loop import log
from df_nats.transport import replay_fetch
from df_nats.wire import sequence

LOG = log.get_logger('df_nats.pubsub.subscriber')

# Why a catch-up started -> its counter (stats).
TRIGGERS = {
    'reconnect': 'catchup_reconnect',
    'gap': 'catchup_gap',
    'slow consumer': 'catchup_slow_consumer',
    'delivery queue full': 'catchup_overflow',
}
# A catch-up ends by then, whatever happens to its fetches (but for one
# that still moves on, below).
_DEADLINE = (timeouts.REPLAY_SETTLE + timeouts.REPLAY_HOLE_WAIT
             + timeouts.REPLAY_REQUEST + 2 * timeouts.REPLAY_SILENCE)
# On a loaded machine (busy servers, a process far behind on its
# socket or its callbacks) answers come slowly: past _DEADLINE a
# catch-up that still moves on (its fetch heard from the servers, or it
# asked for a fetch, within the last _STALL seconds: longer than a
# fetch takes to find a silence, round trip included) goes on, up to
# _LAST_DEADLINE.
_STALL = 2 * timeouts.REPLAY_SILENCE + 1.0
_LAST_DEADLINE = 3 * _DEADLINE
# A fetch JetStream left unanswered is asked again this many times,
# before the deadline: the request may have been lost with a server.
_SILENT_RETRIES = 1
HOLE = 'hole in the stream'
HELD_FULL = 'held messages over delivery_queue_size'
# Why a catch-up gave up on a full resync -> its counter (stats).
FALLBACKS = {
    replay_fetch.NO_STREAM: 'sync_no_stream',
    replay_fetch.WINDOW_PASSED: 'sync_window_passed',
    replay_fetch.SILENT: 'sync_replay_silent',
    replay_fetch.OVER_LIMIT: 'sync_replay_limit',
    replay_fetch.FAILED: 'sync_replay_failed',
    HOLE: 'sync_hole',
    HELD_FULL: 'sync_held_overflow',
}


class CatchUp:
    """One subscriber's catch-up from the capture stream.

    Owned by its ``delivery.Delivery``, which hands it live messages to
    hold while ``active`` and delivers what it gives back
    (``Delivery.deliver_checked``).
    """

    def __init__(self, delivery):
        self._delivery = delivery
        self.stats = delivery.stats
        self._conn = None
        self._subjects = None
        # Whether a catch-up can be tried (a stream is configured): read
        # on every message, so a plain attribute.
        self.enabled = False
        self._limit = 0
        self.active = False
        # Holding since the connection was lost, for the catch-up its
        # reconnect will start (no fetch yet).
        self._awaiting = False
        # Held messages: (subject, headers, data, size, fetched or live).
        self._held = collections.deque()
        self._held_bytes = 0
        self._held_dropped = False
        self._reasons = set()
        self._local = False
        self._again = False
        # After a reconnect: whether a live message came through the new
        # server yet, and whether the catch-up waits for one.
        self._live_seen = False
        self._proof_wait = False
        self._start_ns = 0
        self._resume_seq = None
        self._began = 0.0
        self._silent = 0   # fetches of this catch-up left unanswered
        self._answered = None   # when its first fetch was answered
        self._asked = 0.0       # when its last fetch was (to be) sent
        # When the fetch in flight last heard from the servers.
        self._progress = replay_fetch.Progress()
        # The fetch in flight: a result for an older one is ignored.
        self._fetch_id = 0
        self._epoch = 0   # the catch-up running (its watchdog's)
        self._tokens = float(timeouts.REPLAY_BURST)
        self._refilled = None
        self._fallback_warning = log.Throttled(LOG)
        self._no_stream_warned = False

    def attach(self, conn, subjects):
        """Use ``conn``; ``subjects()`` names the subjects to fetch."""
        self._conn = conn
        self._subjects = subjects
        self.enabled = bool(conn.conf.replay_stream)
        self._limit = conn.conf.delivery_queue_size

    def stop(self):
        """Forget the catch-up in flight and what it held (stopped, fork)."""
        self._conn = None
        self.enabled = False
        self._fetch_id += 1
        self.active = False
        self._awaiting = False
        self._proof_wait = False
        self._held.clear()
        self._held_bytes = 0
        self._held_dropped = False

    def start(self, reason: str, since_ns: int) -> bool:
        """Catch up on what was published since ``since_ns``.

        False when replay cannot be tried, or is over its rate: the
        caller asks for a resync as before.
        """
        local = reason == 'reconnect'
        if not self.enabled:
            return False
        since_ns -= int(timeouts.REPLAY_MARGIN * 1e9)
        if self.active:
            self._reasons.add(reason)
            self._local = self._local or local
            self._start_ns = min(self._start_ns, since_ns)
            if self._awaiting:
                # Holding since the connection was lost: its reconnect
                # starts the catch-up, which covers any other loss.
                if local:
                    self._awaiting = False
                    self._begin()
                return True
            # Lost again while catching up: fetch once more after this.
            self._again = True
            return True
        if not local and not self._admit():
            self.stats['catchups_refused'] += 1
            return False
        self.active = True
        self._reasons = {reason}
        self._local = local
        self._again = False
        self._live_seen = False
        self._start_ns = since_ns
        self._begin()
        return True

    def hold_until_reconnect(self):
        """The connection was lost: hold what arrives from now on until
        the catch-up its reconnect starts (``start('reconnect', ...)``).

        nats-py renews the subscriptions on the new server before it
        announces the reconnect: messages that server delivers meanwhile
        must not be delivered before those the catch-up will fetch.
        """
        if not self.enabled or self.active:
            return
        self._fetch_id += 1   # a late result of an earlier fetch: ignored
        self.active = True
        self._awaiting = True
        self._reasons = set()
        self._local = True
        self._again = False
        self._live_seen = False
        self._start_ns = time.time_ns() - int(timeouts.REPLAY_MARGIN * 1e9)

    def _begin(self):
        for reason in self._reasons:
            self.stats[TRIGGERS.get(reason, 'catchup_other')] += 1
        self._epoch += 1
        bridge = self._conn.bridge
        # However the fetch goes, the catch-up ends by this deadline.
        bridge.call_soon(bridge.loop.call_later, _DEADLINE, bridge.world.post,
                         self._watchdog, self._epoch)
        self._resume_seq = None
        self._silent = 0
        self._answered = None
        self._began = time.monotonic()
        self._fetch(timeouts.REPLAY_SETTLE if self._local else 0.0)

    def _admit(self) -> bool:
        # A token bucket: GAP_REPLAY_INTERVAL apart, REPLAY_BURST at once.
        now = time.monotonic()
        if self._refilled is not None:
            self._tokens = min(float(timeouts.REPLAY_BURST), self._tokens + (
                now - self._refilled) / timeouts.GAP_REPLAY_INTERVAL)
        self._refilled = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def hold(self, subject, headers, data, size):
        """Keep a live message until the catch-up ends (bounded)."""
        if self._held_bytes + size > self._limit:
            self.stats['overflow'] += 1
            self._held_dropped = True
            return
        self._held.append((subject, headers, data, size, False))
        self._held_bytes += size
        self.stats['held'] += 1
        self._live_seen = True
        if self._proof_wait:
            # The first live message since the fetch: in step, the
            # catch-up ends; ahead, the fetch is asked for again.
            self._proof_wait = False
            self._deliver_then_end([])

    # -- the fetch (loop thread) ------------------------------------------

    def _fetch(self, delay):
        self._asked = time.monotonic() + delay
        self._fetch_id += 1
        self._progress = replay_fetch.Progress()
        conn = self._conn
        conf = conn.conf
        request = (self._fetch_id, conf.replay_stream, conf.subject_prefix,
                   sorted(self._subjects()), self._start_ns, self._resume_seq,
                   conf.replay_limit_events, conf.replay_limit_bytes,
                   self._progress)
        bridge = conn.bridge
        bridge.call_soon(bridge.loop.call_later, delay,
                         self._fetch_on_loop, conn, request)

    def _fetch_on_loop(self, conn, request):
        assert conn.bridge.on_loop_thread()
        conn.bridge.loop.create_task(self._fetch_task(conn, request))

    async def _fetch_task(self, conn, request):
        fetch_id, stream, prefix, subjects, start_ns, resume_seq = request[:6]
        limit_events, limit_bytes, progress = request[6:]
        deadline = time.monotonic() + timeouts.REPLAY_REQUEST
        # Reconnecting: the fetch waits for the link (a bit).
        while not conn.connected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        nc = conn.nc
        try:
            if nc is None or not conn.connected:
                raise ConnectionError('not connected')
            result = await replay_fetch.fetch_on_loop(
                nc, stream, prefix, subjects, start_ns, limit_events,
                limit_bytes, timeouts.REPLAY_SILENCE, start_seq=resume_seq,
                progress=progress)
        except Exception as exc:
            result = replay_fetch.Fetched(
                replay_fetch.SILENT if isinstance(exc, ConnectionError)
                else replay_fetch.FAILED, [],
                '%s: %s' % (type(exc).__name__, exc))
        conn.bridge.world.post(self._fetched, fetch_id, result)

    # -- the outcome (caller's world) ---------------------------------------

    def _watchdog(self, epoch):
        if not self.active or epoch != self._epoch:
            return
        now = time.monotonic()
        moved = max(self._asked, self._progress.heard)
        if now - moved < _STALL and now - self._began < _LAST_DEADLINE:
            # Behind, not stuck: looked at again a little later.
            bridge = self._conn.bridge
            bridge.call_soon(bridge.loop.call_later, _STALL,
                             bridge.world.post, self._watchdog, epoch)
            return
        self._fall_back(replay_fetch.SILENT, 'no end within %.0f s'
                        % (now - self._began))

    def _fetched(self, fetch_id, result):
        if fetch_id != self._fetch_id or not self.active:
            return
        try:
            self._take(result)
        except Exception as exc:
            # Never left holding: what was held goes out after a resync.
            LOG.exception('df-nats: catch-up failed')
            if self.active:
                self._fall_back(replay_fetch.FAILED, '%s: %s' % (
                    type(exc).__name__, exc))

    def _take(self, result):
        LOG.debug('df-nats: catch-up (%s) fetched %d message(s): %s %s',
                  ', '.join(sorted(self._reasons)), len(result.messages),
                  result.outcome, result.detail)
        if result.outcome != replay_fetch.OK:
            if self._retry_silent(result):
                return
            self._fall_back(result.outcome, result.detail)
            return
        if self._answered is None:
            self._answered = time.monotonic()
        if self._resume_seq is None:
            self.stats['replays'] += 1
        if result.last_seq:
            self._resume_seq = result.last_seq + 1
        self._deliver_then_end([
            (stored.subject, stored.headers, stored.data, len(stored.data),
             True) for stored in result.messages])

    def _deliver_then_end(self, fetched):
        # What was fetched, then what was held (earlier holes first),
        # each publisher's in the order of its numbers: a message that
        # fills a hole comes before those it lets through.
        delivery = self._delivery
        held, self._held = self._held, collections.deque()
        self._held_bytes = 0
        queue = _in_stream_order(fetched + list(held))
        blocked = []
        for message in queue:
            if delivery.deliver_checked(*message[:3], replayed=message[4]):
                blocked.append(message)
        if blocked:
            # The wait is judged by when this fetch was asked for: on a
            # loaded machine a fetch can take longer than the wait, and
            # a hole stays only if a fetch asked that late still has it.
            if self._asked - self._answered < timeouts.REPLAY_HOLE_WAIT:
                # Held back until the hole fills (or the wait ends), in
                # front of what arrives meanwhile.
                self._held.extend(blocked)
                self._held_bytes = sum(message[3] for message in blocked)
                self._fetch(timeouts.REPLAY_RETRY)
                return
            self._fall_back(HOLE, '%d message(s) held back' % len(blocked),
                            blocked)
            return
        if self._held_dropped:
            self._fall_back(HELD_FULL, 'live messages dropped')
            return
        if self._local and not self._live_seen:
            # After a reconnect the subscription's interest reaches the
            # other servers late on a loaded cluster: what a publisher
            # sent there meanwhile came neither live nor, if stored
            # after the fetch read the stream, fetched. Until a live
            # message shows the interest arrived (or REPLAY_HOLE_WAIT),
            # what comes is still held and checked against the numbers
            # the fetch left.
            self._proof_wait = True
            bridge = self._conn.bridge
            bridge.call_soon(bridge.loop.call_later,
                             timeouts.REPLAY_HOLE_WAIT, bridge.world.post,
                             self._proof_over, self._epoch)
            return
        self._finish()

    def _proof_over(self, epoch):
        # No live message within REPLAY_HOLE_WAIT: nothing was sent.
        if self.active and self._proof_wait and epoch == self._epoch:
            self._proof_wait = False
            self._finish()

    def _finish(self):
        again, since = self._again, self._start_ns
        reasons, local = self._reasons, self._local
        self._end()
        if again:
            reason = 'reconnect' if local else sorted(reasons)[0]
            if not self.start(reason, since + int(
                    timeouts.REPLAY_MARGIN * 1e9)):
                # Refused by the rate: the loss still has its answer.
                self._delivery.request_sync(reason)

    def _retry_silent(self, result) -> bool:
        # Whether an unanswered fetch is asked again (counted).
        if (result.outcome != replay_fetch.SILENT
                or self._silent >= _SILENT_RETRIES
                or time.monotonic() - self._began >= _DEADLINE):
            return False
        self._silent += 1
        self.stats['replay_retries'] += 1
        LOG.debug('df-nats: catch-up: JetStream silent (%s), asking again',
                  result.detail)
        self._fetch(timeouts.REPLAY_RETRY)
        return True

    def _fall_back(self, outcome, detail, blocked=()):
        """Give up on replay: a full resync, then what was held."""
        local = self._local
        held = list(blocked) + list(self._held)
        reasons = ', '.join(sorted(self._reasons))
        self._end()
        delivery = self._delivery
        delivery.request_sync(outcome, paced=not local)
        if outcome == replay_fetch.NO_STREAM:
            if not self._no_stream_warned:
                self._no_stream_warned = True
                LOG.warning(
                    'df-nats: no capture stream to catch up from ([df_nats]'
                    ' replay_stream = %s: %s); lost messages cost a full'
                    ' resync', self._conn.conf.replay_stream, detail)
        else:
            self._fallback_warning.warning(
                'df-nats: catch-up after %s gave up (%s: %s); asking for a'
                ' full resync (%d time(s) so far)', reasons, outcome,
                detail, self.stats[FALLBACKS[outcome]])
        for message in held:
            delivery.deliver_checked(*message[:3], replayed=message[4],
                                     hold_gaps=False)

    def _end(self):
        self.active = False
        self._awaiting = False
        self._proof_wait = False
        self._held.clear()
        self._held_bytes = 0
        self._held_dropped = False
        self._again = False
        self._reasons = set()


def _in_stream_order(messages):
    """``messages`` with each publisher stream's in the order of its
    numbers (a message that fills a hole before those it lets through),
    the streams in the order they first appear; untracked ones last.
    """
    first_seen = {}
    keyed = []
    for index, message in enumerate(messages):
        parsed = sequence.parse(message[1])
        if parsed is None:
            keyed.append(((len(messages), index), message))
            continue
        publisher, incarnation, n = parsed
        stream = first_seen.setdefault((publisher, incarnation, message[0]),
                                       index)
        keyed.append(((stream, n), message))
    keyed.sort(key=lambda item: item[0])
    return [message for _, message in keyed]
