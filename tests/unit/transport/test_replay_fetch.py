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

"""The catch-up's fetch by batched direct get, on a fake server that
answers as nats-server 2.11 does (the real one: tests/functional).
"""

import asyncio
import json
import time
import types

from nats import errors as nats_errors
import pytest

from df_nats.transport import capture_stream
from df_nats.transport import replay_fetch
from df_nats.wire import codec

STREAM = 'EVENTS'
BASE_NS = capture_stream.parse_time_ns('2026-12-04T18:00:00Z')


def _match(pattern, subject):
    if pattern.endswith('.>'):
        return subject.startswith(pattern[:-1])
    return pattern == subject


class _Server:
    """nc as a JetStream server with one stream answers it.

    ``stored``: (seq, subject, headers, data, time in ns). ``status``
    (a code) answers every direct get with that status instead;
    ``silent`` answers none; ``late``: direct gets are answered only
    when the client makes a round trip (``flush``), as a process that
    reads its socket late sees them; ``flush_error`` is what a round
    trip raises. ``info`` replaces the stream info; ``info_delay``
    (seconds) is the info's round trip, during which the client may
    ask for pages (``gets_before_info``: how many it did).
    """

    def __init__(self, stored=(), first_seq=None, info=None):
        self.stored = list(stored)
        self.first_seq = first_seq
        self.info = info
        self.info_error = None
        self.info_delay = 0
        self.gets_before_info = None
        self.before_info = []
        self.status = None
        self.silent = False
        self.late = False
        self.after_info = []
        self.flush_error = None
        self.flushes = 0
        self._unread = []        # direct gets answered at the round trip
        self.gets = []           # the direct get requests, as JSON
        self.unsubscribed = 0
        self._subs = {}

    def _state(self):
        if not self.stored:
            last = (self.first_seq or 1) - 1
            return {'messages': 0, 'first_seq': last + 1, 'last_seq': last}
        first, last = self.stored[0], self.stored[-1]
        return {'messages': len(self.stored), 'first_seq': first[0],
                'first_ts': capture_stream.format_time_ns(first[4]),
                'last_seq': last[0],
                'last_ts': capture_stream.format_time_ns(last[4])}

    async def request(self, subject, payload, timeout):
        assert subject == '$JS.API.STREAM.INFO.%s' % STREAM, subject
        if self.info_delay:
            await asyncio.sleep(self.info_delay)
        self.gets_before_info = len(self.gets)
        # Published after the page asked meanwhile, before the info.
        self.stored.extend(self.before_info)
        self.before_info = []
        if self.info_error is not None:
            raise self.info_error
        info = self.info or {'config': {'name': STREAM,
                                        'allow_direct': True},
                             'state': self._state()}
        # Published on after the info was taken.
        self.stored.extend(self.after_info)
        self.after_info = []
        return types.SimpleNamespace(data=json.dumps(info).encode())

    def new_inbox(self):
        return '_INBOX.test.%d' % len(self._subs)

    async def subscribe(self, subject, cb):
        self._subs[subject] = cb
        server = self

        class _Sub:
            pending_msgs = 0

            async def unsubscribe(self):
                server.unsubscribed += 1
                del server._subs[subject]
        return _Sub()

    async def _reply(self, inbox, headers, data=b''):
        await self._subs[inbox](types.SimpleNamespace(
            subject=inbox, headers=headers, data=data))

    async def flush(self, timeout):
        self.flushes += 1
        if self.flush_error is not None:
            raise self.flush_error
        unread, self._unread = self._unread, []
        for reply, payload in unread:
            await self._answer(reply, payload)

    async def publish(self, subject, payload, reply):
        assert subject == '$JS.API.DIRECT.GET.%s' % STREAM, subject
        self.gets.append(json.loads(payload))
        if self.late:
            self._unread.append((reply, payload))
            return
        await self._answer(reply, payload)

    async def _answer(self, reply, payload):
        request = json.loads(payload)
        if self.silent:
            return
        if self.status is not None:
            await self._reply(reply, {'Status': str(self.status),
                                      'Description': 'refused'})
            return
        if 'seq' in request:
            after = [m for m in self.stored if m[0] >= request['seq']]
        else:
            start = capture_stream.parse_time_ns(request['start_time'])
            after = [m for m in self.stored if m[4] >= start]
        after = [m for m in after if _match(request['next_by_subj'], m[1])]
        if not after:
            await self._reply(reply, {'Status': '404',
                                      'Description': 'Message Not Found'})
            return
        sent, size = [], 0
        for message in after[:request['batch']]:
            if sent and size + len(message[3]) > request['max_bytes']:
                break
            sent.append(message)
            size += len(message[3])
        for seq, subject, headers, data, stamp in sent:
            full = dict(headers)
            full.update({
                'Nats-Stream': STREAM, 'Nats-Subject': subject,
                'Nats-Sequence': str(seq),
                'Nats-Time-Stamp': capture_stream.format_time_ns(stamp),
                'Nats-Num-Pending': str(len(after) - len(sent)),
                'Nats-Last-Sequence': str(seq)})
            await self._reply(reply, full, data)
        await self._reply(reply, {
            'Status': '204', 'Description': 'EOB',
            'Nats-Num-Pending': str(len(after) - len(sent)),
            'Nats-Last-Sequence': str(sent[-1][0])})


