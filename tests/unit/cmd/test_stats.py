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

"""``df-nats stats`` and ``processes``: replies read, filtered, verified
and shown (no server)."""

import datetime
import json

from nats.micro import service as micro_service
import pytest

from df_nats.cmd import processes
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


def _parse(body):
    return processes.parse_reply(body)[0]


def test_a_reply_becomes_a_process_record():
    record = _parse(_reply())
    assert record['pid'] == 101
    assert record['kind'] == 'subscriber'
    assert record['role'] == 'df-ctl'    # the process name's default
    assert record['trust'] == 'unverified'
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
    assert _parse(body) is None


@pytest.mark.parametrize('body, problem', [
    (b'[' * 200000 + b']' * 200000, 'too large'),
    (b'[' * 100000 + b']' * 100000, 'too deep'),
    (b'{"a":' * 20 + b'1' + b'}' * 20, 'too deep'),
    (b'1' * 10000, 'not JSON'),
    (b'{"name": "df-nats"}', processes.NOT_STATS)])
def test_hostile_replies_are_refused_with_their_problem(body, problem):
    assert processes.parse_reply(body) == (None, problem)


def test_hostile_values_are_bounded_and_typed():
    data = {'connection': {'published': 'many', 'messages': True,
                           'x' * 1000: 3},
            'subscriber': ['not', 'a', 'map'],
            'outbox_bytes': -1.5, 'last_error': 'e' * 10000}
    record = _parse(_reply(data=data, host='h' * 5000))
    assert record['connection']['published'] == 0
    assert record['connection']['messages'] == 0
    assert record['connection']['x' * 300] == 3
    assert record['subscriber'] == {}
    assert record['outbox_bytes'] == 0
    assert len(record['last_error']) == 300 and len(record['host']) == 300
    data['connection'] = {'published': -5, 'messages': 2 ** 80}
    record = _parse(_reply(data=data))
    assert record['connection'] == {'published': 0, 'messages': 2 ** 63 - 1}


def test_kind_filter_counts_both_as_publisher_and_subscriber():
    both = _parse(_reply(role='both'))
    sub = _parse(_reply(role='subscriber'))
    assert processes.matches(both, kind='publisher')
    assert processes.matches(both, kind='subscriber')
    assert processes.matches(sub, kind='subscriber')
    assert not processes.matches(sub, kind='publisher')
    assert processes.matches(sub)
    assert not processes.matches(sub, kind='both')


def test_role_filter_is_the_dragonflow_role():
    neutron = _parse(_reply(process='neutron-server'))
    named = _parse(_reply(process='python3', registry_role='api-node'))
    assert neutron['role'] == 'neutron-server'
    assert named['role'] == 'api-node'
    assert processes.matches(neutron, role='neutron-server')
    assert not processes.matches(named, role='neutron-server')


def test_table_one_line_per_process_with_its_counters():
    data = service.counters(
        {'published': 5, 'messages': 2},
        [{'received': 40, 'gaps': 1, 'syncs': 2, 'sync_gap': 1,
          'sync_reconnect': 1}], 0, 0, 'TimeoutError: nats: timeout',
        [{'queue_messages': 3, 'queue_bytes': 2048, 'lag_avg_us': 1500,
          'lag_max_us': 42000, 'last_sync': 1000}],
        {'server': 'nats://10.0.0.1:4222', 'rtt_us': 800})
    records = [_parse(_reply(pid=7, role='publisher', data=data)),
               _parse(_reply(pid=8, publisher_id=''))]
    records[0].update(server='nats-1', verified_user='df-controller',
                      trust='verified')
    lines = stats.format_table(records, now=1030).splitlines()
    assert lines[0].split() == [
        'ROLE', 'KIND', 'HOST', 'PID', 'PROCESS', 'THREADS', 'PUBLISHER',
        'VERSION', 'SERVER', 'RTT', 'USER', 'TRUST', 'SENT', 'BATCHES',
        'RECEIVED', 'GAPS', 'DUPS', 'MALFORMED', 'REJECTED', 'RECONNECTS',
        'SYNCS', 'SYNC', 'CAUSES', 'LAST', 'SYNC', 'QUEUE', 'LAG', 'AVG',
        'LAG', 'MAX', 'OUTBOX', 'LAST', 'ERROR']
    first = lines[1].split()
    assert first[:21] == ['df-ctl', 'publisher', 'compute-1', '7',
                          'df-ctl', 'eventlet', '3f2a9c1e', '0.0.1.dev87',
                          'nats-1', '0.8ms', 'df-controller', 'verified',
                          '5', '2', '40', '1', '0', '0', '0', '0', '2']
    assert first[21:] == ['reconnect:1,gap:1', '30s', 'ago', '3/2.0KiB',
                          '1.5ms', '42.0ms', '0B', 'TimeoutError:', 'nats:',
                          'timeout']
    second = lines[2].split()
    assert second[6] == '-'   # no publisher id
    assert second[8:12] == ['-', '-', '-', 'unverified']
    # Columns line up.
    for column, value in (('SENT', '5 '), ('RECEIVED', '40 '),
                          ('LAST ERROR', 'TimeoutError')):
        assert lines[1][lines[0].index(column):].startswith(value)


