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


"""``df-nats exporter``: replies to metric families (no server)."""

from prometheus_client import exposition
from prometheus_client import parser
from prometheus_client import registry
import pytest

from df_nats.cmd import exporter
from df_nats.cmd import processes
from tests.unit.cmd.test_stats import _Conn
from tests.unit.cmd.test_stats import _reply


@pytest.mark.parametrize('value, expected', [
    ('127.0.0.1:9675', ('127.0.0.1', 9675)), ('[::1]:80', ('::1', 80))])
def test_listen(value, expected):
    assert exporter.parse_listen(value) == expected


@pytest.mark.parametrize('value', ['9675', ':80', 'h:0', 'h:x', 'h:70000'])
def test_bad_listen(value):
    with pytest.raises(ValueError):
        exporter.parse_listen(value)


def _scrape(conn):
    conn.connected = True
    metrics = registry.CollectorRegistry(auto_describe=False)
    metrics.register(exporter.ProcessCollector(conn, 0.1))
    body = exposition.generate_latest(metrics).decode()
    return {f.name: f for f in parser.text_string_to_metric_families(body)}


def test_known_counters_only_labelled_by_host_role_pid():
    data = {'connection': {'published': 5, 'invented_metric': 9},
            'subscriber': {'received': 40},
            'delivery': {'lag_avg_us': 1500, 'queue_bytes': 10},
            'link': {'rtt_us': 800}}
    conn = _Conn([_reply(pid=7, data=data, host='h\x1b[2J'),
                  _reply(pid=7, data=data, host='h\x1b[2J'),   # twice
                  b'[' * 100000 + b']' * 100000])
    families = _scrape(conn)
    received = families['dfnats_subscriber_received'].samples
    assert [(s.labels, s.value) for s in received] == [
        ({'host': 'h\\x1b[2J', 'role': 'df-ctl', 'pid': '7'}, 40.0)]
    assert families['dfnats_lag_avg_seconds'].samples[0].value == 0.0015
    assert families['dfnats_rtt_seconds'].samples[0].value == 0.0008
    assert not any('invented' in name for name in families)
    skipped = {s.labels['reason']: s.value
               for s in families['dfnats_replies_skipped'].samples}
    assert skipped == {'too deep': 1}
    assert families['dfnats_processes'].samples[0].value == 1
    assert families['dfnats_up'].samples[0].value == 1


def test_forged_replies_are_no_process(monkeypatch):
    def verify(result, connections):
        for record in result.records:
            record['trust'] = processes.FORGED
    monkeypatch.setattr(processes, 'verify', verify)
    families = _scrape(_Conn([_reply(pid=7)]))
    assert families['dfnats_processes'].samples[0].value == 0
    assert [(s.labels, s.value) for s in
            families['dfnats_replies_skipped'].samples] == [
        ({'reason': 'forged'}, 1.0)]


def test_disconnected_says_so_and_asks_nothing():
    conn = _Conn([_reply(pid=7)])
    families = _scrape(conn)
    conn.connected = False
    metrics = registry.CollectorRegistry(auto_describe=False)
    metrics.register(exporter.ProcessCollector(conn, 0.1))
    conn.asked.clear()
    body = exposition.generate_latest(metrics).decode()
    assert 'dfnats_up 0.0' in body and conn.asked == []
    assert families['dfnats_up'].samples[0].value == 1


def test_the_sample_alerts_use_metrics_the_exporter_serves():
    import os
    import re

    import yaml

    root = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))))
    with open(os.path.join(root, 'etc', 'prometheus',
                           'df-nats-alerts.yml')) as f:
        rules = yaml.safe_load(f)['groups'][0]['rules']
    with open(os.path.join(root, 'etc', 'prometheus',
                           'prometheus.yml')) as f:
        assert yaml.safe_load(f)['rule_files'] == ['df-nats-alerts.yml']
    data = {'subscriber': {'syncs': 1}, 'delivery': {}}
    conn = _Conn([_reply(pid=7, data=data, role='publisher')])
    conn.connected = True
    metrics = registry.CollectorRegistry(auto_describe=False)
    metrics.register(exporter.ProcessCollector(conn, 0.1))
    body = exposition.generate_latest(metrics).decode()
    served = set(re.findall(r'^(?:# TYPE )?(dfnats_\w+)', body, re.M))
    # Served only when the registry can be read.
    served |= {'dfnats_publisher_registered'}
    used = set()
    for rule in rules:
        used |= set(re.findall(r'\b(dfnats_\w+)', rule['expr']))
    assert used and used <= served, used - served
    assert {r['alert'] for r in rules} >= {
        'DfNatsControllerNotConnected', 'DfNatsPublisherNotRegistered',
        'DfNatsResyncsRising', 'DfNatsLagHigh'}
