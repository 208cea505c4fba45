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

"""The storm benchmark's accounting (benchmarks/storm_report.py) on
made-up records, and its helpers: subject matching, server lists,
options."""

import json

import pytest

from benchmarks import storm
from benchmarks import storm_report
from benchmarks import storm_worker

T0 = 1000.0


def _record(deliveries, syncs=(), reasons=(), index=0, url='nats://a',
            reconnects=(), stats=None):
    """A child's record as storm_worker writes it: ``deliveries`` are
    (seq, wall-clock time) in delivery order.
    """
    base = int(T0 * 1000)
    ms = [int(round(t * 1000)) - base for _, t in deliveries]
    deltas = [b - a for a, b in zip([0] + ms, ms)]
    return {'index': index, 'first_url': url, 'last_url': url,
            't0_ms': base, 'seqs': [seq for seq, _ in deliveries],
            'dt_ms': deltas, 'syncs': list(syncs),
            'sync_reasons': [list(r) for r in reasons],
            'reconnect_times': list(reconnects), 'unknown': 0,
            'stats': stats or {}, 'conn_stats': {}}


# Ten events, sent one a second from T0.
SENT = [T0 + n for n in range(10)]


def test_delivered_covered_lost_add_up_to_published():
    # 4, 7 and 8 never arrive; one sync at T0+4.5 covers 4 (sent before
    # it) but not 7 and 8 (sent after it): lost.
    record = _record([(0, T0 + .01), (1, T0 + 1.01), (2, T0 + 2.01),
                      (3, T0 + 3.01), (6, T0 + 6.01), (5, T0 + 6.02),
                      (9, T0 + 9.01), (9, T0 + 9.02)], syncs=[T0 + 4.5])
    acc = storm_report.account_subscriber(SENT, record, t_kill=T0 + 3.5)
    assert acc['published'] == 10
    assert (acc['delivered'], acc['covered'], acc['lost']) == (7, 1, 2)
    assert acc['lost_examples'] == [7, 8]
    # 5 after 6: one regression; the second 9 is a duplicate, not one.
    assert acc['order_regressions'] == 1
    assert acc['duplicate_deliveries'] == 1
    # 7 and 8 were lost after the kill: never caught up.
    assert acc['caught_up'] is None
    assert acc['syncs'] == acc['syncs_after_kill'] == 1


def test_a_sync_covers_only_events_sent_at_or_before_it():
    record = _record([(n, SENT[n] + .01) for n in range(10) if n != 5],
                     syncs=[SENT[5]])
    acc = storm_report.account_subscriber(SENT, record, t_kill=T0)
    assert (acc['delivered'], acc['covered'], acc['lost']) == (9, 1, 0)
    record = _record([(n, SENT[n] + .01) for n in range(10) if n != 5],
                     syncs=[SENT[5] - .001])
    acc = storm_report.account_subscriber(SENT, record, t_kill=T0)
    assert (acc['delivered'], acc['covered'], acc['lost']) == (9, 0, 1)


def test_caught_up_is_the_longest_wait_after_the_kill():
    # Kill at T0+4.5: 5 and 6 wait for a sync at T0+7.2 (waits 2.2 and
    # 1.2 s); 7..9 come 10 ms after they are sent. 2 waited 3 s but was
    # sent before the kill's window.
    deliveries = [(0, T0 + .01), (1, T0 + 1.01), (3, T0 + 3.01),
                  (4, T0 + 4.01), (7, T0 + 7.01), (8, T0 + 8.01),
                  (9, T0 + 9.01), (2, T0 + 5.0)]
    record = _record(deliveries, syncs=[T0 + 7.2])
    acc = storm_report.account_subscriber(SENT, record, t_kill=T0 + 4.5,
                                          steady=(T0, T0 + 1.5))
    assert acc['caught_up'] == pytest.approx(2.2, abs=1e-3)
    assert acc['steady_latencies'] == pytest.approx([.01, .01], abs=1e-3)
    assert acc['order_regressions'] == 1  # 2 after 9