def _stored(count, subjects=('p.topic.D',), first=1, events=None,
            size=10):
    """``count`` stored messages, one a second, round the subjects."""
    out = []
    for i in range(count):
        seq = first + i
        headers = {'Df-Seq': 'pub inc.%d' % seq}
        if events is not None:
            headers[codec.HEADER_EVENTS] = '%d lport' % events
        data = (b'm%d-' % seq).ljust(size, b'x')
        out.append((seq, subjects[i % len(subjects)], headers, data,
                    BASE_NS + seq * 10 ** 9))
    return out


def _fetch(nc, subjects=('p.topic.D',), start_ns=BASE_NS, events=10 ** 6,
           size=10 ** 9, timeout=1.0, start_seq=None):
    return asyncio.run(replay_fetch.fetch_on_loop(
        nc, STREAM, 'p', list(subjects), start_ns, events, size, timeout,
        start_seq=start_seq))


def test_pages_until_nothing_is_left_with_the_published_headers(
        monkeypatch):
    monkeypatch.setattr(replay_fetch, 'PAGE', 3)
    nc = _Server(_stored(10))
    got = _fetch(nc)
    assert got.outcome == replay_fetch.OK, got
    assert [m.seq for m in got.messages] == list(range(1, 11))
    assert got.last_seq == 10
    # Four pages: the first from the time, the others from a sequence.
    assert len(nc.gets) == 4
    assert 'start_time' in nc.gets[0] and 'seq' not in nc.gets[0]
    assert [g.get('seq') for g in nc.gets[1:]] == [4, 7, 10]
    assert all(g['next_by_subj'] == 'p.topic.D' for g in nc.gets)
    # The server's headers are gone: the copy is what was published.
    for message, (seq, subject, headers, data, _) in zip(got.messages,
                                                         nc.stored):
        assert (message.subject, message.headers, message.data) == (
            subject, headers, data)
    assert nc.unsubscribed == 1


def test_no_page_asked_for_past_the_last_message_at_the_start(
        monkeypatch):
    # A fetch slower than the publishers would chase the stream: what is
    # stored after it began came live (the catch-up holds it).
    monkeypatch.setattr(replay_fetch, 'PAGE', 3)
    nc = _Server(_stored(7))
    nc.after_info = _stored(20, first=8)
    got = _fetch(nc)
    assert got.outcome == replay_fetch.OK, got
    # Pages from 1, 4 and 7: the last holds the 7th and two more.
    assert [g.get('seq') for g in nc.gets[1:]] == [4, 7]
    assert [m.seq for m in got.messages] == list(range(1, 10))
    # A later fetch (a hole) goes on after what this one read.
    assert got.last_seq == 9


