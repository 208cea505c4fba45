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

"""Hostile publishers against a subscriber, on a real nats-server.

Run by world_runner in an eventlet and a native process. The attacker is
tests/functional/forger.py: a raw nats-py client in a process of its own,
allowed to publish on the topic subjects, as anyone with publish
permission there is. Each scenario reproduces one defect of issue 11 and
asserts what must hold: no forged header silences a publisher, resyncs
are paced, gap detection cannot be blinded, memory is bounded in bytes,
badly typed events never reach the callback. ``scenario_fuzz`` does all
of it at once and prints its figures (``FUZZ {...}``).
"""

import json
import os
import random
import subprocess
import sys
import tempfile
import time

import msgpack
from oslo_config import cfg

from df_nats.conf import options
from df_nats.pubsub import api
from df_nats.wire import codec
from df_nats.wire import sequence
from df_nats.wire import subjects
from tests.functional import scenarios

SEQ = sequence.HEADER_SEQ
MARK = sequence.HEADER_MARK


def _set(**values):
    for name, value in values.items():
        cfg.CONF.set_override(name, value, group=options.GROUP)


def _subject(sub, topic='D'):
    return sub._subjects.subject(subjects.topic_bytes(topic))


def _live_header(pub, subject, n):
    """The ``Df-Seq`` the live publisher ``pub`` would give message n."""
    return pub._by_subject[subject].header(n)


def _body(key, /, action='set', **fields):
    event = {'table': 'lport', 'key': key, 'action': action,
             'value': '{}', 'topic': 'D'}
    event.update(fields)
    return msgpack.packb(event, use_bin_type=True)


def forge(ctx, items, rate=0.0, wait=True, follow=None):
    """Have a raw nats-py process publish ``items`` (see forger.py).

    ``follow``: a subject the forger reads first; this returns its
    process once it listens there, whatever ``wait`` says.
    """
    fd, path = tempfile.mkstemp(
        suffix='.forge', dir=os.environ.get('DF_NATS_TEST_TMP'))
    with os.fdopen(fd, 'wb') as spec:
        spec.write(msgpack.packb(items, use_bin_type=True))
    cmd = [sys.executable, '-m', 'tests.functional.forger', ctx.url, path]
    if rate:
        cmd += ['--rate', str(rate)]
    if follow:
        cmd += ['--follow', follow]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    if follow:
        line = proc.stdout.readline()
        assert line == 'listening\n', (line, proc.stderr.read()[-3000:])
        return proc
    if not wait:
        return proc
    return _forged(proc)


