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

"""The subscriber's gap and duplicate detector, and the header format."""

import pytest

from df_nats.wire import sequence


def _h(n, publisher='p1', incarnation='a1b2c3d4'):
    return {sequence.HEADER_SEQ: sequence.seq_header(incarnation, n,
                                                     publisher)}


def test_header_round_trip():
    inc = sequence.new_incarnation()
    assert len(inc) == 8 and inc != sequence.new_incarnation()
    assert sequence.parse(_h(42, 'pub', inc)) == ('pub', inc, 42)
    # One header line holds publisher, incarnation and number.
    assert _h(42, 'pub', inc) == {'Df-Seq': 'pub %s.42' % inc}


@pytest.mark.parametrize('headers', [
    None, {}, {'Df-Table': 'lport'},
    {sequence.HEADER_SEQ: 'p'},
    {sequence.HEADER_SEQ: 'a.1'},            # no publisher
    {sequence.HEADER_SEQ: 'p 7'},            # no incarnation
    {sequence.HEADER_SEQ: 'p a.x'},
    {sequence.HEADER_SEQ: 'p a.-1'},
    {sequence.HEADER_SEQ: 'p a.\u0661'},     # a digit, but not ASCII
    {sequence.HEADER_SEQ: ' a.1'},
    {sequence.HEADER_SEQ: 'p' * 300 + ' a.1'},  # too long to keep
    # The format before batching: publisher and number apart.
    {'Df-Publisher': 'p', sequence.HEADER_SEQ: 'a.1'},
])
def test_without_valid_headers_untracked(headers):
    # A Df-Seq that cannot be read is said so (counted, logged), and is
    # never tracked.
    tracker = sequence.SequenceTracker()
    unreadable = bool(headers) and sequence.HEADER_SEQ in headers
    assert tracker.check('s', headers) == (
        sequence.BAD_HEADER if unreadable else sequence.UNTRACKED, 0)
    assert len(tracker) == 0


def test_in_order_stream():
    tracker = sequence.SequenceTracker()
    assert tracker.check('s', _h(5)) == (sequence.FIRST, 0)
    for n in range(6, 50):
        assert tracker.check('s', _h(n)) == (sequence.NEXT, 0)


def test_gap_reports_missing_count_then_continues():
    tracker = sequence.SequenceTracker()
    tracker.check('s', _h(1))
    assert tracker.check('s', _h(2)) == (sequence.NEXT, 0)
    assert tracker.check('s', _h(6)) == (sequence.GAP, 3)
    assert tracker.check('s', _h(7)) == (sequence.NEXT, 0)


def test_duplicates_and_older_dropped():
    tracker = sequence.SequenceTracker()
    for n in (1, 2, 3):
        tracker.check('s', _h(n))
    assert tracker.check('s', _h(3)) == (sequence.DUPLICATE, 0)
    assert tracker.check('s', _h(1)) == (sequence.DUPLICATE, 0)
    assert tracker.check('s', _h(4)) == (sequence.NEXT, 0)


def test_streams_are_independent():
    tracker = sequence.SequenceTracker()
    tracker.check('s', _h(1, 'p1'))
    tracker.check('s', _h(1, 'p2'))
    tracker.check('t', _h(1, 'p1'))
    assert tracker.check('s', _h(2, 'p1')) == (sequence.NEXT, 0)
    assert tracker.check('t', _h(2, 'p1')) == (sequence.NEXT, 0)
    assert tracker.check('s', _h(2, 'p2')) == (sequence.NEXT, 0)


def test_new_incarnation_is_a_new_stream_not_duplicates():
    # A restarted service keeps its publisher id and counts from 1 again.
    tracker = sequence.SequenceTracker()
    for n in range(1, 100):
        tracker.check('s', _h(n, 'p1', 'old00000'))
    assert tracker.check('s', _h(1, 'p1', 'new00000')) == (
        sequence.FIRST, 0)
    assert tracker.check('s', _h(2, 'p1', 'new00000')) == (
        sequence.NEXT, 0)


def test_incarnation_may_hold_dots_and_publisher_spaces():
    assert sequence.parse({sequence.HEADER_SEQ: 'p q x.y.12'}) == (
        'p q', 'x.y', 12)