def test_without_the_stream_info_pages_until_nothing_is_left(monkeypatch):
    # The stream's leader lost: its replicas answer, but not its info.
    monkeypatch.setattr(replay_fetch, 'PAGE', 3)
    nc = _Server(_stored(10))
    nc.info_error = asyncio.TimeoutError()
    got = _fetch(nc)
    assert [m.seq for m in got.messages] == list(range(1, 11))
    assert len(nc.gets) == 4


def test_the_first_page_is_asked_for_with_the_stream_info():
    # On a loaded machine a round trip costs up to seconds: the info
    # does not hold the first page back.
    nc = _Server(_stored(10))
    nc.info_delay = 0.05
    got = _fetch(nc)
    assert nc.gets_before_info == 1
    assert got.outcome == replay_fetch.OK, got
    assert [m.seq for m in got.messages] == list(range(1, 11))
    assert nc.unsubscribed == 1


def test_a_later_fetch_goes_on_after_what_was_read_not_the_info():
    # The page was answered before the info: what was stored between
    # the two is neither in the page nor to be skipped by the next fetch.
    nc = _Server(_stored(5))
    nc.info_delay = 0.05
    nc.before_info = _stored(3, first=6)
    got = _fetch(nc)
    assert [m.seq for m in got.messages] == [1, 2, 3, 4, 5]
    assert got.last_seq == 5


def test_a_page_asked_for_with_an_info_that_decides_is_dropped():
    # The window passed: the page read meanwhile is not delivered, and
    # its subscription ends.
    nc = _Server(_stored(10, first=5), first_seq=5)
    nc.info_delay = 0.05
    nc.late = True   # the page's replies never come: still reading
    got = _fetch(nc, start_ns=BASE_NS)
    assert nc.gets_before_info == 1
    assert (got.outcome, got.messages) == (replay_fetch.WINDOW_PASSED, [])
    assert nc.unsubscribed == 1


def test_pages_are_bounded_in_bytes(monkeypatch):
    monkeypatch.setattr(replay_fetch, 'PAGE_BYTES', 25)
    nc = _Server(_stored(6, size=10))
    got = _fetch(nc)
    assert [m.seq for m in got.messages] == [1, 2, 3, 4, 5, 6]
    assert all(g['max_bytes'] == 25 for g in nc.gets)
    assert len(nc.gets) == 3


def test_from_a_start_time_only_what_was_stored_since():
    nc = _Server(_stored(10))
    got = _fetch(nc, start_ns=BASE_NS + 6 * 10 ** 9)
    assert got.outcome == replay_fetch.OK
    assert [m.seq for m in got.messages] == [6, 7, 8, 9, 10]
    assert nc.gets[0]['start_time'] == capture_stream.format_time_ns(
        BASE_NS + 6 * 10 ** 9)


def test_from_a_stream_sequence_going_on_after_a_fetch():
    nc = _Server(_stored(10))
    got = _fetch(nc, start_seq=8)
    assert [m.seq for m in got.messages] == [8, 9, 10]
    assert nc.gets[0]['seq'] == 8 and 'start_time' not in nc.gets[0]
    # Past the end: nothing asked, and the last sequence known.
    nc.gets.clear()
    got = _fetch(nc, start_seq=11)
    assert (got.outcome, got.messages, got.last_seq) == (
        replay_fetch.OK, [], 10)
    assert nc.gets == []


def test_a_few_subjects_each_on_its_own_in_stream_order():
    subjects = ('p.topic.A', 'p.topic.B', 'p.topic.C')
    nc = _Server(_stored(9, subjects))
    got = _fetch(nc, subjects=('p.topic.C', 'p.topic.A'))
    assert sorted(g['next_by_subj'] for g in nc.gets) == [
        'p.topic.A', 'p.topic.C']
    assert [(m.seq, m.subject) for m in got.messages] == [
        (1, 'p.topic.A'), (3, 'p.topic.C'), (4, 'p.topic.A'),
        (6, 'p.topic.C'), (7, 'p.topic.A'), (9, 'p.topic.C')]


