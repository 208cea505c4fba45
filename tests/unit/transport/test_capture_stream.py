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

"""The capture stream's settings, times and window, on a fake JetStream
API (the real one: tests/functional).
"""

import asyncio
import json
import logging
import types

from nats import errors as nats_errors
import pytest

from df_nats.conf import options
from df_nats.transport import capture_stream


@pytest.mark.parametrize('stamp, ns', [
    ('1970-01-01T00:00:00Z', 0),
    ('2026-12-04T18:58:55.123456789Z', 1796410735123456789),
    ('2026-12-04T18:58:55.5Z', 1796410735500000000),
    ('2026-12-04T18:58:55Z', 1796410735000000000),
])
def test_parse_time_as_the_servers_write_it(stamp, ns):
    assert capture_stream.parse_time_ns(stamp) == ns


@pytest.mark.parametrize('ns', [0, 1, 999999999, 1796410735123456789,
                                1796410735000000000])
def test_format_and_parse_round_trip(ns):
    text = capture_stream.format_time_ns(ns)
    assert text.endswith('Z') and len(text) == len('1970-01-01T00:00:00.'
                                                   '000000000Z')
    assert capture_stream.parse_time_ns(text) == ns


@pytest.mark.parametrize('stamp', [
    None, 5, b'2026-12-04T18:58:55Z', '', 'Z', 'garbage',
    '2026-12-04T18:58:55',             # no Z: not UTC as written
    '2026-12-04 18:58:55Z', '2026-13-04T18:58:55Z',
    '2026-12-04T18:58:55.12x4Z', '2026-12-04T18:58:55.-1Z',
    '0001-01-01T00:00:00Z',            # Go's zero time: nothing stored
    '2026-12-04T18:58:55+01:00',
])
def test_parse_time_rejects_garbage(stamp):
    assert capture_stream.parse_time_ns(stamp) is None


def _info(**state):
    return {'config': {}, 'state': state}


def test_window_start_from_the_state():
    first = '2026-12-04T18:00:00Z'
    first_ns = capture_stream.parse_time_ns(first)
    last = '2026-12-04T18:30:00Z'
    last_ns = capture_stream.parse_time_ns(last)
    # Nothing ever stored, or nothing removed yet: since it began.
    assert capture_stream.window_start_ns(_info()) is None
    assert capture_stream.window_start_ns({}) is None
    assert capture_stream.window_start_ns(_info(
        messages=5, first_seq=1, first_ts=first)) is None
    # Messages removed: from the oldest one kept.
    assert capture_stream.window_start_ns(_info(
        messages=5, first_seq=40, first_ts=first)) == first_ns
    # Every message aged out: just after the last one.
    assert capture_stream.window_start_ns(_info(
        messages=0, first_seq=51, last_seq=50, last_ts=last)) == last_ns + 1
    # An unreadable time in a state that needs one: None, not a crash.
    assert capture_stream.window_start_ns(_info(
        messages=0, last_seq=50, last_ts='garbage')) is None


class _JetStream:
    """nc.request as the JetStream API answers it: scripted per verb."""

    def __init__(self, answers):
        self.answers = answers       # verb -> dict, or an exception
        self.requests = []           # (verb, stream, body)

    async def request(self, subject, payload, timeout):
        parts = subject.split('.')
        assert parts[:3] == ['$JS', 'API', 'STREAM'], subject
        verb, stream = parts[3], parts[4]
        self.requests.append((verb, stream,
                              json.loads(payload) if payload else None))
        answer = self.answers[verb]
        if isinstance(answer, Exception):
            raise answer
        data = answer if isinstance(answer, bytes) else json.dumps(
            answer).encode()
        return types.SimpleNamespace(data=data)


def _error(err_code, code=400, text='refused'):
    return {'error': {'code': code, 'err_code': err_code,
                      'description': text}}


@pytest.fixture
def stream_conf(conf):
    conf.config(group=options.GROUP, subject_prefix='p',
                replay_stream='EVENTS', replay_max_age=600,
                replay_max_bytes=2 ** 30)
    return options.validate(conf.conf)


def _ensure(nc, conf, replicas=3):
    return asyncio.run(capture_stream.ensure_on_loop(nc, conf, replicas,
                                                     1.0))