def test_bounded_least_recently_seen_forgotten():
    tracker = sequence.SequenceTracker(max_streams=3)
    for subject in ('a', 'b', 'c'):
        tracker.check(subject, _h(1))
    tracker.check('a', _h(2))          # 'b' is now the least recent
    tracker.check('d', _h(1))
    assert len(tracker) == 3 and tracker.evicted == 1
    # 'b' was forgotten: its next message is a baseline, not a gap.
    assert tracker.check('b', _h(9)) == (sequence.FIRST, 0)
    assert tracker.check('a', _h(3)) == (sequence.NEXT, 0)


def test_bad_bound():
    with pytest.raises(ValueError):
        sequence.SequenceTracker(max_streams=0)


def _mark(n, publisher='p1', incarnation='a1b2c3d4'):
    return dict(_h(n, publisher, incarnation), **{sequence.HEADER_MARK: '1'})


def test_mark_in_step_is_not_a_gap_nor_a_duplicate():
    tracker = sequence.SequenceTracker()
    for n in (1, 2, 3):
        tracker.check('s', _h(n))
    assert tracker.check('s', _mark(3)) == (sequence.MARK, 0)
    assert tracker.check('s', _mark(3)) == (sequence.MARK, 0)
    assert tracker.check('s', _h(4)) == (sequence.NEXT, 0)
    assert sequence.SequenceTracker.is_mark(_mark(3))
    assert not sequence.SequenceTracker.is_mark(_h(3))
    assert not sequence.SequenceTracker.is_mark(None)


def test_mark_reveals_lost_tail():
    # Events 4 and 5 died with the publisher's server; then it fell silent.
    tracker = sequence.SequenceTracker()
    for n in (1, 2, 3):
        tracker.check('s', _h(n))
    assert tracker.check('s', _mark(5)) == (sequence.GAP, 2)
    assert tracker.check('s', _h(6)) == (sequence.NEXT, 0)


def test_mark_of_unknown_stream_is_a_baseline():
    tracker = sequence.SequenceTracker()
    assert tracker.check('s', _mark(7)) == (sequence.FIRST, 0)
    assert tracker.check('s', _h(8)) == (sequence.NEXT, 0)


def test_stream_numbers_messages_when_committed():
    stream = sequence.Stream('s', 'pub-1', 'abcd0123')
    n = stream.next_number()
    assert n == 1 and stream.next_number() == 1   # not taken until sent
    stream.n = n
    assert stream.next_number() == 2
    assert stream.header(2) == 'pub-1 abcd0123.2'
    assert sequence.parse({sequence.HEADER_SEQ: stream.header(2)}) == (
        'pub-1', 'abcd0123', 2)


def test_refused_events_make_the_next_number_jump():
    # The subscriber sees a gap and resyncs: the refusal is never silent.
    stream = sequence.Stream('s', 'p', 'i')
    stream.n = 4
    stream.skip()
    stream.skip()
    assert stream.next_number() == 7
    stream.n = 7
    assert stream.next_number() == 8   # counted once


def test_stream_mark_carries_the_last_number_and_refusals():
    stream = sequence.Stream('s', 'p', 'i')
    stream.n = 3
    stream.skip()
    headers = stream.mark_headers()
    assert headers == {'Df-Seq': 'p i.4', 'Df-Mark': '1'}
    tracker = sequence.SequenceTracker()
    tracker.check('s', _h(3, 'p', 'i'))
    assert tracker.check('s', headers) == (sequence.GAP, 1)


# -- forged headers (issue 11): nothing forged drops later real events ----

class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_forged_huge_mark_does_not_silence_the_publisher():
    # Issue 11, defect 2: a mark copying a live stream with n = 10**12
    # made every later real event a duplicate.
    tracker = sequence.SequenceTracker()
    for n in range(1, 11):
        tracker.check('s', _h(n))
    assert tracker.check('s', _mark(10 ** 12)) == (sequence.JUMP, 0)
    for n in range(11, 111):
        assert tracker.check('s', _h(n)) == (sequence.NEXT, 0), n


def test_forged_huge_event_does_not_silence_the_publisher():
    tracker = sequence.SequenceTracker()
    tracker.check('s', _h(1))
    assert tracker.check('s', _h(10 ** 12)) == (sequence.JUMP, 0)
    assert tracker.check('s', _h(2)) == (sequence.NEXT, 0)


