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


"""``df-nats exporter``: the counters of every df-nats process as metrics.

An HTTP endpoint (``/metrics``, Prometheus text or OpenMetrics as the
scraper asks, by prometheus-client) for the monitoring a cloud already
runs. Nothing is kept between scrapes: each scrape asks every instance
of the NATS service ``df-nats`` (``processes.collect``, ``--wait``
seconds) and turns the replies into metrics, labelled by ``host``,
``role`` (the Dragonflow role) and ``pid``.

Each scrape also reads the publisher registry (when this user may): a
process that publishes gets ``dfnats_publisher_registered`` 1 when its
publisher ids are all in the registry, 0 when one is missing.

Only the counters df-nats defines become metrics
(``service.CONNECTION_COUNTERS``, ``SUBSCRIBER_COUNTERS``,
``DELIVERY_GAUGES``): a reply cannot add metric names. Replies the
server says are not their instance's own (``forged``) are left out and
counted; two replies for one (host, role, pid) give one series.
"""

import signal
import sys
import threading
import time

from prometheus_client import core
from prometheus_client import exposition
from prometheus_client import registry as prometheus_registry

from df_nats.cmd import common
from df_nats.cmd import processes
from df_nats.cmd import text
from df_nats.registry import watch as registry_watch
from df_nats.transport import service

LABELS = ('host', 'role', 'pid')
_PREFIX = 'dfnats_'
# Gauges of the delivery section: (metric, key, divisor to the unit).
_DELIVERY = (('delivery_queue_messages', 'queue_messages', 1,
              'Messages waiting for the subscriber callback'),
             ('delivery_queue_bytes', 'queue_bytes', 1,
              'Bytes waiting for the subscriber callback'),
             ('lag_last_seconds', 'lag_last_us', 1e6,
              'Publish to callback, the last message'),
             ('lag_avg_seconds', 'lag_avg_us', 1e6,
              'Publish to callback, moving average (each measured'
              ' message weighs 1/16)'),
             ('lag_max_seconds', 'lag_max_us', 1e6,
              'Publish to callback, the largest since the start'),
             ('last_sync_timestamp_seconds', 'last_sync', 1,
              'When the last resync was delivered (0: never)'))
_DELIVERY_COUNTERS = (('lag_measured', 'Messages whose lag was measured'),
                      ('lag_ignored',
                       'Send times not believed (clock or forgery)'))


def parse_listen(value: str):
    """``(host, port)`` of ``ADDR:PORT`` (``[::1]:PORT`` for IPv6)."""
    host, sep, port = value.rpartition(':')
    host = host.strip('[]')
    if not sep or not host or not port.isdigit() or not (
            0 < int(port) < 65536):
        raise ValueError('--listen: expected ADDR:PORT, got %r' % value)
    return host, int(port)


def _label(value) -> str:
    return text.cell(value, limit=128, empty='')