def test_created_when_not_found(stream_conf):
    nc = _JetStream({'INFO': _error(capture_stream.ERR_STREAM_NOT_FOUND,
                                    404), 'CREATE': {'config': {}}})
    assert _ensure(nc, stream_conf) == capture_stream.CREATED
    verb, name, body = nc.requests[-1]
    assert (verb, name) == ('CREATE', 'EVENTS')
    assert body['subjects'] == ['p.topic.>']
    assert body['max_age'] == 600 * 10 ** 9
    assert body['max_bytes'] == 2 ** 30
    assert body['num_replicas'] == 3
    assert body['discard'] == 'old' and body['allow_direct'] is True


def test_unchanged_when_the_owned_settings_match(stream_conf):
    found = dict(capture_stream.stream_config(stream_conf, 3),
                 description='the operator\'s', max_msgs=1000)
    nc = _JetStream({'INFO': {'config': found}})
    assert _ensure(nc, stream_conf) == capture_stream.UNCHANGED
    assert [r[0] for r in nc.requests] == ['INFO']


@pytest.mark.parametrize('field, value', [
    ('subjects', ['p.topic.D']), ('max_age', 60 * 10 ** 9),
    ('max_bytes', 2 ** 20), ('discard', 'new'), ('allow_direct', False),
    ('num_replicas', 1)])
def test_updated_when_an_owned_field_differs_keeping_the_others(
        stream_conf, field, value):
    found = dict(capture_stream.stream_config(stream_conf, 3),
                 description='the operator\'s', max_msgs=1000,
                 storage='memory')
    found[field] = value
    nc = _JetStream({'INFO': {'config': found}, 'UPDATE': {'config': {}}})
    assert _ensure(nc, stream_conf) == capture_stream.UPDATED
    verb, _, body = nc.requests[-1]
    assert verb == 'UPDATE'
    assert body[field] == capture_stream.stream_config(stream_conf,
                                                       3)[field]
    # The operator's settings stay as they were.
    assert body['description'] == 'the operator\'s'
    assert body['max_msgs'] == 1000 and body['storage'] == 'memory'


def test_kept_as_found_when_the_update_is_refused(stream_conf, caplog):
    found = dict(capture_stream.stream_config(stream_conf, 3),
                 max_age=1)
    nc = _JetStream({'INFO': {'config': found},
                     'UPDATE': _error(10052, 500, 'not allowed')})
    with caplog.at_level(logging.WARNING):
        assert _ensure(nc, stream_conf) == capture_stream.KEPT
    assert 'cannot be updated' in caplog.text


def test_no_jetstream(stream_conf, caplog):
    nc = _JetStream({'INFO': nats_errors.NoRespondersError()})
    with caplog.at_level(logging.WARNING):
        assert _ensure(nc, stream_conf) == capture_stream.NO_JETSTREAM
    assert 'no JetStream' in caplog.text


def test_failed_with_the_storage_hint(stream_conf, caplog):
    nc = _JetStream({'INFO': _error(capture_stream.ERR_STREAM_NOT_FOUND,
                                    404),
                     'CREATE': _error(capture_stream._ERR_NO_STORAGE,
                                      500, 'insufficient resources')})
    with caplog.at_level(logging.WARNING):
        assert _ensure(nc, stream_conf) == capture_stream.FAILED
    assert 'insufficient resources' in caplog.text
    assert 'no room for replay_max_bytes' in caplog.text


def test_failed_without_the_hint_on_another_error(stream_conf, caplog):
    nc = _JetStream({'INFO': _error(10039, 503, 'jetstream not enabled')})
    with caplog.at_level(logging.WARNING):
        assert _ensure(nc, stream_conf) == capture_stream.FAILED
    assert 'jetstream not enabled' in caplog.text
    assert 'no room' not in caplog.text
    assert [r[0] for r in nc.requests] == ['INFO']


@pytest.mark.parametrize('answer', [
    b'not json', b'[1, 2]', asyncio.TimeoutError()])
def test_failed_on_nonsense_or_silence(stream_conf, answer):
    nc = _JetStream({'INFO': answer})
    assert _ensure(nc, stream_conf) == capture_stream.FAILED


def test_api_error_answer_is_a_stream_error():
    nc = _JetStream({'INFO': _error(10059, 404, 'stream not found' * 50)})
    with pytest.raises(capture_stream.StreamError) as caught:
        asyncio.run(capture_stream.api_request_on_loop(nc, 'INFO', 'S',
                                                       None, 1.0))
    assert caught.value.err_code == 10059 and caught.value.code == 404
    assert len(str(caught.value)) < 300     # the description is cut