def test_a_real_huge_jump_is_believed_when_the_stream_goes_on():
    # A publisher that refused that many events while disconnected.
    tracker = sequence.SequenceTracker()
    tracker.check('s', _h(1))
    far = 2 + sequence.MAX_JUMP + 5
    assert tracker.check('s', _h(far)) == (sequence.JUMP, 0)
    assert tracker.check('s', _h(far + 1)) == (sequence.NEXT, 0)
    assert tracker.check('s', _h(far + 2)) == (sequence.NEXT, 0)
    assert tracker.check('s', _h(far + 1)) == (sequence.DUPLICATE, 0)


def test_forged_continuation_of_a_jump_costs_a_rebaseline_not_events():
    # Two forged messages get the jump believed; the real stream then
    # lies far below and starts a new baseline: delivered, resynced.
    tracker = sequence.SequenceTracker()
    for n in range(1, 6):
        tracker.check('s', _h(n))
    assert tracker.check('s', _h(10 ** 12)) == (sequence.JUMP, 0)
    assert tracker.check('s', _h(10 ** 12 + 1)) == (sequence.NEXT, 0)
    assert tracker.check('s', _h(6)) == (sequence.RESET, 0)
    for n in range(7, 50):
        assert tracker.check('s', _h(n)) == (sequence.NEXT, 0)


def test_plausible_forged_jump_leaves_real_numbers_deliverable():
    tracker = sequence.SequenceTracker()
    tracker.check('s', _h(1))
    assert tracker.check('s', _h(31)) == (sequence.GAP, 29)   # forged
    for n in range(2, 31):   # the real ones, never seen: late, delivered
        assert tracker.check('s', _h(n)) == (sequence.LATE, 0), n
    assert tracker.check('s', _h(20)) == (sequence.DUPLICATE, 0)
    assert tracker.check('s', _h(32)) == (sequence.NEXT, 0)
    # Beyond the window nothing is taken for a duplicate either.
    assert tracker.check('s', _h(5000)) == (sequence.GAP, 4967)
    assert tracker.check('s', _h(33)) == (sequence.RESET, 0)
    assert tracker.check('s', _h(34)) == (sequence.NEXT, 0)


# -- the duplicate rule (issue 18): a number and the message's digest ------

def test_forged_next_number_makes_the_real_message_a_conflict():
    # A forger read n off the wire and sent n + 1 first: the real n + 1
    # is delivered (a conflict), never dropped as a duplicate.
    tracker = sequence.SequenceTracker()
    tracker.check('s', _h(1), b'real-1')
    assert tracker.check('s', _h(2), b'forged') == (sequence.NEXT, 0)
    assert tracker.check('s', _h(2), b'real-2') == (sequence.CONFLICT, 0)
    assert tracker.check('s', _h(3), b'real-3') == (sequence.NEXT, 0)
    # Copies of the real ones are duplicates; of the forged one, a
    # conflict again (the latest message under a number is kept).
    assert tracker.check('s', _h(2), b'real-2') == (sequence.DUPLICATE, 0)
    assert tracker.check('s', _h(1), b'real-1') == (sequence.DUPLICATE, 0)
    assert tracker.check('s', _h(2), b'forged') == (sequence.CONFLICT, 0)


def test_digest_covers_body_and_every_header():
    body = b'event'
    headers = dict(_h(7), **{'Df-Events': '1 lport'})
    same = dict(_h(7), **{'Df-Events': '1 lport'})
    assert sequence.digest(headers, body) == sequence.digest(same, body)
    assert sequence.digest(headers, body) != sequence.digest(_h(7), body)
    assert sequence.digest(headers, body) != sequence.digest(
        headers, b'evenT')
    tracker = sequence.SequenceTracker()
    tracker.check('s', headers, body)
    assert tracker.check('s', same, body) == (sequence.DUPLICATE, 0)
    assert tracker.check('s', _h(7), body) == (sequence.CONFLICT, 0)


