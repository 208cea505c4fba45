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


"""``df-nats check``: exit status, report and timing."""

import types

import pytest

from df_nats.cmd import check
from df_nats.transport import capture_stream


def test_exit_status_is_the_worst_check():
    def run(*statuses):
        return check.status([check.Check('c', s, '') for s in statuses])
    assert run('OK', 'INFO') == 0
    assert run('OK', 'WARN', 'INFO') == 1
    assert run('WARN', 'FAIL') == 2
    assert run() == 2


def test_text_report_escapes_and_sums_up():
    checks = [check.Check('connect', 'FAIL', 'refused \x1b[2J'),
              check.Check('config', 'OK', 'fine')]
    report = check.format_text(checks, 2)
    assert '\x1b' not in report
    assert report.splitlines() == ['FAIL  connect      refused \\x1b[2J',
                                   'OK    config       fine',
                                   'df-nats check: CRITICAL (1)']


def test_process_age_is_small_and_positive():
    assert 0 <= check.process_age() < 3600


def _replay_conf(**values):
    conf = dict(subject_prefix='dragonflow', replay_stream='DF_NATS_EVENTS',
                replay_replicas=0, kv_replicas=3, replay_max_age=600,
                replay_max_bytes=1024 ** 3)
    conf.update(values)
    return types.SimpleNamespace(**conf)


def _stream_info(**config):
    found = dict(capture_stream.stream_config(_replay_conf(), 3), **config)
    return {'config': found, 'state': {'messages': 12, 'bytes': 3456}}


def test_capture_stream_as_publishers_make_it_is_ok():
    name, status, message = check.capture_report(_replay_conf(),
                                                 _stream_info())
    assert (name, status) == ('capture', 'OK')
    assert message == (
        'stream DF_NATS_EVENTS: 12 message(s), 3456 bytes; captures'
        ' dragonflow.topic.>, max age 600 s, max bytes 1073741824, 3'
        ' replica(s), direct get allowed')
    # More replicas than wanted is no problem (a compute node's section
    # may leave kv_replicas at 1).
    assert check.capture_report(_replay_conf(kv_replicas=1),
                                _stream_info())[1] == 'OK'


@pytest.mark.parametrize('config, values, expected', [
    ({'subjects': ['dragonflow.>']}, {},
     'captures dragonflow.>, not dragonflow.topic.>'),
    ({'max_age': 60 * 10 ** 9}, {},
     'max age 60 s, [df_nats] replay_max_age = 600'),
    ({}, {'replay_max_bytes': 2 * 1024 ** 3},
     'max bytes 1073741824 bytes, [df_nats] replay_max_bytes = 2147483648'),
    ({'num_replicas': 1}, {},
     '1 replica(s), fewer than [df_nats] replay_replicas wants (3)'),
    ({}, {'replay_replicas': 5},
     '3 replica(s), fewer than [df_nats] replay_replicas wants (5)'),
    ({'allow_direct': False}, {},
     'direct get not allowed: every catch-up falls back to a full resync'),
    ({'discard': 'new'}, {},
     'discard new: a full stream refuses new events'),
])
def test_capture_stream_settings_that_differ_are_a_warning(
        config, values, expected):
    name, status, message = check.capture_report(_replay_conf(**values),
                                                 _stream_info(**config))
    assert status == 'WARN'
    assert 'differs from [df_nats]: ' + expected in message, message


def test_capture_stream_answer_of_any_shape_is_reported():
    # What the server (or anything answering in its place) says is data.
    for info in ({}, {'config': 'x', 'state': []}, [],
                 {'config': {'subjects': ['\x1b[2J'], 'max_age': 'x',
                             'num_replicas': True}}):
        name, status, message = check.capture_report(_replay_conf(), info)
        assert status == 'WARN'
        assert '\x1b' not in message