def test_beyond_max_filters_the_topic_space_once_filtered_here():
    every = ['p.topic.T%d' % i for i in range(replay_fetch.MAX_FILTERS + 4)]
    wanted = every[:replay_fetch.MAX_FILTERS + 1]
    nc = _Server(_stored(len(every) * 2, every))
    got = _fetch(nc, subjects=wanted)
    assert [g['next_by_subj'] for g in nc.gets] == ['p.topic.>']
    assert {m.subject for m in got.messages} == set(wanted)
    assert [m.seq for m in got.messages] == sorted(
        seq for seq, subject, *_ in nc.stored if subject in wanted)


def test_limits_in_events_from_df_events():
    nc = _Server(_stored(5, events=100))
    assert _fetch(nc, events=500).outcome == replay_fetch.OK
    got = _fetch(nc, events=499)
    assert (got.outcome, got.messages) == (replay_fetch.OVER_LIMIT, [])
    # A message without a count is one event; an absurd count is
    # bounded, never a crash.
    nc = _Server(_stored(5))
    assert _fetch(nc, events=5).outcome == replay_fetch.OK
    assert _fetch(nc, events=4).outcome == replay_fetch.OVER_LIMIT
    nc.stored[0][2][codec.HEADER_EVENTS] = '9' * 50 + ' lport'
    assert _fetch(nc, events=5).outcome == replay_fetch.OK


def test_limits_in_bytes():
    # Bodies and headers count: 5 bodies of 100 bytes are over 499.
    nc = _Server(_stored(5, size=100))
    assert _fetch(nc, size=5000).outcome == replay_fetch.OK
    assert _fetch(nc, size=499).outcome == replay_fetch.OVER_LIMIT


def test_messages_of_other_subjects_count_against_the_limits():
    every = ['p.topic.T%d' % i for i in range(replay_fetch.MAX_FILTERS + 1)]
    nc = _Server(_stored(len(every) * 2, every, size=100))
    got = _fetch(nc, subjects=every[:-1] + ['p.topic.none'],
                 size=100 * (len(every) * 2 - 1))
    assert got.outcome == replay_fetch.OVER_LIMIT


def test_a_stored_message_with_a_forged_status_is_data():
    # A publisher may put "Status: 204" in its headers, with no body:
    # stored, it carries Nats-Stream, so it is a message, not the end.
    stored = _stored(4)
    forged = dict(stored[1][2], Status='204', **{
        'Nats-Num-Pending': '0', 'Nats-Last-Sequence': '2'})
    stored[1] = (2, 'p.topic.D', forged, b'', stored[1][4])
    nc = _Server(stored)
    got = _fetch(nc)
    assert got.outcome == replay_fetch.OK
    assert [m.seq for m in got.messages] == [1, 2, 3, 4]
    assert got.messages[1].data == b''
    assert got.messages[1].headers['Status'] == '204'


def test_silence_on_the_info_goes_on_with_direct_gets():
    # A stream without a leader does not answer its info; its replicas
    # answer direct gets.
    nc = _Server(_stored(3))
    for error in (asyncio.TimeoutError(), nats_errors.TimeoutError()):
        nc.info_error = error
        got = _fetch(nc)
        assert got.outcome == replay_fetch.OK
        assert [m.seq for m in got.messages] == [1, 2, 3]


def test_silence_on_the_info_reads_on_from_a_stream_sequence():
    # A catch-up asking again for a hole, on a machine too busy for the
    # info to come in time: what was stored since is still read, not
    # taken as nothing new.
    nc = _Server(_stored(10))
    nc.info_error = asyncio.TimeoutError()
    got = _fetch(nc, start_seq=8)
    assert got.outcome == replay_fetch.OK, got
    assert [m.seq for m in got.messages] == [8, 9, 10]
    assert got.last_seq == 10


