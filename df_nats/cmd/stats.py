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

"""``df-nats stats``: every df-nats process and its counters.

What ``nats micro stats df-nats`` shows, and more, without the NATS CLI:
the replies of every instance of the service ``df-nats`` within
``--wait`` seconds (``processes.collect``), checked against what the
server says about their connections. One line per process: who it is,
the NATS server it is connected to and the round trip to it, the user
the server authenticated and whether the reply could be trusted, its
counters, resyncs by cause and the last one, its delivery queue and the
lag from publish to callback. Every cell is escaped (``text``).

Exit status: 0 when at least one process answered, 1 when none did (or
the connection failed), 2 on bad configuration.
"""

import json
import sys
import time
from urllib import parse

from df_nats.cmd import common
from df_nats.cmd import processes
from df_nats.cmd import text
from df_nats.transport import service

# (column, section, counter): the counters the table shows.
_COUNTER_COLUMNS = (('SENT', 'connection', 'published'),
                    ('BATCHES', 'connection', 'messages'),
                    ('RECEIVED', 'subscriber', 'received'),
                    ('GAPS', 'subscriber', 'gaps'),
                    ('DUPS', 'subscriber', 'duplicates'),
                    ('MALFORMED', 'subscriber', 'malformed'),
                    ('REJECTED', 'connection', 'rejected'),
                    ('RECONNECTS', 'connection', 'reconnects'),
                    ('SYNCS', 'subscriber', 'syncs'))
_HEADER = (('ROLE', 'KIND', 'HOST', 'PID', 'PROCESS', 'THREADS', 'PUBLISHER',
            'VERSION', 'SERVER', 'RTT', 'USER', 'TRUST')
           + tuple(c[0] for c in _COUNTER_COLUMNS)
           + ('SYNC CAUSES', 'LAST SYNC', 'QUEUE', 'LAG AVG', 'LAG MAX',
              'OUTBOX', 'LAST ERROR'))
# The resync counters, by cause, and how the table names them.
_CAUSES = tuple((key, key[len('sync_'):])
                for key in service.SUBSCRIBER_COUNTERS
                if key.startswith('sync_'))


def _ms(microseconds) -> str:
    if not microseconds:
        return '-'
    return '%.1fms' % (microseconds / 1000.0)


def _ago(timestamp, now) -> str:
    if not timestamp:
        return '-'
    return '%ds ago' % max(0, round(now - timestamp))


def _size(count) -> str:
    for unit in ('B', 'KiB', 'MiB'):
        if count < 1024 or unit == 'MiB':
            return '%d%s' % (count, unit) if unit == 'B' else (
                '%.1f%s' % (count, unit))
        count /= 1024.0
    return '?'


def _server(record) -> str:
    if record['server']:
        return record['server']
    try:
        return parse.urlsplit(record['server_url']).netloc or '-'
    except ValueError:
        return '-'


def _causes(record) -> str:
    subscriber = record['subscriber']
    causes = ['%s:%d' % (name, subscriber[key]) for key, name in _CAUSES
              if subscriber.get(key)]
    return ','.join(causes) or '-'


def _row(record, now):
    delivery = record['delivery']
    queue = '%d/%s' % (delivery.get('queue_messages', 0),
                       _size(delivery.get('queue_bytes', 0)))
    cells = ((record['role'], record['kind'], record['host'], record['pid'],
              record['process'], record['threads'],
              record['publisher_id'][:8], record['version'],
              _server(record), _ms(record['rtt_us']),
              record['verified_user'], record['trust'])
             + tuple(record[section].get(name, 0)
                     for _, section, name in _COUNTER_COLUMNS)
             + (_causes(record), _ago(delivery.get('last_sync'), now), queue,
                _ms(delivery.get('lag_avg_us')),
                _ms(delivery.get('lag_max_us')),
                _size(record['outbox_bytes']), record['last_error']))
    return tuple(text.cell(c) for c in cells)


def format_table(records, now=None) -> str:
    """One line per process: who it is, where, then its counters."""
    now = time.time() if now is None else now
    return text.table(_HEADER, (_row(r, now) for r in records))


def run(args, out=sys.stdout, err=sys.stderr) -> int:
    """Print every df-nats process answering within ``--wait`` seconds."""
    # This command is no Dragonflow process: it does not list itself.
    conn = common.connect(args, 'stats', err, service_endpoint=False)
    if conn is None:
        return 1
    try:
        result = processes.collect(conn, args.wait, args.role, args.kind)
    finally:
        conn.release()
    skipped = result.skipped_line('stats')
    if skipped:
        err.write(skipped + '\n')
    if result.note:
        err.write('df-nats stats: %s\n' % result.note)
    untrusted = sum(1 for r in result.records
                    if r['trust'] not in (processes.VERIFIED,
                                          processes.UNVERIFIED))
    if untrusted:
        err.write('df-nats stats: %d record(s) could not be trusted (see'
                  ' TRUST)\n' % untrusted)
    err.flush()
    if args.json:
        out.write(json.dumps(result.records, indent=2, sort_keys=True)
                  + '\n')
    else:
        out.write(format_table(result.records))
        out.write('%d process(es) answered within %s s\n'
                  % (len(result.records), args.wait))
    out.flush()
    return 0 if result.records else 1