def test_a_number_only_announced_by_a_mark_is_not_delivered():
    # A mark (forged or real) says n was sent; n itself, when it comes,
    # was never delivered: late, not a duplicate.
    tracker = sequence.SequenceTracker()
    tracker.check('s', _h(1), b'1')
    assert tracker.check('s', _mark(2)) == (sequence.GAP, 1)
    assert tracker.check('s', _h(2), b'2') == (sequence.LATE, 0)
    assert tracker.check('s', _h(2), b'2') == (sequence.DUPLICATE, 0)
    assert tracker.check('s', _mark(3)) == (sequence.GAP, 1)
    assert tracker.check('s', _h(4), b'4') == (sequence.NEXT, 0)
    assert tracker.check('s', _h(3), b'3') == (sequence.LATE, 0)
    # A mark of an unknown stream is a baseline, not a delivery.
    assert tracker.check('t', _mark(9)) == (sequence.FIRST, 0)
    assert tracker.check('t', _h(9), b'9') == (sequence.LATE, 0)


def test_a_believed_jump_keeps_the_jumped_message_digest():
    tracker = sequence.SequenceTracker()
    tracker.check('s', _h(1), b'1')
    far = 2 + sequence.MAX_JUMP + 5
    assert tracker.check('s', _h(far), b'far') == (sequence.JUMP, 0)
    assert tracker.check('s', _h(far + 1), b'next') == (sequence.NEXT, 0)
    assert tracker.check('s', _h(far), b'far') == (sequence.DUPLICATE, 0)
    assert tracker.check('s', _h(far), b'other') == (sequence.CONFLICT, 0)


def test_a_resent_span_is_recognised_as_duplicates():
    # A publisher sends up to 128 messages again after a reconnect
    # (transport.sender.RESEND_MAX_MESSAGES), and may have sent more on
    # other subjects: the last 200 of a stream are still recognised.
    tracker = sequence.SequenceTracker()
    for n in range(1, 301):
        tracker.check('s', _h(n), b'm%d' % n)
    for n in range(101, 301):
        assert tracker.check('s', _h(n), b'm%d' % n) == (
            sequence.DUPLICATE, 0), n
    assert tracker.check('s', _h(301), b'm301') == (sequence.NEXT, 0)


def test_digests_follow_the_window_as_it_moves():
    window = sequence._WINDOW
    last = 210 + 2 * window
    tracker = sequence.SequenceTracker()
    for n in range(1, 200):
        tracker.check('s', _h(n), b'm%d' % n)
    for n in range(199 - 63, 200):
        assert tracker.check('s', _h(n), b'm%d' % n) == (
            sequence.DUPLICATE, 0), n
        assert tracker.check('s', _h(n), b'x%d' % n) == (
            sequence.CONFLICT, 0), n
    # After a gap, the numbers skipped are late and take their digests.
    assert tracker.check('s', _h(210), b'm210') == (sequence.GAP, 10)
    assert tracker.check('s', _h(205), b'm205') == (sequence.LATE, 0)
    assert tracker.check('s', _h(205), b'm205') == (sequence.DUPLICATE, 0)
    assert tracker.check('s', _h(198), b'x198') == (sequence.DUPLICATE, 0)
    # The window's edge: the last _WINDOW numbers, no further.
    for n in range(211, last + 1):
        tracker.check('s', _h(n), b'm%d' % n)
    oldest = last - window + 1
    assert tracker.check('s', _h(oldest), b'm%d' % oldest) == (
        sequence.DUPLICATE, 0)
    assert tracker.check('s', _h(oldest - 1), b'm%d' % (oldest - 1)) == (
        sequence.RESET, 0)


def test_known_streams_are_never_evicted_by_unknown_ones():
    # Issue 11, defect 4: 5,000 forged streams pushed a real one out.
    clock = _Clock()
    tracker = sequence.SequenceTracker(max_streams=100, clock=clock)
    tracker.set_known('real')
    tracker.check('s', _h(1, 'real'))
    for i in range(5000):
        clock.now += 0.02   # 50 new streams/s: all admitted
        tracker.check('s', _h(1, 'forged-%d' % i))
    assert tracker.known_count() == 1
    assert len(tracker) == 101 and tracker.evicted == 4900
    assert tracker.check('s', _h(4, 'real')) == (sequence.GAP, 2)