def _forged(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0 and out.startswith('forged'), err[-3000:]
    return out.strip()


def rss_mib(field='VmRSS'):
    """This process's resident memory (or its peak, VmHWM) in MiB."""
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024.0
    raise AssertionError('no %s in /proc/self/status' % field)


class TimedCollector(scenarios.Collector):
    """A Collector that also notes when each sync came.

    It keeps the values' lengths, not the values: what it holds must not
    count in the subscriber's memory.
    """

    def __init__(self, delay=0.0):
        super().__init__()
        self.sync_times = []
        self._delay = delay

    def __call__(self, table, key, action, value, topic):
        if action == 'sync':
            self.sync_times.append(time.monotonic())
        elif self._delay:
            time.sleep(self._delay)   # a slow controller
        super().__call__(table, key, action,
                         None if value is None else len(value), topic)


def _unchanged(figures, seconds=1.0):
    """A predicate: true once ``figures()`` stayed the same ``seconds``."""
    last = [None, 0.0]

    def check():
        now, value = time.monotonic(), figures()
        if value != last[0]:
            last[:] = [value, now]
        return now - last[1] >= seconds
    return check


def _send(pub, keys, topic='D'):
    for key in keys:
        pub.send_event(api.DbUpdate('lport', key, 'set', '{}',
                                    topic=topic))


def _arrived(got, keys):
    have = set(got.keys())
    return all(k in have for k in keys)


# -- defect 2: one forged message silences a publisher -----------------------

def scenario_forged_jump(ctx):
    pub, sub, got = scenarios._pubsub(ctx)
    _send(pub, ['a%d' % i for i in range(10)])
    ctx.wait_until(lambda: len(got.events) == 10, what='10 events')
    subject = _subject(sub)
    # A mark copying the live stream with n = 10**12, then real events.
    forge(ctx, [[subject, {SEQ: _live_header(pub, subject, 10 ** 12),
                           MARK: '1'}, b'', 1]])
    ctx.wait_until(lambda: sub.stats['marks'] >= 1, what='the forged mark')
    first = ['b%d' % i for i in range(100)]
    _send(pub, first)
    ctx.wait_until(lambda: _arrived(got, first), what='100 events after'
                   ' the forged mark (got %d)' % len(got.events))
    # A forged event with n = 2 * 10**12, then real events again.
    forge(ctx, [[subject, {SEQ: _live_header(pub, subject, 2 * 10 ** 12)},
                 _body('forged'), 1]])
    ctx.wait_until(lambda: 'forged' in got.keys(), what='the forged event')
    second = ['c%d' % i for i in range(100)]
    _send(pub, second)
    ctx.wait_until(lambda: _arrived(got, second), what='100 events after'
                   ' the forged event')
    ctx.settle()
    assert got.keys() == (['a%d' % i for i in range(10)] + first
                          + ['forged'] + second), got.keys()
    assert sub.stats['duplicates'] == 0, sub.stats
    assert sub.stats['jumps'] == 2, sub.stats
    assert 1 <= got.syncs <= 2, (got.syncs, sub.stats)
    pub.close()
    sub.close()


# -- issue 18: a forged next sequence number ---------------------------------

def scenario_forged_next_number(ctx):
    """The forger reads the publisher's number off the wire and sends the
    next one first: the real message with it is still delivered.
    """
    pub, sub, got = scenarios._pubsub(ctx)
    _send(pub, ['warm-up'])
    ctx.wait_until(lambda: 'warm-up' in got.keys())
    subject = _subject(sub)
    proc = forge(ctx, [[subject, {SEQ: '{next}'}, _body('forged'), 1]],
                 follow=subject)
    _send(pub, ['bait'])
    _forged(proc)
    ctx.wait_until(lambda: 'forged' in got.keys(), what='the forged event')
    burst = ['burst-%d' % i for i in range(50)]
    _send(pub, burst)
    try:
        ctx.wait_until(lambda: _arrived(got, burst), timeout=10)
    except AssertionError:
        pass
    delivered = len(set(burst) & set(got.keys()))
    print('forged next number: %d of 50 events of the next burst'
          ' delivered, %d sync(s), %d conflict(s), %d duplicate(s)' % (
              delivered, got.syncs, sub.stats['conflicts'],
              sub.stats['duplicates']))
    assert delivered == 50, (delivered, sub.stats)
    assert sub.stats['conflicts'] == 1, sub.stats
    assert sub.stats['duplicates'] == 0, sub.stats
    ctx.wait_until(lambda: got.syncs >= 1, what='the conflict\'s resync')
    # A true duplicate, the very message resent byte for byte: dropped,
    # counted, not a conflict.
    proc = forge(ctx, [[subject, 'copy', 'copy', 1]], follow=subject)
    _send(pub, ['copied'])
    _forged(proc)
    _send(pub, ['last'])
    ctx.wait_until(lambda: 'last' in got.keys())
    ctx.wait_until(lambda: sub.stats['duplicates'] == 1,
                   what='the copy dropped (%s)' % sub.stats)
    ctx.settle()
    assert sub.stats['conflicts'] == 1, sub.stats
    assert got.keys() == ['warm-up', 'bait', 'forged'] + burst + [
        'copied', 'last'], got.keys()
    pub.close()
    sub.close()


# -- defect 3: sync amplification ---------------------------------------------

def scenario_control_actions(ctx):
    got = TimedCollector()
    pub, sub, _ = scenarios._pubsub(ctx, callback=got)
    subject = _subject(sub)
    # 10,000 bodies whose action only ever originates inside Dragonflow.
    control = sorted(codec.CONTROL_ACTIONS)
    forge(ctx, [[subject, None, _body(None, action=control[i % 5],
                                      table=None, value=None, topic=None),
                 2000] for i in range(5)])
    _send(pub, ['after-control'])
    ctx.wait_until(lambda: 'after-control' in got.keys(),
                   what='an event after the control actions')
    assert got.syncs == 0 and got.events == [
        ('lport', 'after-control', 'set', len('{}'), 'D')], got.events
    assert sub.stats['malformed'] == 10000, sub.stats
    pub.close()
    sub.close()


def scenario_forged_gaps_paced(ctx):
    interval = 1.0
    _set(resync_interval=interval)
    got = TimedCollector()
    pub, sub, _ = scenarios._pubsub(ctx, callback=got)
    subject = _subject(sub)
    # A trickle of forged gaps: 1,000 messages a second for 3 s, each
    # skipping a number of a stream of its own.
    gap_times = []
    count_gap = sub._delivery._count_gap

    def timed_gap(*args):
        gap_times.append(time.monotonic())
        count_gap(*args)
    sub._delivery._count_gap = timed_gap
    gaps = [[subject, {SEQ: 'forger f00d.%d' % (2 * i + 1)}, _body('g'), 1]
            for i in range(3000)]
    started = time.monotonic()
    forge(ctx, gaps, rate=1000)
    ctx.wait_until(lambda: sub.stats['gaps'] == 2999, timeout=30,
                   what='the 2,999 forged gaps (%s)' % sub.stats)
    gaps_done = time.monotonic()
    # The sync the last gaps asked for comes at the interval's end.
    ctx.wait_until(lambda: got.sync_times
                   and got.sync_times[-1] >= gap_times[-1],
                   timeout=interval + 5,
                   what='the paced sync after the last gap')
    ctx.settle(interval + 0.5)
    seconds = gaps_done - started
    print('sync amplification: %d gaps in %.1f s gave %d syncs'
          ' (%d suppressed, %d delayed)' % (
              sub.stats['gaps'], seconds, got.syncs,
              sub.stats['syncs_suppressed'], sub.stats['syncs_delayed']))
    assert got.syncs <= seconds / interval + 2, (got.syncs, seconds)
    spacing = [b - a for a, b in zip(got.sync_times, got.sync_times[1:])]
    assert all(s >= interval * 0.9 for s in spacing), spacing
    pub.close()
    sub.close()


# -- defect 4: gap detection blinded by forged streams ------------------------

def scenario_tracker_blinding(ctx):
    # The subscriber knows the registered publishers through the registry
    # watch; 100 streams of each kind at most, so that the forged ones
    # would push the real one out if they were not kept apart.
    _set(publisher_events=True, sequence_streams=100)
    pub, sub, got = scenarios._pubsub(ctx)
    me = pub.publisher_id
    ctx.wait_until(lambda: ('publisher', me) in [e[:2] for e in got.events],
                   what='the publisher registered')
    _send(pub, ['real-1'])
    ctx.wait_until(lambda: 'real-1' in got.keys())
    subject = _subject(sub)
    forge(ctx, [[subject, {SEQ: 'forged-{i} x.1'}, _body('forged'), 5000]])
    ctx.wait_until(lambda: got.keys().count('forged') == 5000, timeout=60,
                   what='5,000 forged streams (%s)' % sub.stats)
    # A real gap: an event the publisher could not send (what
    # PublishBufferFull does) makes its next number jump.
    pub._by_subject[subject].skip()
    _send(pub, ['real-2'])
    ctx.wait_until(lambda: got.syncs >= 1, what='the sync of the real gap'
                   ' (%s)' % sub.stats)
    assert sub.stats['gaps'] == 1 and sub.stats['missed'] == 1, sub.stats
    tracker = sub._delivery._tracker
    assert tracker.known_count() == 1, len(tracker)
    print('tracker blinding: %d forged streams, %d tracked, %d untracked'
          ' (over the admission rate); the real gap gave %d sync' % (
              5000, len(tracker) - 1, sub.stats['untracked_streams'],
              got.syncs))
    pub.close()
    sub.close()


# -- defect 5: memory bounded by bytes ----------------------------------------

def scenario_big_headers(ctx):
    _set(delivery_queue_size=8 * 1024 * 1024)
    pub, sub, got = scenarios._pubsub(ctx)
    subject = _subject(sub)
    _send(pub, ['warm-up'])
    ctx.wait_until(lambda: 'warm-up' in got.keys())
    before = rss_mib()
    big = 'P{i}' + 'x' * (900 * 1024)
    # 300 x 900 KiB at 50 a second: faster, a loaded machine's server
    # cuts the subscriber off as a slow consumer (a resync, no loss).
    forge(ctx, [[subject, {SEQ: big + ' f00d.1'}, _body('big'), 300]],
          rate=50)
    ctx.wait_until(_unchanged(lambda: (
        got.keys().count('big'), sub.stats['overflow'], got.syncs)),
        timeout=60, what='the big headers handled')
    grown = rss_mib() - before
    delivered = got.keys().count('big')
    print('big headers: 300 x 900 KiB Df-Seq values, RSS %+.1f MiB,'
          ' %d delivered, %d streams tracked, %d dropped (queue full),'
          ' %d resync(s)' % (grown, delivered, len(sub._delivery._tracker),
                             sub.stats['overflow'], got.syncs))
    assert len(sub._delivery._tracker) <= 1, len(sub._delivery._tracker)
    assert sub.stats['bad_headers'] == delivered, sub.stats
    # Nothing lost without a resync.
    assert delivered + sub.stats['overflow'] == 300 or got.syncs, sub.stats
    assert grown < 64, grown
    pub.close()
    sub.close()


def scenario_slow_callback_queue_bounded(ctx):
    queue = 4 * 1024 * 1024
    _set(delivery_queue_size=queue)
    got = TimedCollector(delay=0.002)
    pub, sub, _ = scenarios._pubsub(ctx, callback=got)
    subject = _subject(sub)
    _send(pub, ['warm-up'])
    ctx.wait_until(lambda: 'warm-up' in got.keys())
    before = rss_mib()
    peak = [0.0]
    count = 2000
    proc = forge(ctx, [[subject, None, _body('flood', value='v' * 100000),
                        count]], wait=False)
    while proc.poll() is None:
        peak[0] = max(peak[0], rss_mib())
        time.sleep(0.05)
    _forged(proc)

    def settled():
        peak[0] = max(peak[0], rss_mib())
        return got.keys().count('flood') + sub.stats['overflow'] == count
    ctx.wait_until(settled, timeout=120, what='the flood handled (%s)'
                   % sub.stats)
    grown = peak[0] - before
    assert grown < 64, grown
    ctx.wait_until(lambda: got.syncs >= 1, what='the overflow resync')
    print('slow callback: %d x 100 KB, queue %d MiB: %d delivered, %d'
          ' dropped, %d sync(s), peak RSS %+.1f MiB' % (
              count, queue >> 20, got.keys().count('flood'),
              sub.stats['overflow'], got.syncs, grown))
    assert sub.stats['overflow'] > 0, sub.stats
    # nothing left counted
    assert sub._delivery._queued_in == sub._delivery._queued_out
    _send(pub, ['after-flood'])
    ctx.wait_until(lambda: 'after-flood' in got.keys())
    pub.close()
    sub.close()


# -- issue 19: slow batches and the memory a message costs ------------------

def _real_event_after(ctx, items, what):
    """A burst of ``items`` (body, count) from the forger, then a real
    event: how long the real one took, and what the subscriber counted.

    The forger sends the real event last, at once after the burst: under
    eventlet the scenario's own greenthread waits while the dispatcher
    works the queue off, and could only send it once that is done.
    """
    got = TimedCollector()
    pub, sub, _ = scenarios._pubsub(ctx, callback=got)
    subject = _subject(sub)
    _send(pub, ['warm-up'])
    ctx.wait_until(lambda: 'warm-up' in got.keys())
    arrived = {}

    def timed(table, key, action, value, topic):
        if key == 'real':
            arrived['real'] = time.monotonic()
        got(table, key, action, value, topic)
    sub.initialize(timed)
    forged = _forged(forge(ctx, [[subject, None, body, count]
                                 for body, count in items]
                           + [[subject, None, _body('real'), 1]],
                           wait=False), timeout=900)
    sent = float(forged.rsplit(' ', 1)[1])
    ctx.wait_until(lambda: 'real' in arrived or (
        got.sync_times and got.sync_times[-1] > sent
        and sub.stats['over_budget']), timeout=300,
        what='the real event or a resync after it (%s)' % sub.stats)
    delay = arrived.get('real', time.monotonic()) - sent
    # Whatever was queued is handled.
    ctx.wait_until(_unchanged(lambda: (
        sub.stats['malformed'], sub.stats['overflow'], got.syncs)),
        timeout=300)
    print('%s (%s): the real event %s %.2f s after it was sent; %d'
          ' malformed, %d dropped over the time budget (%d time(s)), %d'
          ' resync(s)' % (
              what, forged, 'delivered' if 'real' in arrived
              else 'dropped, covered by a resync', delay,
              sub.stats['malformed'], sub.stats['overflow'],
              sub.stats['over_budget'], got.syncs))
    if 'real' not in arrived or delay > 2.0:
        # Not delivered in time: the flood ended in a counted overflow
        # and a resync after the real event was sent.
        assert sub.stats['over_budget'] >= 1, sub.stats
        assert sub.stats['overflow'] > 0, sub.stats
        assert got.sync_times and got.sync_times[-1] > sent
        assert got.syncs <= 2, got.syncs   # paced: one, and maybe a gap's
    pub.close()
    sub.close()


def scenario_slow_batches(ctx):
    # Issue 19, item 4: 400 batches of 65,535 two-byte strings that are
    # not UTF-8 (128 KiB each) took 147 ms each, and delayed a real event
    # by 68 s.
    batch = codec.batch_body([b'\xa1\xff'] * 65535)
    _real_event_after(ctx, [(batch, 400)],
                      '400 x 128 KiB of invalid UTF-8 strings')


def scenario_slow_batches_of_events(ctx):
    # The same with elements shaped like events (47 bytes): each is
    # decoded, so these stay the most expensive per byte.
    event = _body('k').replace(b'\xa5lport', b'\xa5lp\xffrt')
    batch = codec.batch_body([event] * (128 * 1024 // len(event)))
    _real_event_after(ctx, [(batch, 400)],
                      '400 x 128 KiB of events whose table is invalid UTF-8')


def scenario_tiny_messages_memory(ctx):
    # Issue 19, item 5: 600,000 tiny messages in a 64 MiB queue took
    # 238 MB (2.8x). The subscriber's callback is blocked while they
    # come: the queue fills to its bound, and its memory is measured.
    queue = 16 * 1024 * 1024
    _set(delivery_queue_size=queue)
    gate = []
    got = TimedCollector()

    def blocked(table, key, action, value, topic):
        while key == 'tiny' and not gate:
            time.sleep(0.05)
        got(table, key, action, value, topic)
    pub, sub, _ = scenarios._pubsub(ctx, callback=blocked)
    subject = _subject(sub)
    delivery = sub._delivery
    _send(pub, ['warm-up'])
    ctx.wait_until(lambda: 'warm-up' in got.keys())
    before = rss_mib()
    peak = [before]
    count = 600000
    proc = forge(ctx, [[subject, {SEQ: 'tiny-publisher 0a1b2c3d.{i}'},
                        _body('tiny'), count]], wait=False)
    while proc.poll() is None:
        peak[0] = max(peak[0], rss_mib())
        time.sleep(0.05)
    forged = _forged(proc)

    def settled(check=_unchanged(lambda: (delivery._overflow_loop,
                                          delivery._queued_in))):
        peak[0] = max(peak[0], rss_mib())
        return check()
    ctx.wait_until(settled, timeout=120,
                   what='the tiny messages queued or dropped')
    queued = delivery._queued_in - delivery._queued_out
    grown = peak[0] - before
    print('tiny messages (%s): queue %d MiB, %.1f MiB counted in it, %d'
          ' dropped; RSS +%.1f MiB at its peak (%.2fx the queue)' % (
              forged, queue >> 20, queued / 2 ** 20,
              delivery._overflow_loop, grown, grown / (queue >> 20)))
    assert queued <= queue
    assert delivery._overflow_loop > 0
    assert grown <= 1.5 * (queue >> 20), grown
    gate.append(True)
    ctx.wait_until(lambda: got.syncs >= 1, timeout=120,
                   what='the overflow resync')
    ctx.wait_until(lambda: delivery._queued_in == delivery._queued_out,
                   timeout=120)
    pub.close()
    sub.close()


# -- defect 6: type-checked events --------------------------------------------

_BADLY_TYPED = [
    dict(table=42), dict(value={'a': 1}), dict(value=msgpack.Timestamp(1, 0)),
    dict(key=['a', 'b']), dict(action='bogus'), dict(action='dbrestart'),
    dict(topic=7), dict(table=None),
]


def scenario_typed_events(ctx):
    pub, sub, got = scenarios._pubsub(ctx)
    subject = _subject(sub)
    items = [[subject, None, _body('bad', **fields), 500]
             for fields in _BADLY_TYPED]
    # A batch: the badly typed elements go, their neighbours stay.
    batch = codec.batch_body([_body('ok-1'), _body('bad', table=42),
                              _body('ok-2'), _body('bad', action='sync'),
                              _body('ok-3', key=b'bytes-key')])
    items.append([subject, None, batch, 1])
    forge(ctx, items)
    _send(pub, ['last'])
    ctx.wait_until(lambda: 'last' in got.keys(), what='the last event')
    ctx.settle()
    assert got.keys() == ['ok-1', 'ok-2', b'bytes-key', 'last'], (
        got.keys()[:10])
    assert sub.stats['malformed'] == 4000 + 2, sub.stats
    assert got.syncs == 0 and sub.stats['callback_errors'] == 0
    pub.close()
    sub.close()


# -- the fuzz test ------------------------------------------------------------

def _mutations(rng):
    # Values of every msgpack type, as a hostile publisher may send.
    return [rng.randint(-2 ** 63, 2 ** 64 - 1), rng.random(), True, [1, 'a'],
            {'k': [1, {'x': None}]}, msgpack.Timestamp(rng.randint(0, 2 ** 32),
                                                       0),
            msgpack.ExtType(rng.randint(1, 100), rng.randbytes(8)),
            'x' * rng.randint(0, 300), rng.randbytes(rng.randint(0, 64)), None]


def _fuzz_event(rng, n, in_batch=False):
    """A packed event, valid or type-mutated, and its key if valid.

    In a batch every element is one whole msgpack object: random bytes
    there would break the framing of the elements after them, which are
    then lost with it (the element boundaries are in the bytes).
    """
    key = 'fz-%d' % n
    event = {'table': rng.choice(['lport', 'lswitch', 'chassis', 'ü']),
             'key': key, 'action': rng.choice(sorted(codec.WIRE_ACTIONS)),
             'value': rng.choice([None, '{"id": 1}', b'\x00\xff', '']),
             'topic': rng.choice([None, 'D', b'D', 'tenant-1'])}
    kind = rng.random()
    if kind < 0.4:
        return msgpack.packb(event, use_bin_type=True), key
    if kind < 0.85:
        field = rng.choice(codec.EVENT_FIELDS)
        value = rng.choice(_mutations(rng))
        allowed = {'table': (str,), 'key': (str, bytes, type(None)),
                   'action': (), 'value': (str, bytes, type(None)),
                   'topic': (str, bytes, type(None))}[field]
        if type(value) in allowed:
            value = 12345
        if rng.random() < 0.2:
            field, value = 'action', rng.choice(
                sorted(codec.CONTROL_ACTIONS) + ['bogus', 'SET', ''])
        event[field] = value
        if rng.random() < 0.1:
            del event[field]
        return msgpack.packb(event, use_bin_type=True), None
    if kind < 0.95 and not in_batch:
        return rng.randbytes(rng.randint(0, 200)), None
    return msgpack.packb(rng.choice(_mutations(rng)), use_bin_type=True), None


def _fuzz_headers(rng, live):
    """Forged headers for a message with a valid event.

    Never a copy of a live stream: those may be dropped as duplicates,
    rightly.
    """
    choice = rng.random()
    if choice < 0.4:
        return None
    if choice < 0.6:
        return {SEQ: 'fz-%d %08x.%d' % (
            rng.getrandbits(64), rng.getrandbits(32),
            rng.randint(1, 10 ** 15))}
    if choice < 0.8:
        return {SEQ: rng.choice(['', ' ', 'x', 'a.b', 'p i.-1', 'p i.1e9',
                                 'p\u00e9 i.\u0661', 'y' * 2000 + ' i.1',
                                 live + '.x'])}
    return {SEQ: 'fz-%d i.1' % rng.getrandbits(64),
            'Df-Events': 'z' * rng.randint(0, 3000)}


def scenario_fuzz(ctx):
    """10,000 random and type-mutated messages and forged headers."""
    interval = 1.0
    _set(resync_interval=interval,
         delivery_queue_size=options.MIN_DELIVERY_QUEUE_SIZE * 8)
    seed = int(os.environ.get('DF_NATS_FUZZ_SEED', '1111'))
    rng = random.Random(seed)
    got = TimedCollector()
    pub, sub, _ = scenarios._pubsub(ctx, callback=got)
    subject = _subject(sub)
    _send(pub, ['real-0'])
    ctx.wait_until(lambda: 'real-0' in got.keys())
    live = _live_header(pub, subject, 1).rsplit('.', 1)[0]
    items, valid = [], []
    for n in range(10000):
        roll = rng.random()
        if roll < 0.15:
            # Forged copies of the live stream: marks or bodies, any n.
            # Never a number the real publisher is about to use: its
            # real message would be a conflict (delivered, and a resync
            # the sync bound below does not count on).
            header = {SEQ: '%s.%d' % (live, rng.choice([
                rng.randint(0, 10 ** 18), rng.randint(1000, 10 ** 5), 0]))}
            if rng.random() < 0.5:
                header[MARK] = '1'
            body = rng.choice([b'', rng.randbytes(16), _body(None, 'sync')])
            items.append([subject, header, body, 1])
        elif roll < 0.25:
            # A batch: valid and mutated events side by side.
            parts = [_fuzz_event(rng, n * 100 + i, in_batch=True)
                     for i in range(rng.randint(1, 30))]
            body = codec.batch_body([p for p, _ in parts])
            valid += [k for _, k in parts if k]
            items.append([subject, _fuzz_headers(rng, live), body, 1])
        else:
            body, key = _fuzz_event(rng, n * 100)
            if key:
                valid.append(key)
            items.append([subject, _fuzz_headers(rng, live), body, 1])
    before = rss_mib()
    started = time.monotonic()
    proc = forge(ctx, items, wait=False)
    # Real events keep flowing while the fuzz goes on.
    real = ['real-%d' % i for i in range(1, 201)]
    for key in real:
        _send(pub, [key])
        time.sleep(0.005)
    peak = rss_mib()
    while proc.poll() is None:
        peak = max(peak, rss_mib())
        time.sleep(0.05)
    _forged(proc)
    expected = set(valid) | set(real) | {'real-0'}
    ctx.wait_until(lambda: expected <= set(got.keys()), timeout=60,
                   what='every valid event (%d of %d; %s)' % (
                       len(expected & set(got.keys())), len(expected),
                       sub.stats))
    seconds = time.monotonic() - started
    ctx.settle(interval + 0.5)
    peak = max(peak, rss_mib())
    delivered = got.keys()
    figures = {
        'world': ctx.world, 'seed': seed, 'messages': len(items),
        'valid_events': len(valid), 'real_events': len(real) + 1,
        'delivered': len(delivered), 'malformed': sub.stats['malformed'],
        'syncs': got.syncs, 'seconds': round(seconds, 2),
        'sync_bound': int(seconds / interval) + 2,
        'rss_before_mib': round(before, 1), 'rss_peak_mib': round(peak, 1),
        'rss_after_mib': round(rss_mib(), 1),
        'stats': dict(sub.stats)}
    print('FUZZ %s' % json.dumps(figures, sort_keys=True))
    # Only valid events reached the callback, each of them once.
    assert sorted(delivered, key=str) == sorted(expected, key=str), (
        len(delivered), len(expected))
    real_seen = [k for k in delivered if k in real]
    assert real_seen == real, real_seen[:10]
    assert got.syncs <= figures['sync_bound'], figures
    assert peak - before < 100, figures
    assert sub.is_running and got.calls == len(delivered) + got.syncs
    pub.close()
    sub.close()
