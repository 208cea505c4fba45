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

"""The subscriber's catch-up from the capture stream, on fakes.

The loop's timers are kept (``fakes.Loop``) and fired by the test; the
fetch itself (``replay_fetch.fetch_on_loop``) is replaced by one that
answers what the test scripted; the caller's world runs what is posted
when the test says (``world.run()``), as the dispatcher would. The
catch-up's clock is the fake loop's. The real fetch on a real server is
in tests/functional.
"""

import asyncio
import logging
import time
import types

import pytest

from df_nats.conf import options
from df_nats.conf import timeouts
from df_nats.pubsub import catch_up
from df_nats.pubsub import delivery
from df_nats.transport import replay_fetch
from df_nats.wire import codec
from df_nats.wire import sequence
from df_nats.wire import subjects
from tests.unit import fakes

SUBJECT = 'p.topic.D'
SYNC = (None, None, 'sync', None, None)


def _headers(publisher, n, incarnation='abcd1234'):
    return {sequence.HEADER_SEQ: sequence.seq_header(incarnation, n,
                                                     publisher)}


def _body(key, value='{}'):
    return codec.pack_event({'table': 'lport', 'key': key, 'action': 'set',
                             'value': value, 'topic': 'D'})


class _Harness:
    """A Delivery with catch-up on a fake connection and a scripted
    fetch: ``answers`` are handed out in turn (a Fetched, or an
    exception the fetch raises); when none is left, OK with nothing.
    """

    def __init__(self, conf, monkeypatch, **values):
        settings = dict(subject_prefix='p', replay_stream='EVENTS',
                        resync_interval=5.0)
        settings.update(values)
        conf.config(group=options.GROUP, **settings)
        conn = self.conn = fakes.Connection(options.validate(conf.conf))
        conn.nc = object()
        self.world = conn.bridge.world
        self.world.deferred = True
        self.loop = conn.bridge.loop
        self.loop.create_task = asyncio.run
        monkeypatch.setattr(catch_up, 'time', types.SimpleNamespace(
            monotonic=lambda: self.loop.now, time_ns=time.time_ns))
        monkeypatch.setattr(replay_fetch, 'fetch_on_loop', self._fetch)
        self.answers = []
        self.requests = []      # (at, start_ns, start_seq, subjects)
        self.calls = []
        self.path = delivery.Delivery()
        self.path.callback = lambda *event: self.calls.append(event)
        self.path.attach(conn, subjects.SubjectMap('p', True),
                         lambda: [SUBJECT])
        self.path.start()
        self.catch_up = self.path._catch_up
        self.stats = self.path.stats

    async def _fetch(self, nc, stream, prefix, subjects, start_ns,
                     limit_events, limit_bytes, timeout, start_seq=None,
                     progress=None):
        assert (stream, prefix) == ('EVENTS', 'p')
        self.requests.append((self.loop.now, start_ns, start_seq,
                              subjects))
        if not self.answers:
            return replay_fetch.Fetched(replay_fetch.OK, [])
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def live(self, publisher, n, key=None, incarnation='abcd1234',
             value='{}'):
        """A live message arrives (loop thread), then the world runs."""
        msg = types.SimpleNamespace(
            subject=SUBJECT, headers=_headers(publisher, n, incarnation),
            data=_body(key or '%s-%d' % (publisher, n), value))
        coro = self.path.on_message(msg)
        with pytest.raises(StopIteration):
            coro.send(None)
        self.world.run()

    def step(self, seconds=0.0):
        """Time passes: the loop's timers fire, the world runs."""
        self.loop.fire(seconds)
        self.world.run()

    def reconnect(self, disconnected_ns=None):
        self.conn.disconnected_ns = disconnected_ns or time.time_ns()
        self.path.reconnected_on_loop()
        self.world.run()

    def keys(self):
        """What the callback got: event keys, and 'SYNC'."""
        return ['SYNC' if call == SYNC else call[1] for call in self.calls]


def _stored(publisher, n, seq=None, key=None, incarnation='abcd1234'):
    return replay_fetch.Stored(seq or n, SUBJECT,
                               _headers(publisher, n, incarnation),
                               _body(key or '%s-%d' % (publisher, n)))


def _ok(*messages, last_seq=0):
    return replay_fetch.Fetched(replay_fetch.OK, list(messages),
                                last_seq=last_seq)