def test_unknown_streams_are_admitted_at_a_bounded_rate():
    clock = _Clock()
    tracker = sequence.SequenceTracker(clock=clock)
    burst = int(2 * sequence.UNKNOWN_STREAM_RATE)
    verdicts = [tracker.check('s', _h(1, 'f%d' % i))[0]
                for i in range(burst + 50)]
    assert verdicts.count(sequence.FIRST) == burst
    assert verdicts[burst:] == [sequence.REFUSED] * 50
    clock.now += 0.5
    verdicts = [tracker.check('s', _h(1, 'g%d' % i))[0] for i in range(80)]
    assert verdicts.count(sequence.FIRST) == 50
    # A tracked stream goes on whatever the admission rate.
    assert tracker.check('s', _h(2, 'f0')) == (sequence.NEXT, 0)


def test_registered_later_moves_a_stream_to_the_protected_table():
    tracker = sequence.SequenceTracker(max_streams=2)
    tracker.check('s', _h(1, 'real'))
    tracker.set_known('real')
    assert tracker.check('s', _h(2, 'real')) == (sequence.NEXT, 0)
    assert tracker.known_count() == 1
    for i in range(10):
        tracker.check('s', _h(1, 'other-%d' % i))
    assert tracker.check('s', _h(3, 'real')) == (sequence.NEXT, 0)


def test_a_publisher_leaving_takes_its_streams_out_of_the_known_ones():
    tracker = sequence.SequenceTracker(max_streams=2)
    tracker.set_known('real')
    tracker.check('s', _h(1, 'real'))
    tracker.set_known('real', False)
    assert tracker.known_count() == 0 and len(tracker) == 1
    # Kept with the unknown streams, state and all ...
    assert tracker.check('s', _h(3, 'real')) == (sequence.GAP, 1)
    # ... and protected again once registered again.
    tracker.set_known('real')
    assert tracker.check('s', _h(4, 'real')) == (sequence.NEXT, 0)
    assert tracker.known_count() == 1


def test_known_streams_are_never_evicted_by_known_ones():
    # Issue 19: 4,200 forged registry records, then 4,200 streams under
    # those ids, pushed the real registered stream out.
    tracker = sequence.SequenceTracker(max_streams=4096)
    tracker.set_known('real')
    assert tracker.check('s', _h(1, 'real')) == (sequence.FIRST, 0)
    for i in range(4200):
        tracker.set_known('forged-%d' % i)
        tracker.check('s', _h(1, 'forged-%d' % i))
    assert tracker.known_count() == 4096
    assert tracker.known_full == 4200 - 4095
    assert tracker.check('s', _h(3, 'real')) == (sequence.GAP, 1)


def test_a_changed_publisher_leaves_the_known_streams_until_it_sends():
    tracker = sequence.SequenceTracker(max_streams=4)
    tracker.set_known('p')
    tracker.check('s', _h(1, 'p', 'dead'))
    tracker.check('s', _h(1, 'p', 'live'))
    assert tracker.known_count() == 2
    tracker.publisher_changed('p')   # another process took the id
    assert tracker.known_count() == 0 and len(tracker) == 2
    assert tracker.check('s', _h(2, 'p', 'live')) == (sequence.NEXT, 0)
    assert tracker.known_count() == 1


def test_overlong_header_is_not_tracked():
    tracker = sequence.SequenceTracker()
    long_id = 'p' * sequence.MAX_SEQ_HEADER
    assert tracker.check('s', _h(1, long_id)) == (sequence.BAD_HEADER, 0)
    assert len(tracker) == 0


def test_known_publishers_bounded():
    tracker = sequence.SequenceTracker()
    tracker.set_known('x' * sequence.MAX_SEQ_HEADER)
    tracker.set_known(None)
    assert tracker._known_publishers == set()
    tracker.set_known('p')
    tracker.set_known('p', False)
    tracker.set_known('never-known', False)
    assert tracker._known_publishers == set()


# -- catch-up (issue 18): gaps held, replayed and resent copies -------------

def _resent(n, **kwargs):
    headers = _h(n, **kwargs)
    headers[sequence.HEADER_RESENT] = '1'
    return headers


def test_hold_gaps_says_ahead_and_leaves_the_stream_as_it_was():
    tracker = sequence.SequenceTracker()
    tracker.check('s', _h(1), b'1')
    assert tracker.check('s', _h(5), b'5', hold_gaps=True) == (
        sequence.AHEAD, 3)
    assert tracker.check('s', _h(5), b'5', hold_gaps=True) == (
        sequence.AHEAD, 3)
    # Nothing recorded: the next in order is still NEXT, and 5 is taken
    # in its turn (not a duplicate of the message held).
    for n in (2, 3, 4, 5):
        assert tracker.check('s', _h(n), b'%d' % n, hold_gaps=True) == (
            sequence.NEXT, 0), n
    assert tracker.check('s', _h(5), b'5') == (sequence.DUPLICATE, 0)