def test_an_event_in_flight_at_the_kill_counts_for_caught_up():
    # Sent 0.5 s before the kill (inside WINDOW_BEFORE), covered 3 s
    # after it was sent.
    record = _record([(n, SENT[n] + .01) for n in range(10) if n != 5],
                     syncs=[SENT[5] + 3])
    acc = storm_report.account_subscriber(
        SENT, record, t_kill=SENT[5] + storm_report.WINDOW_BEFORE / 2)
    assert acc['caught_up'] == pytest.approx(3.0, abs=1e-3)


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert storm_report.percentile(values, 0.5) == 50
    assert storm_report.percentile(values, 0.99) == 99
    assert storm_report.percentile([7], 0.99) == 7
    assert storm_report.percentile([], 0.5) is None


def _run(records_urls=('nats://a', 'nats://b')):
    return {'sent': SENT, 'refused': [], 't_go': T0, 't_kill': T0 + 4.5,
            'killed': 'n1', 'node_of': {'nats://a': 'n1', 'nats://b': 'n2'},
            'killed_roles': ["publisher's node"], 'rss_before': {'n1': 1},
            'rss_after': {'n1': 2}}


def test_caught_up_after_its_reconnect_counts_from_when_events_flow():
    # Kill at T0+4.5, reconnect at T0+5.5: 4 (sent before) is delivered
    # at T0+6.0, 0.5 s after the reconnect; 5 (sent T0+5) at T0+6.2;
    # 6 (sent after the reconnect) 0.3 s after it was sent.
    deliveries = [(n, SENT[n] + .01) for n in range(4)] + [
        (4, T0 + 6.0), (5, T0 + 6.2), (6, SENT[6] + .3)] + [
        (n, SENT[n] + .01) for n in range(7, 10)]
    record = _record(deliveries)
    acc = storm_report.account_subscriber(SENT, record, t_kill=T0 + 4.5,
                                          flowing=T0 + 5.5)
    assert acc['caught_up'] == pytest.approx(2.0, abs=1e-3)
    assert acc['caught_up_after_reconnect'] == pytest.approx(0.7, abs=1e-3)
    # Without a reconnect there is none.
    acc = storm_report.account_subscriber(SENT, record, t_kill=T0 + 4.5)
    assert acc['caught_up_after_reconnect'] is None


def test_case_report_sums_subscribers_and_names_sync_reasons():
    on_killed = _record(
        [(n, SENT[n] + .01) for n in range(10) if n not in (5, 6)],
        syncs=[T0 + 5.2, T0 + 9.5], index=0, url='nats://a',
        reasons=[(T0 + 5.2, 'reconnect'), (T0 + 9.5, 'gap, reconnect')],
        reconnects=[T0 + 5.1], stats={'syncs': 2, 'gaps': 1})
    on_killed['conn_stats'] = {'reconnects': 1}
    # The second subscriber's sync was logged in another wording.
    other = _record([(n, SENT[n] + .02) for n in range(10)],
                    syncs=[T0 + 9.9], index=1, url='nats://b',
                    stats={'replayed': 3, 'duplicates': 2})
    other['silent_at_end'] = storm_report.STALLED + 1
    on_killed['silent_at_end'] = 0.1
    report = storm_report.case_report(_run(), [other, on_killed])
    for field in storm_report.REPORT_FIELDS:
        assert field in report, field
    assert report['subscribers'] == 2 and report['published'] == 10
    assert report['placement'] == {'n1': 1, 'n2': 1}
    assert report['lost_node'] == 1 and report['reconnected'] == 1
    assert report['missed_events'] == 1
    assert report['full_syncs'] == 3
    assert report['syncs_by_reason'] == {'gap': 1, 'reconnect': 2,
                                         'unknown': 1}
    assert (report['replayed'], report['duplicates_dropped']) == (3, 2)
    assert report['delivered'] + report['covered'] + report[
        'silent_loss'] == 2 * 10
    assert report['covered'] == 2 and report['silent_loss'] == 0
    assert report['reconnect_after_kill']['max'] == pytest.approx(0.6)
    # The subscriber on the killed node: 5 (sent T0+5) waited for the
    # sync at T0+5.2, 6 (sent T0+6) for the one at T0+9.5.
    assert report['caught_up_affected']['n'] == 1
    assert report['caught_up_affected']['max'] == pytest.approx(3.5,
                                                                abs=1e-3)
    # From its reconnect (T0+5.1): 6 waited until T0+9.5.
    assert report['caught_up_after_reconnect']['n'] == 1
    assert report['caught_up_after_reconnect']['max'] == pytest.approx(
        3.5, abs=1e-3)
    assert report['killed_roles'] == ["publisher's node"]
    assert report['stalled_at_end'] == 1
    assert 'node_of' not in report and 'sent' not in report
    lines = report['per_subscriber']
    assert [line['index'] for line in lines] == [0, 1]
    for line in lines:
        assert set(storm_report.SUBSCRIBER_FIELDS) <= set(line)
        assert line['delivered'] + line['covered'] + line['lost'] == (
            line['published'])
    text = storm_report.table({
        'config': {'subscribers': 2, 'world': 'native',
                   'placement': 'listed', 'rate': 1.0, 'down': 1.0},
        'commit': 'abc', 'cases': {'publisher-node': report}})
    for label, _ in storm_report.ROWS:
        assert label in text
    assert 'gap 1, reconnect 2, unknown 1' in text
    payload = {'cases': {'publisher-node': report, 'other-node': report}}
    written = storm_report.to_json(payload)
    assert json.loads(written) == json.loads(json.dumps(payload))
    # One line a subscriber.
    assert written.count('\n  {"caught_up"') == 4


