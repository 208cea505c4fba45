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

"""Catch-up scenarios, run by world_runner in one world each
(``--module=replay_scenarios``; the parent is test_replay.py).
"""

import json
import threading
import time

from oslo_config import cfg

from df_nats.cmd import demo_worker
from df_nats.conf import options
from df_nats.conf import timeouts
from df_nats.pubsub import process_context
from tests.functional import scenarios


def _stats(sub):
    return dict(sub.stats)


def _seqs(got):
    return [json.loads(e[3])['seq'] for e in got.events]


def _send(pub, first, count, topic='D'):
    for i in range(first, first + count):
        pub.send_event(demo_worker.demo_event(i, topic, 'replay'))


def scenario_reconnect_caught_up(ctx):
    """A server restart: what was published meanwhile arrives, no sync."""
    pub, sub, got = scenarios._pubsub(ctx)
    _send(pub, 0, 50)
    ctx.wait_until(lambda: len(got.events) == 50, what='50 events')
    # A catch-up starts REPLAY_MARGIN before the loss: from before the
    # stream was made it could not prove a thing.
    ctx.settle(timeouts.REPLAY_MARGIN + 0.5)
    assert ctx.ask_parent('restart-server') == 'done'
    _send(pub, 50, 50)
    ctx.wait_until(lambda: len(got.events) == 100, timeout=20,
                   what='100 events')
    ctx.settle(1.0)
    stats = _stats(sub)
    assert got.syncs == 0 and _seqs(got) == list(range(100)), (
        got.syncs, _seqs(got), stats)
    assert stats.get('catchup_reconnect') == 1, stats
    assert stats.get('replays') == 1, stats
    pub.close()
    sub.close()


def scenario_window_passed_one_sync(ctx):
    """The stream lost what a reconnect's catch-up needs: one resync."""
    pub, sub, got = scenarios._pubsub(ctx)
    _send(pub, 0, 20)
    ctx.wait_until(lambda: len(got.events) == 20, what='20 events')
    # Purged, then the server restarted within REPLAY_MARGIN of the last
    # event: the catch-up would start before what the stream holds.
    assert ctx.ask_parent('purge-and-restart') == 'done'
    try:
        ctx.wait_until(lambda: got.syncs, timeout=20, what='a sync')
    except AssertionError as exc:
        raise AssertionError('%s: %s' % (exc, _stats(sub))) from None
    _send(pub, 20, 10)
    ctx.wait_until(lambda: len(got.events) == 30, timeout=20,
                   what='30 events')
    ctx.settle(1.0)
    stats = _stats(sub)
    assert got.syncs == 1, (got.syncs, stats)
    assert stats.get('sync_window_passed') == 1, stats
    assert _seqs(got) == list(range(30)), _seqs(got)
    pub.close()
    sub.close()


def scenario_overflow_caught_up(ctx):
    """A delivery queue that overflows is caught up from the stream: every
    event, in order, and no resync.
    """
    cfg.CONF.set_override('delivery_queue_size',
                          options.MIN_DELIVERY_QUEUE_SIZE, options.GROUP)
    release = threading.Event() if ctx.world == 'native' else None
    if release is None:
        import eventlet.event
        release = eventlet.event.Event()
    got = scenarios.Collector()
    blocked = []

    def callback(table, key, action, value, topic):
        if not blocked:
            blocked.append(True)
            release.wait()
        got(table, key, action, value, topic)

    pub, sub, _ = scenarios._pubsub(ctx, callback=callback)
    n = 4000   # ~2 MB of events: twice the queue
    ctx.settle(timeouts.REPLAY_MARGIN + 0.5)   # the stream is older
    _send(pub, 0, n)
    assert pub.flush(30)
    # The callback holds the subscriber's world: the overflow is only
    # counted once it runs again.
    ctx.settle(1.0)
    if ctx.world == 'native':
        release.set()
    else:
        release.send()
    ctx.wait_until(lambda: len(got.events) >= n, timeout=30,
                   what='%d events' % n)
    ctx.settle(1.0)
    stats = _stats(sub)
    assert stats.get('overflow', 0) >= 1, stats
    assert _seqs(got) == list(range(n)), (stats, _seqs(got)[:50])
    assert got.syncs == 0, stats
    assert stats.get('catchup_overflow', 0) >= 1, stats
    assert stats.get('replayed', 0) >= 1, stats
    pub.close()
    sub.close()


def scenario_forged_gaps_bounded(ctx):
    """A flood of forged gaps: catch-ups stay within their rate; the real
    publisher's events arrive, or a resync covers them.
    """
    pub, sub, got = scenarios._pubsub(ctx)
    _send(pub, 0, 10)
    ctx.wait_until(lambda: len(got.events) == 10, what='10 events')
    ctx.settle(timeouts.REPLAY_MARGIN + 0.5)   # the stream is older
    conn = process_context.current().connection
    subject = '%s.topic.D' % conn.conf.subject_prefix
    # What anyone reading the subject sees: the publisher's last Df-Seq.
    stream = pub._by_subject[subject]
    started = time.monotonic()
    # The parent sends 300 messages numbered ahead of it, as fast as it
    # can.
    assert ctx.ask_parent('forge %s %s' % (
        subject, stream.header(stream.n))) == 'done'
    syncs_before = got.syncs
    _send(pub, 10, 10)
    assert pub.flush(10)
    ctx.settle(3.0)
    elapsed = time.monotonic() - started
    stats = _stats(sub)
    seqs = _seqs(got)
    assert seqs[:10] == list(range(10)), (seqs, stats)
    # Never an older real event after a newer one.
    assert seqs == sorted(seqs), seqs
    missing = set(range(10, 20)) - set(seqs)
    assert not missing or got.syncs > syncs_before, (missing, stats)
    # Live gaps start no catch-up (Delivery.catch_up_gaps); were they
    # to, at most the burst plus one a second.
    allowed = timeouts.REPLAY_BURST + elapsed / timeouts.GAP_REPLAY_INTERVAL
    assert stats.get('catchup_gap', 0) <= allowed + 1, (stats, elapsed)
    assert not stats.get('replays'), stats
    pub.close()
    sub.close()
