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


"""``df-nats exporter`` scraped over HTTP on loopback, parsed by
prometheus-client's own parser.
"""

import subprocess
import sys
import time
import urllib.request

from prometheus_client.openmetrics import parser as openmetrics_parser
from prometheus_client import parser

from df_nats.testing.embedded_server import free_port
from df_nats.testing.worker_process import child_env
from tests.functional import hostile_tools
from tests.functional.test_driver import ROOT
from tests.functional.test_stats import _Worker

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _exporter(url, port):
    proc = subprocess.Popen(
        [sys.executable, '-m', 'df_nats.cmd.main', 'exporter', '--servers',
         url, '--listen', '127.0.0.1:%d' % port, '--timeout', '15'],
        cwd=ROOT, env=child_env([ROOT]), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for line in proc.stderr:
        if 'serving /metrics on 127.0.0.1:%d' % port in line:
            return proc
    proc.kill()
    raise AssertionError('the exporter did not start: %s'
                         % (proc.communicate(),))


def _scrape(port, openmetrics=False):
    request = urllib.request.Request('http://127.0.0.1:%d/metrics' % port)
    if openmetrics:
        request.add_header('Accept', 'application/openmetrics-text;'
                                     ' version=1.0.0')
    with _OPENER.open(request, timeout=30) as response:
        body = response.read().decode()
    assert '\x1b' not in body
    parse = (openmetrics_parser if openmetrics else parser
             ).text_string_to_metric_families
    return {family.name: family for family in parse(body)}, body


def _value(families, name, **labels):
    for sample in families[name].samples:
        if all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    raise AssertionError('no %s sample with %s' % (name, labels))


def test_scrapes_show_a_controllers_counters_growing(fresh_nats_server,
                                                     tmp_path):
    url = fresh_nats_server.url
    port = free_port()
    workers, exporter = [], None
    try:
        controller = _Worker(tmp_path, 'controller', 'native', url,
                             'subscriber', ['D'])
        workers.append(controller)
        controller.wait_for('ready')
        pub = _Worker(tmp_path, 'publisher', 'eventlet', url, 'publisher',
                      ['D'])
        workers.append(pub)
        pub.wait_for('ready')
        exporter = _exporter(url, port)
        pid = str(controller.proc.pid)
        with hostile_tools.Replier(url, [
                hostile_tools.fake_stats_reply('FORGED1'),
                hostile_tools.deep_json(100000)]):
            deadline = time.monotonic() + 60
            while True:
                first, body = _scrape(port)
                try:
                    before = _value(first, 'dfnats_subscriber_received',
                                    pid=pid)
                except (AssertionError, KeyError):
                    before = 0
                if before > 0:
                    break
                assert time.monotonic() < deadline, body
                time.sleep(0.5)
            time.sleep(1.5)
            second, body = _scrape(port)
            # OpenMetrics too, for a scraper that asks for it.
            third, _ = _scrape(port, openmetrics=True)
        assert _value(third, 'dfnats_subscriber_received', pid=pid) > 0
        after = _value(second, 'dfnats_subscriber_received', pid=pid)
        assert after > before > 0
        assert first['dfnats_subscriber_received'].type == 'counter'
        info = [s for s in second['dfnats_process_info'].samples
                if s.labels['pid'] == pid][0]
        assert info.labels['host'] and info.labels['role'] == 'worker.py'
        assert info.labels['kind'] == 'subscriber'
        assert info.labels['trust'] == 'verified'
        assert info.labels['server'] == fresh_nats_server.name
        assert _value(second, 'dfnats_up') == 1
        assert _value(second, 'dfnats_lag_avg_seconds', pid=pid) > 0
        assert _value(second, 'dfnats_rtt_seconds', pid=pid) > 0
        # The forged reply is no process; both hostile replies counted.
        assert {s.labels['pid'] for s in
                second['dfnats_process_info'].samples} == {
            pid, str(pub.proc.pid)}
        assert _value(second, 'dfnats_replies_skipped',
                      reason='forged') == 1
        assert _value(second, 'dfnats_replies_skipped',
                      reason='too deep') == 1
        assert _value(first, 'dfnats_connection_published',
                      pid=str(pub.proc.pid)) > 0
        # The publisher is in the registry; a subscriber is not asked.
        assert _value(second, 'dfnats_registry_up') == 1
        assert [(s.labels['pid'], s.value) for s in
                second['dfnats_publisher_registered'].samples] == [
            (str(pub.proc.pid), 1)]
        for worker in workers:
            worker.finish()
    finally:
        if exporter is not None:
            exporter.terminate()
            exporter.wait(20)
        for worker in workers:
            worker.kill()