def test_hold_gaps_on_a_mark_and_on_what_is_in_step():
    tracker = sequence.SequenceTracker()
    tracker.check('s', _h(1), b'1')
    # A mark of the next number announces one message missed.
    assert tracker.check('s', _mark(2), hold_gaps=True) == (
        sequence.AHEAD, 1)
    assert tracker.check('s', _mark(1), hold_gaps=True) == (
        sequence.MARK, 0)
    assert tracker.check('s', _h(2), b'2', hold_gaps=True) == (
        sequence.NEXT, 0)
    # An implausible jump is still a JUMP, never held.
    far = 2 + sequence.MAX_JUMP + 5
    assert tracker.check('s', _h(far), b'f', hold_gaps=True) == (
        sequence.JUMP, 0)


def test_without_hold_gaps_the_same_message_is_a_gap():
    # The control of the test above.
    tracker = sequence.SequenceTracker()
    tracker.check('s', _h(1), b'1')
    assert tracker.check('s', _h(5), b'5') == (sequence.GAP, 3)
    assert tracker.check('s', _h(2), b'2') == (sequence.LATE, 0)


def test_replayed_far_below_the_window_is_behind_not_a_reset():
    tracker = sequence.SequenceTracker()
    for n in range(1, 601):
        tracker.check('s', _h(n), b'%d' % n)
    old = 600 - sequence._WINDOW
    assert tracker.check('s', _h(old), b'%d' % old, replayed=True) == (
        sequence.BEHIND, 0)
    assert tracker.check('s', _h(3), b'other', replayed=True) == (
        sequence.BEHIND, 0)
    # Within the window a replayed copy is still a duplicate.
    assert tracker.check('s', _h(old + 1), b'%d' % (old + 1),
                         replayed=True) == (sequence.DUPLICATE, 0)
    # The stream is as it was: 601 is next.
    assert tracker.check('s', _h(601), b'601') == (sequence.NEXT, 0)


def test_a_live_message_far_below_is_still_a_reset():
    tracker = sequence.SequenceTracker()
    for n in range(1, 601):
        tracker.check('s', _h(n), b'%d' % n)
    assert tracker.check('s', _h(3), b'3') == (sequence.RESET, 0)
    assert tracker.check('s', _h(4), b'4') == (sequence.NEXT, 0)


def test_a_resent_copy_is_a_duplicate_of_the_original():
    tracker = sequence.SequenceTracker()
    for n in range(1, 11):
        tracker.check('s', _h(n), b'm%d' % n)
    assert sequence.digest(_resent(7), b'm7') == sequence.digest(
        _h(7), b'm7')
    assert sequence.digest(_resent(7), b'm7') != sequence.digest(
        _h(7), b'other')
    for n in range(1, 11):
        assert tracker.check('s', _resent(n), b'm%d' % n) == (
            sequence.DUPLICATE, 0), n
    # A resent message never seen is delivered in its turn.
    assert tracker.check('s', _resent(11), b'm11') == (sequence.NEXT, 0)
    assert tracker.check('s', _h(11), b'm11') == (sequence.DUPLICATE, 0)


def test_a_resent_copy_far_below_is_behind():
    tracker = sequence.SequenceTracker()
    for n in range(1, 601):
        tracker.check('s', _h(n), b'm%d' % n)
    # Without replayed=True: Df-Resent is enough.
    assert tracker.check('s', _resent(5), b'm5') == (sequence.BEHIND, 0)
    assert tracker.check('s', _h(601), b'm601') == (sequence.NEXT, 0)


def test_a_forged_resent_message_with_another_body_is_a_conflict():
    tracker = sequence.SequenceTracker()
    for n in range(1, 11):
        tracker.check('s', _h(n), b'm%d' % n)
    assert tracker.check('s', _resent(8), b'forged') == (
        sequence.CONFLICT, 0)
    # ... and other headers besides Df-Resent make another message too.
    headers = dict(_resent(9), **{'Df-Events': '1 lport'})
    assert tracker.check('s', headers, b'm9') == (sequence.CONFLICT, 0)