@pytest.mark.parametrize('pattern,subject,expected', [
    ('dragonflow.topic.>', 'dragonflow.topic.abc', True),
    ('dragonflow.topic.*', 'dragonflow.topic.abc', True),
    ('dragonflow.topic.>', 'dragonflow.topic', False),
    ('dragonflow.*.abc', 'dragonflow.topic.abc', True),
    ('dragonflow.topic.abc', 'dragonflow.topic.abd', False),
    ('dragonflow.topic.*', 'dragonflow.topic.a.b', False),
    ('$KV.df_publishers.>', 'dragonflow.topic.abc', False),
])
def test_subject_matches(pattern, subject, expected):
    assert storm.subject_matches(pattern, subject) is expected


def test_servers_round_robin_with_its_own_node_first():
    urls = ['u1', 'u2', 'u3']
    assert storm_worker.servers_for(0, urls, 'listed') == urls
    assert storm_worker.servers_for(4, urls, 'listed') == ['u2', 'u3', 'u1']
    assert storm_worker.servers_for(5, urls, 'pinned') == ['u3']


def test_options_and_bounds():
    args = storm.parser().parse_args([
        '--subscribers', '20', '--option', 'subject_prefix=x',
        '--option', 'resync_interval=0'])
    assert storm._option(args, 'subject_prefix', 'dragonflow') == 'x'
    assert storm._option(args, 'registry_bucket', 'b') == 'b'
    timing = storm.timing_of(args)
    span = args.warmup + args.down + args.after + args.settle
    assert timing['max_events'] > args.rate * span
    assert timing['worker_timeout'] > (
        timing['start_timeout'] + span + timing['close_timeout'])


def test_the_baseline_runs_the_cases_without_a_stream():
    def cases(*argv):
        return storm.cases_of(storm.parser().parse_args(list(argv)))
    assert cases() == storm.CASES
    assert cases('--case', 'meta-leader') == ('meta-leader',)
    assert cases('--client', 'nats-py') == ('publisher-node', 'other-node')
    assert cases('--client', 'nats-py', '--case', 'other-node') == (
        'other-node',)
    with pytest.raises(storm.StormError, match='no stream-leader case'):
        cases('--client', 'nats-py', '--case', 'stream-leader')


def test_the_baseline_runs_native_only(tmp_path):
    args = storm.parser().parse_args(['--client', 'nats-py', '--world',
                                      'eventlet', '--out', str(tmp_path)])
    with pytest.raises(storm.StormError, match='native world only'):
        storm.run(args)


