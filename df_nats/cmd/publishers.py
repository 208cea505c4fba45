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

"""``df-nats publishers``: list or watch the publisher registration."""

import json
import sys
import threading
import time

from df_nats.cmd import common
from df_nats import errors
from df_nats.registry import watch

_COLUMNS = ('ID', 'ROLE', 'HOST', 'PID', 'PROCESS', 'UP', 'SEEN')


def _ago(timestamp, now):
    try:
        return '%ds' % max(0, round(now - float(timestamp)))
    except (TypeError, ValueError):
        return '?'


def _row(record, now):
    return (record.get('id', '?'), record.get('role', '?'),
            record.get('host', '?'), str(record.get('pid', '?')),
            record.get('process', '?'), _ago(record.get('started_at'), now),
            _ago(record.get('last_activity_timestamp'), now))


def _print_table(records, out):
    now = time.time()
    rows = [_COLUMNS] + [_row(r, now) for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    for row in rows:
        out.write('  '.join(cell.ljust(w) for cell, w in
                            zip(row, widths)).rstrip() + '\n')
    out.flush()


def _print_event(kind, record, as_json, out):
    if as_json:
        out.write(json.dumps({'event': kind, 'publisher': record},
                             sort_keys=True) + '\n')
    else:
        extra = ' (%s)' % record['left'] if kind == 'leave' else ''
        out.write('%s %-6s %s role=%s host=%s pid=%s%s\n' % (
            time.strftime('%H:%M:%S'), kind, record.get('id'),
            record.get('role'), record.get('host'), record.get('pid'),
            extra))
    out.flush()


def run(args, out=sys.stdout) -> int:
    """List the live publishers, or watch them until interrupted."""
    conn = common.connect(args, 'publishers')
    if conn is None:
        return 1
    try:
        if not args.watch:
            try:
                records = watch.list_publishers(conn, args.role)
            except errors.RegistryUnavailable as exc:
                sys.stderr.write('df-nats publishers: %s\n' % exc)
                return 1
            if args.json:
                out.write(json.dumps(records, indent=2, sort_keys=True)
                          + '\n')
            else:
                _print_table(records, out)
            return 0
        return _watch(conn, args, out)
    finally:
        conn.release()


def _watch(conn, args, out):
    lock = threading.Lock()

    def show(kind, record):
        with lock:
            _print_event(kind, record, args.json, out)

    watcher = watch.PublisherWatch(conn, role=args.role, on_change=show)
    for record in watcher.start():
        show('present', record)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        watcher.stop()