class ProcessCollector:
    """A prometheus-client collector asking the processes at each scrape.

    ``collect`` runs in the HTTP server's thread; scrapes are taken one
    at a time.
    """

    def __init__(self, conn, wait: float, role=None, kind=None):
        self._conn = conn
        self._wait = wait
        self._role = role
        self._kind = kind
        self._lock = threading.Lock()

    def describe(self):
        return []   # metrics are known only once the processes answer

    def collect(self):
        with self._lock:
            return self._families()

    def _families(self):
        started = time.monotonic()
        up = core.GaugeMetricFamily(
            _PREFIX + 'up', 'Whether the exporter is connected to NATS')
        up.add_metric([], 1 if self._conn.connected else 0)
        families = [up]
        if not self._conn.connected:
            return families
        result = processes.collect(self._conn, self._wait, self._role,
                                   self._kind)
        families.extend(self._process_families(result))
        families.extend(self._registry_families(result))
        duration = core.GaugeMetricFamily(
            _PREFIX + 'scrape_duration_seconds',
            'How long this scrape took to ask the processes')
        duration.add_metric([], time.monotonic() - started)
        families.append(duration)
        return families

    def _registered_ids(self):
        """The publisher ids in the registry now, or None if unreadable."""
        try:
            return {record['id'] for record in
                    registry_watch.list_publishers(self._conn)}
        except Exception:
            return None

    def _registry_families(self, result):
        readable = core.GaugeMetricFamily(
            _PREFIX + 'registry_up', 'Whether the publisher registry could'
            ' be read at this scrape')
        publishing = [r for r in result.records
                      if r['kind'] in ('publisher', 'both')
                      and r['trust'] != processes.FORGED]
        ids = self._registered_ids() if publishing else set()
        readable.add_metric([], 0 if ids is None else 1)
        if ids is None:
            return [readable]
        registered = core.GaugeMetricFamily(
            _PREFIX + 'publisher_registered', 'Whether every publisher of'
            ' this process is in the registry', labels=LABELS)
        seen = set()
        for record in publishing:
            labels = tuple(_label(record[name]) for name in LABELS)
            if labels in seen:
                continue
            seen.add(labels)
            own = {i for i in record['publisher_id'].split(',') if i}
            registered.add_metric(list(labels), 1 if own and own <= ids
                                  else 0)
        return [readable, registered]

    def _process_families(self, result):
        skipped = core.GaugeMetricFamily(
            _PREFIX + 'replies_skipped',
            'Replies of this scrape that were not df-nats STATS replies,'
            ' or that the server says are forged', labels=['reason'])
        for reason, count in sorted(result.skipped.items()):
            skipped.add_metric([reason], count)
        verified = core.GaugeMetricFamily(
            _PREFIX + 'replies_verified',
            'Whether the server said which connection serves each'
            ' process (1) or not (0)')
        verified.add_metric([], 1 if result.verified else 0)
        info = core.GaugeMetricFamily(
            _PREFIX + 'process_info', 'A df-nats process (always 1)',
            labels=LABELS + ('kind', 'process', 'threads', 'version',
                             'server', 'user', 'trust'))
        answered = core.GaugeMetricFamily(
            _PREFIX + 'processes', 'df-nats processes that answered')
        counters = {}
        for section, names in (('connection', service.CONNECTION_COUNTERS),
                               ('subscriber', service.SUBSCRIBER_COUNTERS)):
            for name in names:
                counters[section, name] = core.CounterMetricFamily(
                    '%s%s_%s' % (_PREFIX, section, name),
                    'df-nats %s counter %s' % (section, name),
                    labels=LABELS)
        gauges = [(key, divisor, core.GaugeMetricFamily(
            _PREFIX + metric, doc, labels=LABELS))
            for metric, key, divisor, doc in _DELIVERY]
        delivery_counters = [(key, core.CounterMetricFamily(
            _PREFIX + key, doc, labels=LABELS))
            for key, doc in _DELIVERY_COUNTERS]
        rtt = core.GaugeMetricFamily(
            _PREFIX + 'rtt_seconds', 'Round trip to its NATS server',
            labels=LABELS)
        outbox = core.GaugeMetricFamily(
            _PREFIX + 'outbox_events', 'Events waiting to be sent',
            labels=LABELS)
        seen = set()
        forged = 0
        for record in result.records:
            if record['trust'] == processes.FORGED:
                forged += 1
                continue
            labels = [_label(record[name]) for name in LABELS]
            if tuple(labels) in seen:
                continue
            seen.add(tuple(labels))
            info.add_metric(labels + [_label(record[name]) for name in (
                'kind', 'process', 'threads', 'version', 'server',
                'verified_user', 'trust')], 1)
            for (section, name), family in counters.items():
                family.add_metric(labels, record[section].get(name, 0))
            for key, divisor, family in gauges:
                family.add_metric(labels,
                                  record['delivery'].get(key, 0) / divisor)
            for key, family in delivery_counters:
                family.add_metric(labels, record['delivery'].get(key, 0))
            rtt.add_metric(labels, record['rtt_us'] / 1e6)
            outbox.add_metric(labels, record['outbox_events'])
        if forged:
            skipped.add_metric([processes.FORGED], forged)
        answered.add_metric([], len(seen))
        return ([skipped, verified, answered, info, rtt, outbox]
                + list(counters.values()) + [g for _, _, g in gauges]
                + [c for _, c in delivery_counters])


def serve(conn, args, ready=None):
    """Serve /metrics until interrupted; ``ready(port)`` once listening."""
    host, port = parse_listen(args.listen)
    metrics = prometheus_registry.CollectorRegistry(auto_describe=False)
    metrics.register(ProcessCollector(conn, args.wait, args.role,
                                      args.kind))
    server, thread = exposition.start_http_server(port, host, metrics)
    try:
        if ready is not None:
            ready(server.server_port)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.wait(3600):
                pass
        except KeyboardInterrupt:
            pass
    finally:
        server.shutdown()
        server.server_close()
    return 0


def run(args, out=sys.stdout, err=sys.stderr) -> int:
    """Connect, then serve /metrics until interrupted."""
    try:
        parse_listen(args.listen)
    except ValueError as exc:
        err.write('df-nats exporter: %s\n' % exc)
        return 2
    args.role = getattr(args, 'role', None)
    args.kind = getattr(args, 'kind', None)
    conn = common.connect(args, 'exporter', err, service_endpoint=False,
                          log_level='WARNING')
    if conn is None:
        return 1
    try:
        def ready(port):
            err.write('df-nats exporter: serving /metrics on %s:%d\n'
                      % (parse_listen(args.listen)[0], port))
            err.flush()
        return serve(conn, args, ready)
    finally:
        conn.release()