def test_silence_on_a_page_is_silent():
    nc = _Server(_stored(3))
    nc.silent = True
    got = _fetch(nc, timeout=0.05)
    assert (got.outcome, got.messages) == (replay_fetch.SILENT, [])
    assert nc.unsubscribed == 1
    # Silent only once a round trip to the server brought nothing either.
    assert nc.flushes == 1


def test_replies_read_late_are_not_a_silence():
    # A process that reads its socket late: every page's replies come
    # only with the round trip after the wait.
    nc = _Server(_stored(2 * replay_fetch.PAGE + 10))
    nc.late = True
    progress = replay_fetch.Progress()
    got = asyncio.run(replay_fetch.fetch_on_loop(
        nc, STREAM, 'p', ['p.topic.D'], BASE_NS, 10 ** 6, 10 ** 9, 0.05,
        progress=progress))
    assert got.outcome == replay_fetch.OK
    assert [stored.seq for stored in got.messages] == list(
        range(1, 2 * replay_fetch.PAGE + 11))
    assert nc.flushes == len(nc.gets) == 3     # a round trip a page
    assert progress.heard > 0


def test_a_round_trip_that_fails_is_a_silence():
    nc = _Server(_stored(3))
    nc.late = True
    nc.flush_error = nats_errors.FlushTimeoutError()
    got = _fetch(nc, timeout=0.05)
    assert got.outcome == replay_fetch.SILENT
    assert nc.unsubscribed == 1


def test_progress_is_when_a_reply_came():
    nc = _Server(_stored(3))
    progress = replay_fetch.Progress()
    assert progress.heard == 0.0
    before = time.monotonic()
    asyncio.run(replay_fetch.fetch_on_loop(
        nc, STREAM, 'p', ['p.topic.D'], BASE_NS, 10 ** 6, 10 ** 9, 1.0,
        progress=progress))
    assert before <= progress.heard <= time.monotonic()
    assert nc.flushes == 0


def test_window_passed_by_time():
    # Messages 1..4 aged out: the oldest kept is 5.
    nc = _Server(_stored(6, first=5))
    got = _fetch(nc, start_ns=BASE_NS + 5 * 10 ** 9 - 1)
    assert got.outcome == replay_fetch.WINDOW_PASSED
    assert nc.gets == []
    assert _fetch(nc, start_ns=BASE_NS + 5 * 10 ** 9).outcome == (
        replay_fetch.OK)


def test_window_passed_when_everything_aged_out():
    nc = _Server(info={'config': {'allow_direct': True}, 'state': {
        'messages': 0, 'first_seq': 11, 'last_seq': 10,
        'last_ts': capture_stream.format_time_ns(BASE_NS + 10 ** 9)}})
    assert _fetch(nc, start_ns=BASE_NS).outcome == (
        replay_fetch.WINDOW_PASSED)
    got = _fetch(nc, start_ns=BASE_NS + 2 * 10 ** 9)
    assert (got.outcome, got.messages, got.last_seq) == (
        replay_fetch.OK, [], 10)


def test_window_passed_by_start_seq():
    nc = _Server(_stored(6, first=5))
    assert _fetch(nc, start_seq=4).outcome == replay_fetch.WINDOW_PASSED
    assert _fetch(nc, start_seq=5).outcome == replay_fetch.OK


def test_an_empty_stream_is_nothing_to_replay():
    nc = _Server()
    got = _fetch(nc)
    assert (got.outcome, got.messages, got.last_seq) == (
        replay_fetch.OK, [], 0)
    assert nc.gets == []


def test_nothing_since_the_start_is_a_404():
    nc = _Server(_stored(3))
    got = _fetch(nc, start_ns=BASE_NS + 60 * 10 ** 9)
    assert (got.outcome, got.messages) == (replay_fetch.OK, [])
    assert len(nc.gets) == 1


@pytest.mark.parametrize('status, outcome', [
    (408, replay_fetch.FAILED), (503, replay_fetch.NO_STREAM),
    (400, replay_fetch.FAILED)])