def _of(keys, publisher):
    return [k for k in keys if k.startswith(publisher + '-')]


@pytest.fixture
def h(conf, monkeypatch):
    return _Harness(conf, monkeypatch)


# -- a reconnect ------------------------------------------------------------

def test_a_reconnect_fetches_after_settling_holding_what_arrives(h):
    for n in (1, 2):
        h.live('a', n)
        h.live('b', n)
    lost_at = time.time_ns()
    h.reconnect(lost_at)
    assert h.catch_up.active and h.requests == []
    h.step(timeouts.REPLAY_SETTLE - 0.01)
    assert h.requests == []
    # Live messages meanwhile are held.
    h.live('a', 5)
    h.live('b', 4)
    assert h.keys() == ['a-1', 'b-1', 'a-2', 'b-2']
    h.answers.append(_ok(_stored('a', 2, 10), _stored('b', 3, 11),
                         _stored('a', 3, 12), _stored('a', 4, 13),
                         last_seq=13))
    h.step(0.01)
    assert len(h.requests) == 1
    _, start_ns, start_seq, subjects_asked = h.requests[0]
    assert start_ns == lost_at - int(timeouts.REPLAY_MARGIN * 1e9)
    assert start_seq is None and subjects_asked == [SUBJECT]
    keys = h.keys()
    assert keys[4:] and 'SYNC' not in keys
    assert _of(keys, 'a') == ['a-1', 'a-2', 'a-3', 'a-4', 'a-5']
    assert _of(keys, 'b') == ['b-1', 'b-2', 'b-3', 'b-4']
    assert not h.catch_up.active
    assert h.stats['duplicates'] == 1          # a-2, fetched again
    assert h.stats['replayed'] == 3
    assert h.stats['catchup_reconnect'] == 1 and h.stats['replays'] == 1
    assert h.stats['syncs'] == 0 and h.stats['gaps'] == 0
    # Then live again, in step.
    h.live('a', 6)
    assert h.keys()[-1] == 'a-6'


def test_after_a_reconnect_the_first_live_message_in_step_ends_it(h):
    h.live('a', 1)
    h.reconnect()
    h.answers.append(_ok(_stored('a', 2, 10), last_seq=10))
    h.step(timeouts.REPLAY_SETTLE)
    # Fetched and delivered, but nothing live came through the new
    # server yet: still holding.
    assert h.keys() == ['a-1', 'a-2'] and h.catch_up.active
    h.step(timeouts.REPLAY_HOLE_WAIT / 2)
    h.live('a', 3)
    assert h.keys() == ['a-1', 'a-2', 'a-3']
    assert not h.catch_up.active and len(h.requests) == 1
    h.step(timeouts.REPLAY_HOLE_WAIT)
    h.live('a', 4)
    assert h.keys()[-1] == 'a-4' and h.stats['syncs'] == 0


def test_after_a_reconnect_what_its_interest_came_too_late_for_is_fetched(
        h):
    # The subscription's interest reached the publisher's server after
    # a-3 was sent there, and the fetch read the stream before a-3 was
    # stored: neither live nor fetched. The first live message, a-4, is
    # ahead: the fetch is asked for again, from where it stopped.
    h.live('a', 1)
    h.reconnect()
    h.answers.append(_ok(_stored('a', 2, 10), last_seq=10))
    h.step(timeouts.REPLAY_SETTLE)
    h.answers.append(_ok(_stored('a', 3, 11), last_seq=11))
    h.step(0.5)
    h.live('a', 4)
    assert h.keys() == ['a-1', 'a-2'] and h.catch_up.active
    h.step(timeouts.REPLAY_RETRY)
    assert len(h.requests) == 2 and h.requests[1][2] == 11
    assert h.keys() == ['a-1', 'a-2', 'a-3', 'a-4']
    assert not h.catch_up.active
    assert h.stats['syncs'] == 0 and h.stats['gaps'] == 0


