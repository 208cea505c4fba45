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

"""``df-nats stats``: replies read, filtered and shown (no server)."""

import datetime
import json

from nats.micro import service as micro_service
import pytest

from df_nats.cmd import stats
from df_nats.transport import service


def _reply(pid=101, role='subscriber', name=service.NAME, data=None,
           **meta):
    """A STATS reply as nats-py's micro service builds it."""
    metadata = {'host': 'compute-1', 'pid': str(pid), 'process': 'df-ctl',
                'threads': 'eventlet', 'subject_prefix': 'dragonflow',
                'df_nats_version': '0.0.1.dev87', 'role': role,
                'publisher_id': '3f2a9c1e-0000-4000-8000-000000000001'}
    metadata.update(meta)
    endpoint = micro_service.EndpointStats(
        name=service.ENDPOINT, subject=service.endpoint_subject('id%d' % pid),
        queue_group='q', num_requests=0, num_errors=0, processing_time=0,
        average_processing_time=0,
        data=data if data is not None else service.counters(
            {'published': 5, 'messages': 2}, [{'received': 40, 'gaps': 1}],
            0, 0, 'TimeoutError: nats: timeout'))
    reply = micro_service.ServiceStats(
        id='id%d' % pid, name=name, version='0.0.1-dev87',
        started=datetime.datetime(2026, 1, 2, 3, 4, 5),
        endpoints=[endpoint], metadata=metadata)
    return json.dumps(reply.to_dict()).encode()


def test_a_reply_becomes_a_process_record():
    record = stats.parse_reply(_reply())
    assert record['pid'] == 101
    assert record['role'] == 'subscriber'
    assert record['host'] == 'compute-1'
    assert record['threads'] == 'eventlet'
    assert record['version'] == '0.0.1.dev87'
    assert record['id'] == 'id101'
    assert record['started'] == '2026-01-02T03:04:05.000Z'
    assert record['subscriber']['received'] == 40
    assert record['subscriber']['gaps'] == 1
    assert record['connection']['published'] == 5
    assert record['connection']['reconnects'] == 0
    assert record['last_error'] == 'TimeoutError: nats: timeout'
    json.dumps(record)


@pytest.mark.parametrize('body', [
    b'not json', b'[]', b'{}', b'\xff',
    _reply(name='other-service'),
    json.dumps({'type': service.STATS_RESPONSE_TYPE, 'name': service.NAME,
                'metadata': 'x', 'endpoints': []}).encode(),
    json.dumps({'type': service.STATS_RESPONSE_TYPE, 'name': service.NAME,
                'metadata': {}, 'endpoints': [{'name': 'counters',
                                               'data': None}]}).encode(),
])
def test_what_is_not_a_df_nats_stats_reply_is_skipped(body):
    assert stats.parse_reply(body) is None


def test_hostile_values_are_bounded_and_typed():
    data = {'connection': {'published': 'many', 'messages': True,
                           'x' * 1000: 3},
            'subscriber': ['not', 'a', 'map'],
            'outbox_bytes': -1.5, 'last_error': 'e' * 10000}
    record = stats.parse_reply(_reply(data=data, host='h' * 5000))
    assert record['connection']['published'] == 0
    assert record['connection']['messages'] == 0
    assert record['connection']['x' * 300] == 3
    assert record['subscriber'] == {}
    assert record['outbox_bytes'] == 0
    assert len(record['last_error']) == 300 and len(record['host']) == 300


def test_role_filter_counts_both_as_publisher_and_subscriber():
    both = stats.parse_reply(_reply(role='both'))
    sub = stats.parse_reply(_reply(role='subscriber'))
    assert stats.matches(both, 'publisher') and stats.matches(both,
                                                              'subscriber')
    assert stats.matches(sub, 'subscriber')
    assert not stats.matches(sub, 'publisher')
    assert stats.matches(sub, None)
    assert not stats.matches(sub, 'both')


def test_table_one_line_per_process_with_its_counters():
    records = [stats.parse_reply(_reply(pid=7, role='publisher')),
               stats.parse_reply(_reply(pid=8, publisher_id=''))]
    lines = stats.format_table(records).splitlines()
    assert lines[0].split() == [
        'ROLE', 'HOST', 'PID', 'PROCESS', 'THREADS', 'PUBLISHER', 'VERSION',
        'SENT', 'BATCHES', 'RECEIVED', 'GAPS', 'SYNCS', 'DUPS', 'MALFORMED',
        'REJECTED', 'RECONNECTS', 'OUTBOX', 'LAST', 'ERROR']
    first = lines[1].split()
    assert first[:13] == ['publisher', 'compute-1', '7', 'df-ctl',
                          'eventlet', '3f2a9c1e', '0.0.1.dev87', '5', '2',
                          '40', '1', '0', '0']
    assert first[16:] == ['0B', 'TimeoutError:', 'nats:', 'timeout']
    assert lines[2].split()[5] == '-'   # no publisher id
    # Columns line up.
    for column, value in (('SENT', '5 '), ('RECEIVED', '40 '),
                          ('LAST ERROR', 'TimeoutError')):
        assert lines[1][lines[0].index(column):].startswith(value)


class _Conn:
    def __init__(self, replies):
        self.replies = replies
        self.asked = None

    def gather(self, subject, wait, max_replies, max_bytes):
        self.asked = (subject, wait)
        return self.replies


def test_collect_asks_every_instance_filters_and_sorts():
    conn = _Conn([_reply(pid=9, role='publisher'), b'junk',
                  _reply(pid=3), _reply(pid=5, role='both')])
    records, skipped = stats.collect(conn, 0.5, role='subscriber')
    assert conn.asked == ('$SRV.STATS.df-nats', 0.5)
    assert skipped == 1
    assert [r['pid'] for r in records] == [3, 5]