def test_direct_get_status_answers(status, outcome):
    nc = _Server(_stored(3))
    nc.status = status
    got = _fetch(nc)
    assert (got.outcome, got.messages) == (outcome, [])


@pytest.mark.parametrize('error, info', [
    (nats_errors.NoRespondersError(), None),
    (None, {'error': {'code': 404, 'err_code':
                      capture_stream.ERR_STREAM_NOT_FOUND,
                      'description': 'stream not found'}}),
    (None, {'config': {'allow_direct': False}, 'state': {'messages': 3}}),
])
def test_no_stream(error, info):
    nc = _Server(_stored(3), info=info)
    nc.info_error = error
    assert _fetch(nc).outcome == replay_fetch.NO_STREAM
    assert nc.gets == []


def test_another_api_error_is_failed():
    nc = _Server(info={'error': {'code': 500, 'err_code': 10008,
                                 'description': 'jetstream error'}})
    assert _fetch(nc).outcome == replay_fetch.FAILED


class _Broken(_Server):
    """Answers each page with what a broken or hostile server sends."""

    def __init__(self, stored, answer):
        super().__init__(stored)
        self.answer = answer

    async def publish(self, subject, payload, reply):
        self.gets.append(json.loads(payload))
        if len(self.gets) > 50:
            return    # then silent: the fetch ends, one way or another
        for headers, data in self.answer(self.gets[-1]):
            await self._reply(reply, headers, data)


def test_an_end_of_batch_without_counts_is_failed():
    nc = _Broken(_stored(3), lambda request: [
        ({'Status': '204', 'Description': 'EOB'}, b'')])
    assert _fetch(nc, timeout=0.05).outcome == replay_fetch.FAILED


def test_a_stored_message_without_its_sequence_is_failed():
    nc = _Broken(_stored(3), lambda request: [
        ({'Nats-Stream': STREAM, 'Nats-Subject': 'p.topic.D'}, b'x')])
    assert _fetch(nc, timeout=0.05).outcome == replay_fetch.FAILED


def test_an_end_of_batch_that_does_not_move_on_ends_the_fetch():
    # Each page: "5 left, last sequence 0", and nothing else.
    nc = _Broken(_stored(3), lambda request: [
        ({'Status': '204', 'Description': 'EOB', 'Nats-Num-Pending': '5',
          'Nats-Last-Sequence': str(request.get('seq', 1) - 1)}, b'')])
    got = _fetch(nc, timeout=0.05)
    assert len(nc.gets) <= 2
    assert got.outcome == replay_fetch.FAILED


def test_a_catch_up_from_before_the_stream_existed_is_window_passed():
    stored = _stored(3)
    created = capture_stream.format_time_ns(BASE_NS + 10 ** 9 // 2)
    nc = _Server(stored, info={
        'created': created,
        'config': {'name': STREAM, 'allow_direct': True},
        'state': {'messages': 3, 'first_seq': 1, 'last_seq': 3,
                  'first_ts': capture_stream.format_time_ns(stored[0][4]),
                  'last_ts': capture_stream.format_time_ns(stored[-1][4])}})
    # Asked from after its creation: replayed.
    assert _fetch(nc, start_ns=BASE_NS + 10 ** 9).outcome == replay_fetch.OK
    # From before it: what was published then is nowhere.
    assert _fetch(nc, start_ns=BASE_NS).outcome == (
        replay_fetch.WINDOW_PASSED)


def test_header_bytes_count_against_the_limit():
    stored = []
    for seq in range(1, 11):
        headers = {'Df-Seq': 'pub inc.%d' % seq, 'X-Pad': 'x' * 10000}
        stored.append((seq, 'p.topic.D', headers, b'', BASE_NS + seq))
    nc = _Server(stored)
    got = _fetch(nc, size=50000)
    assert got.outcome == replay_fetch.OVER_LIMIT, (
        len(got.messages), sum(len(m.headers['X-Pad'])
                               for m in got.messages))