def test_what_a_new_server_delivers_before_the_reconnect_is_held(h):
    # nats-py renews the subscriptions on the new server before it
    # announces the reconnect: a message from there is held from the
    # loss on, not taken for a gap, and comes after what is fetched.
    h.live('a', 1)
    lost_at = time.time_ns()
    h.path.disconnected_on_loop()
    h.world.run()
    assert h.catch_up.active and h.requests == []
    h.live('a', 4)
    assert h.keys() == ['a-1'] and h.stats['gaps'] == 0
    h.step(30.0)                       # however long the outage
    assert h.requests == [] and h.catch_up.active
    h.reconnect(lost_at)
    h.answers.append(_ok(_stored('a', 2, 10), _stored('a', 3, 11),
                         last_seq=11))
    h.step(timeouts.REPLAY_SETTLE)
    assert len(h.requests) == 1
    assert h.requests[0][1] <= lost_at - int(timeouts.REPLAY_MARGIN * 1e9)
    assert h.keys() == ['a-1', 'a-2', 'a-3', 'a-4']
    assert not h.catch_up.active
    assert h.stats['catchup_reconnect'] == 1 and h.stats['syncs'] == 0
    assert h.stats['gaps'] == 0


def test_a_loss_while_disconnected_waits_for_the_reconnect(h):
    h.path.disconnected_on_loop()
    h.world.run()
    assert h.catch_up.start('delivery queue full', time.time_ns())
    h.step(5.0)
    assert h.requests == [] and h.stats['catchup_overflow'] == 0
    h.reconnect()
    h.step(timeouts.REPLAY_SETTLE)
    assert len(h.requests) == 1
    h.step(timeouts.REPLAY_HOLE_WAIT)   # no live message since
    assert len(h.requests) == 1 and not h.catch_up.active
    assert h.stats['catchup_reconnect'] == h.stats['catchup_overflow'] == 1
    assert h.keys() == []


def test_without_a_stream_a_reconnect_is_a_resync_as_before(
        conf, monkeypatch):
    h = _Harness(conf, monkeypatch, replay_stream='')
    h.live('a', 1)
    h.path.disconnected_on_loop()       # nothing held
    h.reconnect()
    assert h.keys() == ['a-1', 'SYNC']
    h.live('a', 4)                      # a gap: delivered, and a resync
    h.step(5.0)
    assert h.keys() == ['a-1', 'SYNC', 'a-4', 'SYNC']
    assert h.requests == [] and not h.catch_up.active
    assert h.stats['sync_reconnect'] == h.stats['sync_gap'] == 1
    assert h.stats['held'] == 0


# -- a gap --------------------------------------------------------------------

def test_a_gap_holds_the_message_and_fetches_what_is_missing(h):
    h.live('a', 1)
    h.live('a', 4)
    assert h.keys() == ['a-1'] and h.catch_up.active
    h.answers.append(_ok(_stored('a', 2), _stored('a', 3), last_seq=3))
    h.step()                      # the fetch starts at once
    assert len(h.requests) == 1
    assert h.keys() == ['a-1', 'a-2', 'a-3', 'a-4']
    assert h.stats['catchup_gap'] == 1 and h.stats['held'] == 1
    assert h.stats['syncs'] == h.stats['gaps'] == 0


def test_a_gap_without_a_stream_is_delivered_with_a_resync(
        conf, monkeypatch):
    h = _Harness(conf, monkeypatch, replay_stream='')
    h.live('a', 1)
    h.live('a', 4)
    assert h.keys() == ['a-1', 'a-4', 'SYNC']
    assert h.stats['gaps'] == 1 and h.stats['missed'] == 2


def test_a_hole_is_asked_for_again_then_filled(h):
    h.live('a', 1)
    h.live('a', 5)
    # 2 and 4 are in the stream, 3 not yet (still being routed).
    h.answers.append(_ok(_stored('a', 2, 1), _stored('a', 4, 2),
                         last_seq=2))
    h.step()
    assert h.keys() == ['a-1', 'a-2']
    assert h.catch_up.active
    h.step(timeouts.REPLAY_RETRY - 0.01)
    assert len(h.requests) == 1
    h.live('a', 6)                        # held behind the others
    h.answers.append(_ok(_stored('a', 3, 3), last_seq=3))
    h.step(0.01)
    assert len(h.requests) == 2
    assert h.requests[1][2] == 3          # goes on after what it read
    assert h.keys() == ['a-1', 'a-2', 'a-3', 'a-4', 'a-5', 'a-6']
    assert h.stats['syncs'] == 0 and not h.catch_up.active