def test_sync_causes_name_every_cause_counted():
    # The catch-up's fallbacks too, not only the causes of before replay.
    data = service.counters(
        {}, [{'syncs': 3, 'sync_no_stream': 2, 'sync_window_passed': 1,
              'sync_conflict': 1}], 0, 0, '')
    [line] = stats.format_table([_parse(_reply(data=data))],
                                now=0).splitlines()[1:]
    assert 'conflict:1,no_stream:2,window_passed:1' in line.split()


def test_table_cells_are_escaped():
    record = _parse(_reply(host='h\x1b[2Jx', process='p\x1b]0;t\x07'))
    table = stats.format_table([record])
    assert '\x1b' not in table
    assert 'h\\x1b[2Jx' in table and 'p\\x1b]0;t\\x07' in table


class _Conn:
    def __init__(self, replies, connz=None):
        self.replies = replies
        self.connz = connz
        self.asked = []

    def gather(self, subject, wait, max_replies, max_bytes, payload=b'',
               until_quiet=None):
        self.asked.append((subject, wait))
        if subject == processes.CONNZ_SUBJECT:
            return self.connz or []
        return self.replies


def test_collect_asks_every_instance_filters_and_sorts():
    conn = _Conn([_reply(pid=9, role='publisher'), b'junk',
                  _reply(pid=3), _reply(pid=5, role='both')])
    result = processes.collect(conn, 0.5, kind='subscriber')
    assert conn.asked[0] == ('$SRV.STATS.df-nats', 0.5)
    assert conn.asked[1][0] == '$SYS.REQ.ACCOUNT.PING.CONNZ'
    assert dict(result.skipped) == {'not JSON': 1}
    assert [r['pid'] for r in result.records] == [3, 5]
    assert not result.verified and 'unverified' in result.note


def _connz(server, *connections):
    return json.dumps({'server': {'name': server}, 'data': {
        'total': len(connections), 'connections': [
            {'authorized_user': user, 'account': 'APP', 'rtt': rtt,
             'subscriptions_list_detail': [
                 {'subject': service.endpoint_subject(i)} for i in ids]}
            for user, rtt, ids in connections]}}).encode()


def test_what_the_server_says_marks_each_record():
    replies = [_reply(pid=1, user='ctl'), _reply(pid=2, user='ctl'),
               _reply(pid=3, user='neutron'), _reply(pid=4),
               _reply(pid=4)]
    connz = [_connz('nats-1', ('ctl', '1.5ms', ['id1']),
                    ('ctl', '826\u00b5s', ['id3'])),
             _connz('nats-2', ('other', '2s', ['id4']), ('x', '1s', [])),
             b'[' * 100000 + b']' * 100000]
    result = processes.collect(_Conn(replies, connz), 0.5)
    by_pid = {}
    for record in result.records:
        by_pid.setdefault(record['pid'], []).append(record)
    assert result.verified
    first = by_pid[1][0]
    assert (first['trust'], first['server'], first['verified_user'],
            first['account'], first['rtt_us']) == (
        'verified', 'nats-1', 'ctl', 'APP', 1500)
    assert by_pid[2][0]['trust'] == 'forged'
    assert by_pid[3][0]['trust'] == 'user-mismatch'
    assert by_pid[3][0]['rtt_us'] == 826
    assert [r['trust'] for r in by_pid[4]] == ['ambiguous', 'ambiguous']
