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

What ``nats micro stats df-nats`` shows, without the NATS CLI: one STATS
request of the NATS micro protocol to every instance of the service
``df-nats`` (``$SRV.STATS.df-nats``), and the replies that come within
``--wait`` seconds. Replies are input from anyone allowed to publish to
our inbox: whatever does not look like a df-nats STATS reply is skipped
and counted, and strings are shortened.
"""

import json
import sys

from df_nats.cmd import common
from df_nats.transport import service

# Bounds on what is gathered: thousands of compute nodes answer.
MAX_REPLIES = 100000
MAX_REPLY_BYTES = 256 * 1024 * 1024
_MAX_TEXT = 300

_IDENTITY = ('role', 'host', 'pid', 'process', 'threads', 'publisher_id',
             'subject_prefix')
# (column, section, counter): the counters the table shows.
_COUNTER_COLUMNS = (('SENT', 'connection', 'published'),
                    ('BATCHES', 'connection', 'messages'),
                    ('RECEIVED', 'subscriber', 'received'),
                    ('GAPS', 'subscriber', 'gaps'),
                    ('SYNCS', 'subscriber', 'syncs'),
                    ('DUPS', 'subscriber', 'duplicates'),
                    ('MALFORMED', 'subscriber', 'malformed'),
                    ('REJECTED', 'connection', 'rejected'),
                    ('RECONNECTS', 'connection', 'reconnects'))


def _text(value) -> str:
    return str(value)[:_MAX_TEXT] if value is not None else ''


def _count(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return value


def _counter_section(data, name):
    section = data.get(name)
    if not isinstance(section, dict):
        return {}
    return {_text(key): _count(value) for key, value in section.items()}


def parse_reply(body: bytes):
    """A process's record from a STATS reply; None if it is not one."""
    try:
        reply = json.loads(body)
    except ValueError:
        return None
    if (not isinstance(reply, dict) or reply.get('name') != service.NAME
            or reply.get('type') != service.STATS_RESPONSE_TYPE):
        return None
    meta = reply.get('metadata')
    endpoints = reply.get('endpoints')
    if not isinstance(meta, dict) or not isinstance(endpoints, list):
        return None
    data = next((e.get('data') for e in endpoints if isinstance(e, dict)
                 and e.get('name') == service.ENDPOINT), None)
    if not isinstance(data, dict):
        return None
    record = {key: _text(meta.get(key)) for key in _IDENTITY}
    if record['pid'].isdigit():
        record['pid'] = int(record['pid'])
    record.update(id=_text(reply.get('id')),
                  version=_text(meta.get('df_nats_version')),
                  started=_text(reply.get('started')),
                  connection=_counter_section(data, 'connection'),
                  subscriber=_counter_section(data, 'subscriber'),
                  outbox_events=_count(data.get('outbox_events')),
                  outbox_bytes=_count(data.get('outbox_bytes')),
                  last_error=_text(data.get('last_error')))
    return record


def matches(record, role) -> bool:
    """``--role``: publisher and subscriber include ``both``."""
    if not role:
        return True
    return record['role'] == role or (
        record['role'] == 'both' and role in ('publisher', 'subscriber'))


def collect(conn, wait: float, role=None):
    """The records of the processes answering within ``wait`` seconds.

    Returns ``(records, skipped)``: records sorted by host and pid, and
    the number of replies that were not df-nats STATS replies.
    """
    subject = '%s.STATS.%s' % (service.SUBJECT_PREFIX, service.NAME)
    replies = conn.gather(subject, wait, MAX_REPLIES, MAX_REPLY_BYTES)
    records = [parse_reply(body) for body in replies]
    skipped = sum(1 for r in records if r is None)
    records = [r for r in records if r is not None and matches(r, role)]
    records.sort(key=lambda r: (r['host'], str(r['pid']), r['id']))
    return records, skipped


def format_table(records) -> str:
    """One line per process: who it is, then its counters."""
    header = (('ROLE', 'HOST', 'PID', 'PROCESS', 'THREADS', 'PUBLISHER',
               'VERSION') + tuple(c[0] for c in _COUNTER_COLUMNS)
              + ('OUTBOX', 'LAST ERROR'))
    rows = [header]
    for r in records:
        rows.append(
            (r['role'], r['host'], str(r['pid']), r['process'],
             r['threads'], r['publisher_id'][:8] or '-', r['version'])
            + tuple(str(r[section].get(name, 0))
                    for _, section, name in _COUNTER_COLUMNS)
            + ('%dB' % r['outbox_bytes'], r['last_error'] or '-'))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return ''.join('  '.join(cell.ljust(w) for cell, w in zip(row, widths))
                   .rstrip() + '\n' for row in rows)


def run(args, out=sys.stdout) -> int:
    """Print every df-nats process answering within ``--wait`` seconds."""
    # This command is no Dragonflow process: it does not list itself.
    conn = common.connect(args, 'stats', service_endpoint=False)
    if conn is None:
        return 1
    try:
        records, skipped = collect(conn, args.wait, args.role)
    finally:
        conn.release()
    if skipped:
        sys.stderr.write('df-nats stats: skipped %d replies that are not'
                         ' df-nats STATS replies\n' % skipped)
    if args.json:
        out.write(json.dumps(records, indent=2, sort_keys=True) + '\n')
    else:
        out.write(format_table(records))
        out.write('%d process(es) answered within %s s\n'
                  % (len(records), args.wait))
    out.flush()
    return 0