def test_a_hole_that_stays_ends_in_exactly_one_sync(h):
    h.live('a', 1)
    h.live('b', 1)
    h.live('a', 5)
    h.answers.append(_ok(_stored('a', 2, 1), _stored('a', 4, 2),
                         _stored('b', 2, 3), last_seq=3))
    h.step()
    assert h.keys() == ['a-1', 'b-1', 'a-2', 'b-2']
    h.live('b', 3)       # b is in step: held all the same, then delivered
    h.live('a', 6)
    # Asked for again every REPLAY_RETRY until REPLAY_HOLE_WAIT.
    while h.catch_up.active:
        before = len(h.requests)
        h.step(timeouts.REPLAY_RETRY)
        assert len(h.requests) == before + 1
        assert h.loop.now <= timeouts.REPLAY_HOLE_WAIT + 1e-9
    assert len(h.requests) == 1 + int(round(
        timeouts.REPLAY_HOLE_WAIT / timeouts.REPLAY_RETRY))
    keys = h.keys()
    assert keys.count('SYNC') == 1
    assert _of(keys, 'a') == ['a-1', 'a-2', 'a-4', 'a-5', 'a-6']
    assert _of(keys, 'b') == ['b-1', 'b-2', 'b-3']
    assert h.stats['sync_hole'] == 1
    # No second one later (the gap is covered by it).
    h.step(30.0)
    assert h.keys().count('SYNC') == 1
    h.live('a', 7)
    assert h.keys()[-1] == 'a-7'


# -- fallbacks ----------------------------------------------------------------

@pytest.mark.parametrize('outcome', [
    replay_fetch.NO_STREAM, replay_fetch.WINDOW_PASSED, replay_fetch.SILENT,
    replay_fetch.OVER_LIMIT, replay_fetch.FAILED])
def test_each_outcome_but_ok_is_one_sync_then_what_was_held(h, outcome):
    h.live('a', 1)
    h.reconnect()
    h.live('a', 3)
    h.live('a', 4)
    if outcome == replay_fetch.SILENT:
        _unanswered(h, timeouts.REPLAY_SETTLE)
    else:
        h.answers.append(replay_fetch.Fetched(outcome, [], 'as scripted'))
        h.step(timeouts.REPLAY_SETTLE)
    # What was held reaches the callback before the sync does: an older
    # event after the sync could undo what the sync read.
    assert h.keys() == ['a-1', 'a-3', 'a-4', 'SYNC']
    assert h.stats[catch_up.FALLBACKS[outcome]] == 1
    assert sum(h.stats[counter] for counter in
               catch_up.FALLBACKS.values()) == 1
    assert not h.catch_up.active
    h.step(30.0)
    assert h.keys().count('SYNC') == 1


@pytest.mark.parametrize('error, outcome', [
    (RuntimeError('broken'), replay_fetch.FAILED),
    (ConnectionError('lost'), replay_fetch.SILENT)])
def test_a_fetch_that_raises_falls_back(h, error, outcome):
    h.live('a', 1)
    h.live('a', 3)
    h.answers.extend([error] * (1 + catch_up._SILENT_RETRIES))
    h.step()
    for _ in range(catch_up._SILENT_RETRIES):
        h.step(timeouts.REPLAY_RETRY)
    assert h.keys() == ['a-1', 'a-3', 'SYNC']
    assert h.stats[catch_up.FALLBACKS[outcome]] == 1