def test_the_baselines_table_says_what_it_is():
    config = {'subscribers': 2, 'world': 'native', 'placement': 'listed',
              'rate': 1.0, 'down': 1.0}
    for client, said in (('nats-py', '(baseline: plain nats-py, no'
                                     ' recovery, listed placement)'),
                         ('df-nats', '(native world, listed placement)')):
        text = storm_report.table({'config': dict(config, client=client),
                                   'commit': 'abc', 'cases': {}})
        assert said in text.splitlines()[0]


@pytest.mark.parametrize('argv', [['--subscribers', '0'],
                                  ['--rate', '-1'],
                                  ['--case', 'bogus'],
                                  ['--client', 'bogus']])
def test_bad_options_are_refused(argv):
    with pytest.raises(SystemExit):
        storm.parser().parse_args(argv)


class _Node:
    """A running node whose monitoring endpoint answers ``jsz``."""

    def __init__(self, name, jsz):
        self.name = name
        self.jsz = jsz

    def is_running(self):
        return True

    def get_json(self, path):
        return self.jsz


class _Cluster:
    def __init__(self, streams, meta='n2'):
        detail = [{'name': name, 'cluster': {'leader': leader},
                   'config': {'subjects': subjects}}
                  for name, (leader, subjects) in streams.items()]
        jsz = {'meta_cluster': {'leader': meta},
               'account_details': [{'stream_detail': detail}]}
        self.nodes = [_Node('n%d' % i, jsz) for i in (1, 2, 3)]


TOPIC_SUBJECT = 'dragonflow.topic.t1'


def test_the_capture_stream_is_the_stream_of_interest():
    cluster = _Cluster({'KV_df_publishers': ('n1', ['$KV.df_publishers.>']),
                        'DF_CAPTURE': ('n3', ['dragonflow.topic.>']),
                        'OTHER': ('n2', ['elsewhere.>'])})
    assert storm.meta_leader(cluster) == 'n2'
    assert storm.stream_of_interest(
        cluster, TOPIC_SUBJECT, 'df_publishers') == 'DF_CAPTURE'
    assert storm.find_stream(cluster, TOPIC_SUBJECT, 'df_publishers',
                             timeout=5, grace=5) == 'DF_CAPTURE'
    assert storm.roles_of(cluster, cluster.nodes[2], None) == [
        'leader of DF_CAPTURE']
    assert storm.roles_of(cluster, cluster.nodes[1], cluster.nodes[1]) == [
        "publisher's node", 'meta leader', 'leader of OTHER']


def test_without_a_capture_stream_the_registry_bucket_after_a_grace():
    cluster = _Cluster({'KV_df_publishers': ('n1', ['$KV.df_publishers.>'])})
    assert storm.find_stream(cluster, TOPIC_SUBJECT, 'df_publishers',
                             timeout=5, grace=0.3) == 'KV_df_publishers'
    assert storm.find_stream(_Cluster({}), TOPIC_SUBJECT, 'df_publishers',
                             timeout=0.3, grace=0.1) is None


def test_other_node_is_neither_the_publishers_nor_the_meta_leader():
    cluster = _Cluster({})
    n1, n2, n3 = cluster.nodes
    assert storm._pick(cluster, 'other-node', 'n2', n1) is n3
    assert storm._pick(cluster, 'other-node', 'n3', n1) is n2
    assert storm._pick(cluster, 'publisher-node', 'n3', n1) is n1
    assert storm._pick(cluster, 'meta-leader', 'n3', n1) is n3


def test_idle_share_is_the_idle_part_of_the_cpu_time_between_two_reads():
    assert storm.idle_share((100, 1000), (130, 1100)) == 0.3
    # Unreadable, or no time between the reads: unknown, not 0.
    assert storm.idle_share(None, (130, 1100)) is None
    assert storm.idle_share((100, 1000), (100, 1000)) is None
    idle, total = storm.cpu_times()
    assert 0 <= idle <= total


def test_the_table_shows_the_machines_idle_cpu_or_a_dash():
    report = {'cpu_idle': {'before_kill': 0.031, 'while_down': None}}
    assert storm_report._idle_text(report) == '3 % / -'
    assert storm_report._idle_text({}) == '- / -'