def test_held_messages_beyond_the_queue_size_end_in_a_sync(
        conf, monkeypatch):
    h = _Harness(conf, monkeypatch,
                 delivery_queue_size=options.MIN_DELIVERY_QUEUE_SIZE)
    big = 'x' * (options.MIN_DELIVERY_QUEUE_SIZE // 3)
    h.live('a', 1)
    h.reconnect()
    for n in (2, 3, 4, 5):
        h.live('a', n, value=big)
    assert h.stats['held'] == 2 and h.stats['overflow'] == 2
    h.step(timeouts.REPLAY_SETTLE)
    keys = h.keys()
    assert keys == ['a-1', 'a-2', 'a-3', 'SYNC']
    assert h.stats['sync_held_overflow'] == 1
    assert not h.catch_up.active


# -- rate and pacing -----------------------------------------------------

def _unanswered(h, first_delay=0.0):
    """JetStream answers none of the catch-up's fetches: the first,
    after ``first_delay``, and each one asked again.
    """
    h.answers.extend([replay_fetch.Fetched(replay_fetch.SILENT, [])]
                     * (1 + catch_up._SILENT_RETRIES))
    h.step(first_delay)
    for _ in range(catch_up._SILENT_RETRIES):
        h.step(timeouts.REPLAY_RETRY)


def _gap_caught_up(h, n):
    # a's n is lost, n + 1 arrives: a catch-up that finds n.
    h.answers.append(_ok(_stored('a', n)))
    h.live('a', n + 1)
    h.step()


def test_catch_ups_from_the_wire_are_rate_limited(h):
    h.live('a', 1)
    n = 2
    for _ in range(timeouts.REPLAY_BURST):
        _gap_caught_up(h, n)
        n += 2
    assert h.stats['catchup_gap'] == timeouts.REPLAY_BURST
    assert h.keys().count('SYNC') == 0
    # Beyond the burst: the old answer, a gap and a paced resync.
    fetches = len(h.requests)
    h.live('a', n + 1)
    assert len(h.requests) == fetches and not h.catch_up.active
    assert h.stats['catchups_refused'] == 1 and h.stats['gaps'] == 1
    assert h.keys()[-2:] == ['a-%d' % (n + 1), 'SYNC']
    # One more after GAP_REPLAY_INTERVAL.
    n += 2
    h.step(timeouts.GAP_REPLAY_INTERVAL)
    _gap_caught_up(h, n)
    assert h.stats['catchup_gap'] == timeouts.REPLAY_BURST + 1
    assert len(h.requests) == fetches + 1
    # The refused gap's resync is paced: another within the interval
    # waits for its end.
    n += 2
    h.live('a', n + 1)
    assert h.stats['catchups_refused'] == 2
    assert h.keys().count('SYNC') == 1 and h.stats['syncs_delayed'] == 1
    h.step(5.0)
    assert h.keys().count('SYNC') == 2


def test_a_reconnect_is_never_refused_and_its_fallback_is_not_paced(h):
    h.live('a', 1)
    n = 2
    for _ in range(timeouts.REPLAY_BURST):
        _gap_caught_up(h, n)
        n += 2
    h.live('a', n + 1)                 # refused: a gap and a sync now
    assert h.stats['catchups_refused'] == 1
    assert h.keys().count('SYNC') == 1
    h.reconnect()
    assert h.catch_up.active and h.stats['catchup_reconnect'] == 1
    _unanswered(h, timeouts.REPLAY_SETTLE)
    # Within resync_interval of the last sync, delivered all the same.
    assert h.keys().count('SYNC') == 2
    assert h.stats['syncs_delayed'] == 0


def test_the_fallback_of_a_gap_is_paced(h):
    h.live('a', 1)
    h.live('a', 3)
    _unanswered(h)
    assert h.keys().count('SYNC') == 1
    h.live('a', 5)
    _unanswered(h)
    assert h.keys().count('SYNC') == 1 and h.stats['syncs_delayed'] == 1
    h.step(5.0)
    assert h.keys().count('SYNC') == 2


def test_a_slow_consumer_starts_a_catch_up_at_once(h):
    h.live('a', 1)
    h.path.slow_consumer_on_loop()
    h.path.slow_consumer_on_loop()      # one post for both
    h.world.run()
    assert h.stats['catchup_slow_consumer'] == 1
    h.live('a', 3)
    h.answers.append(_ok(_stored('a', 2)))
    h.step()
    assert len(h.requests) == 1
    assert h.keys() == ['a-1', 'a-2', 'a-3']
    assert h.stats['syncs'] == 0


def test_an_overflow_starts_a_catch_up(h):
    h.live('a', 1)
    h.path._overflow_on_loop()
    h.world.run()
    assert h.stats['catchup_overflow'] == 1 and h.stats['overflow'] == 1
    h.answers.append(_ok(_stored('a', 2)))
    h.step()
    assert h.keys() == ['a-1', 'a-2'] and h.stats['syncs'] == 0


def test_a_trigger_while_active_makes_one_more_fetch_after(h):
    h.live('a', 1)
    lost_at = time.time_ns()
    h.reconnect(lost_at)
    # A slow consumer and a gap while catching up: folded in.
    h.path.recover('slow consumer', lost_at - 10 ** 9)
    h.path.slow_consumer_on_loop()
    h.world.run()
    assert h.stats['catchup_slow_consumer'] == 0
    h.answers.append(_ok(_stored('a', 2), last_seq=7))
    h.step(timeouts.REPLAY_SETTLE)
    assert len(h.requests) == 1
    assert h.catch_up.active            # once more
    h.step(timeouts.REPLAY_HOLE_WAIT)   # no live message since
    h.step(timeouts.REPLAY_SETTLE)
    assert len(h.requests) == 2
    # From the earliest loss, the margin taken once.
    assert h.requests[1][1] == lost_at - 10 ** 9 - int(
        timeouts.REPLAY_MARGIN * 1e9)
    h.step(timeouts.REPLAY_HOLE_WAIT)
    assert not h.catch_up.active
    h.step(10.0)
    assert len(h.requests) == 2
    assert h.keys() == ['a-1', 'a-2'] and h.stats['syncs'] == 0


# -- stale results, stop ------------------------------------------------------

def test_a_result_for_an_older_fetch_is_ignored(h):
    h.live('a', 1)
    h.live('a', 3)
    h.step()                              # OK, nothing: a-2 is missing
    assert h.catch_up.active
    old = h.catch_up._fetch_id - 1
    h.catch_up._fetched(old, replay_fetch.Fetched(replay_fetch.FAILED, []))
    h.catch_up._fetched(old, _ok(_stored('a', 2)))
    assert h.catch_up.active and h.keys() == ['a-1']
    assert h.stats['syncs'] == 0 and h.stats['sync_replay_failed'] == 0
    h.answers.append(_ok(_stored('a', 2)))
    h.step(timeouts.REPLAY_RETRY)
    assert h.keys() == ['a-1', 'a-2', 'a-3']
    # And after the end, a late result changes nothing either.
    h.catch_up._fetched(h.catch_up._fetch_id,
                        replay_fetch.Fetched(replay_fetch.FAILED, []))
    assert h.stats['syncs'] == 0


def test_stop_drops_everything(h):
    h.live('a', 1)
    h.reconnect()
    h.live('a', 3)
    h.path.stop()
    assert not h.catch_up.active and not h.catch_up._held
    h.answers.append(_ok(_stored('a', 2)))
    h.step(timeouts.REPLAY_SETTLE)    # the fetch set before runs...
    assert h.keys() == ['a-1']        # ... and its result is dropped
    assert h.stats['syncs'] == 0
    assert h.catch_up.start('gap', time.time_ns()) is False


def test_fetched_messages_without_numbers_are_not_delivered(h):
    h.live('a', 1)
    h.live('a', 3)
    h.answers.append(_ok(
        replay_fetch.Stored(1, SUBJECT, {}, _body('forged')),
        replay_fetch.Stored(2, SUBJECT, {'Df-Seq': 'x'}, _body('bad')),
        _stored('a', 2, 3)))
    h.step()
    assert h.keys() == ['a-1', 'a-2', 'a-3']
    assert h.stats['replay_untracked'] == 2


def test_copies_fetched_from_before_the_window_are_dropped(h):
    for n in range(1, 101):
        h.live('a', n)
    h.reconnect()
    h.answers.append(_ok(*[_stored('a', n) for n in range(1, 102)]))
    h.step(timeouts.REPLAY_SETTLE)
    keys = h.keys()
    assert _of(keys, 'a') == ['a-%d' % n for n in range(1, 102)]
    assert h.stats['duplicates'] == 100 and h.stats['rebaselines'] == 0
    assert 'SYNC' not in keys


def test_a_restarted_publisher_keeps_its_order(h):
    h.live('a', 40, incarnation='old00000')
    h.reconnect()
    # Stored in this order: the old incarnation's last two, then the
    # restarted publisher's first, which sets the same key anew.
    h.answers.append(_ok(
        _stored('a', 41, 1, key='k-old', incarnation='old00000'),
        _stored('a', 42, 2, key='k-old2', incarnation='old00000'),
        _stored('a', 1, 3, key='k-new', incarnation='new00000')))
    h.step(timeouts.REPLAY_SETTLE)
    assert h.keys() == ['a-40', 'k-old', 'k-old2', 'k-new']


def test_a_resent_message_stored_after_later_ones_comes_first(h):
    # The publisher resent 2 after its reconnect: the stream has it
    # after 3. Delivered in the publisher's order in one go.
    h.live('a', 1)
    h.live('a', 4)
    resent = _stored('a', 2, 3)
    resent.headers[sequence.HEADER_RESENT] = '1'
    h.answers.append(_ok(_stored('a', 3, 2), resent, last_seq=3))
    h.step()
    assert h.keys() == ['a-1', 'a-2', 'a-3', 'a-4']
    assert len(h.requests) == 1 and not h.catch_up.active


def test_a_loss_folded_in_and_refused_by_the_rate_still_gets_a_sync(h):
    h.live('a', 1)
    n = 2
    for _ in range(timeouts.REPLAY_BURST - 1):
        _gap_caught_up(h, n)
        n += 2
    # The last catch-up the burst allows...
    h.live('a', n + 1)
    assert h.catch_up.active
    # ... during which nats-py drops messages (a slow consumer): the
    # catch-up is to go on once more, from then.
    h.path.slow_consumer_on_loop()
    h.world.run()
    fetches = len(h.requests)
    h.answers.append(_ok(_stored('a', n)))
    h.step()
    assert 'a-%d' % (n + 1) in h.keys()
    h.step(10.0)
    # Either fetched again, or a resync covers the loss.
    assert len(h.requests) > fetches + 1 or h.stats['syncs'] >= 1, (
        h.stats)


@pytest.mark.parametrize('trigger, counter', [
    ('slow consumer', 'sync_slow_consumer'),
    ('delivery queue full', 'sync_overflow')])
def test_slow_consumers_and_overflows_share_the_rate_of_gaps(
        h, trigger, counter):
    h.live('a', 1)
    n = 2
    for _ in range(timeouts.REPLAY_BURST):
        _gap_caught_up(h, n)
        n += 2
    fetches = len(h.requests)
    h.path.recover(trigger, time.time_ns())
    h.step()
    assert len(h.requests) == fetches and not h.catch_up.active
    assert h.stats['catchups_refused'] == 1 and h.stats[counter] == 1
    assert h.keys()[-1] == 'SYNC'
    # And that resync is paced: one more within the interval waits.
    h.path.recover(trigger, time.time_ns())
    h.step()
    assert h.keys().count('SYNC') == 1 and h.stats['syncs_delayed'] == 1


def test_no_stream_is_warned_once(h, caplog):
    h.live('a', 1)
    n = 2
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            h.step(timeouts.GAP_REPLAY_INTERVAL * 10)
            h.answers.append(replay_fetch.Fetched(replay_fetch.NO_STREAM,
                                                  [], 'not found'))
            h.live('a', n + 1)
            h.step()
            n += 2
    assert h.stats['sync_no_stream'] == 2
    assert caplog.text.count('no capture stream to catch up from') == 1


def test_a_reconnect_folded_into_a_gap_makes_its_fallback_unpaced(h):
    h.live('a', 1)
    h.path.request_sync('gap')          # a sync just now: the next waits
    h.world.run()
    h.live('a', 3)
    assert h.catch_up.active
    h.reconnect()
    _unanswered(h)
    assert h.keys() == ['a-1', 'SYNC', 'a-3', 'SYNC']
    assert h.stats['syncs_delayed'] == 0


@pytest.fixture(autouse=True)
def _gaps_catch_up(monkeypatch):
    # The catch-up's own logic (holes, order, fallbacks) driven by gaps,
    # the simplest trigger; live gaps start none by default.
    from df_nats.pubsub import delivery as _delivery
    monkeypatch.setattr(_delivery.Delivery, 'catch_up_gaps', True)


def test_an_unanswered_fetch_is_asked_again(h):
    h.live('a', 1)
    h.reconnect()
    h.live('a', 4)
    h.answers.append(replay_fetch.Fetched(replay_fetch.SILENT, [], 'late'))
    h.answers.append(_ok(_stored('a', 2, seq=10), _stored('a', 3, seq=11),
                         last_seq=11))
    h.step(timeouts.REPLAY_SETTLE)
    assert h.catch_up.active and h.keys() == ['a-1']
    h.step(timeouts.REPLAY_RETRY)
    assert h.keys() == ['a-1', 'a-2', 'a-3', 'a-4']
    assert h.stats['replay_retries'] == 1
    assert h.stats['sync_replay_silent'] == 0 and not h.catch_up.active
    # The retry fetched from where the catch-up started, as the first.
    assert h.requests[0][1:] == h.requests[1][1:]


def test_no_retry_past_the_deadline(h):
    h.live('a', 1)
    h.reconnect()
    h.answers.append(replay_fetch.Fetched(replay_fetch.SILENT, []))
    # The fetch was answered (silent) only at the deadline.
    h.step(catch_up._DEADLINE)
    assert h.keys() == ['a-1', 'SYNC']
    assert h.stats['replay_retries'] == 0
    assert h.stats['sync_replay_silent'] == 1


def _never_answered(h, monkeypatch):
    # The fetch is asked for on the loop thread and never answers.
    asked = []
    monkeypatch.setattr(h.catch_up, '_fetch_on_loop',
                        lambda conn, request: asked.append(request))
    return asked


def test_a_catch_up_never_answered_ends_at_its_deadline(h, monkeypatch):
    asked = _never_answered(h, monkeypatch)
    h.live('a', 1)
    h.reconnect()
    h.live('a', 4)
    h.step(timeouts.REPLAY_SETTLE)
    assert len(asked) == 1 and h.catch_up.active
    h.step(catch_up._DEADLINE)
    assert not h.catch_up.active
    assert 'SYNC' in h.keys() and 'a-4' in h.keys()
    assert h.stats['sync_replay_silent'] == 1


@pytest.mark.parametrize('moved', ['asked', 'heard'])
def test_a_catch_up_behind_but_moving_on_outlives_the_deadline(
        h, monkeypatch, moved):
    # A loaded machine, just before the deadline: the world asked for a
    # fetch (it took an answer late), or the fetch heard a reply (they
    # come slowly). It goes on, then ends if nothing more comes.
    _never_answered(h, monkeypatch)
    h.live('a', 1)
    h.reconnect()
    h.step(catch_up._DEADLINE - 0.5)
    if moved == 'asked':
        h.catch_up._asked = h.loop.now
    else:
        h.catch_up._progress.heard = h.loop.now
    h.step(1.0)                           # the deadline passes
    assert h.catch_up.active and 'SYNC' not in h.keys()
    h.step(catch_up._STALL)               # nothing since
    assert not h.catch_up.active and h.keys() == ['a-1', 'SYNC']
    assert h.stats['sync_replay_silent'] == 1


def test_no_catch_up_outlives_its_last_deadline(h, monkeypatch):
    _never_answered(h, monkeypatch)
    h.live('a', 1)
    h.reconnect()
    for _ in range(int(catch_up._LAST_DEADLINE / catch_up._STALL) + 2):
        h.catch_up._asked = h.loop.now    # always asking again
        h.step(catch_up._STALL)
        if not h.catch_up.active:
            break
    assert not h.catch_up.active and h.keys() == ['a-1', 'SYNC']
    assert h.loop.now <= catch_up._LAST_DEADLINE + catch_up._STALL + 0.01


def test_a_hole_stays_only_if_a_fetch_asked_after_the_wait_has_it(
        h, monkeypatch):
    # A loaded machine: every fetch is answered 2 s after it was asked,
    # longer than the hole's wait; the hole fills on the third.
    asked = _never_answered(h, monkeypatch)

    def answer(result):
        h.step(2.0)
        h.catch_up._fetched(asked[-1][0], result)
        h.world.run()

    h.live('a', 1)
    h.live('a', 4)                        # a gap: a catch-up at once
    h.step()
    answer(_ok(_stored('a', 2, 1), last_seq=1))
    assert h.keys() == ['a-1', 'a-2'] and h.catch_up.active
    h.step(timeouts.REPLAY_RETRY)
    assert len(asked) == 2
    # Answered past the wait, but asked for within it: asked again.
    answer(_ok(last_seq=1))
    h.step(timeouts.REPLAY_RETRY)
    assert len(asked) == 3 and h.catch_up.active
    answer(_ok(_stored('a', 3, 2), last_seq=2))
    assert h.keys() == ['a-1', 'a-2', 'a-3', 'a-4']
    assert h.stats['syncs'] == 0 and not h.catch_up.active
