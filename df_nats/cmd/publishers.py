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

"""``df-nats publishers``: list or watch the publisher registration.

Records are written by every publisher's credentials: whatever their
fields hold (a role of 7, a list, escape sequences), every cell is typed
and escaped before it is printed (``text``); JSON output is escaped by
``json.dumps``.
"""

import json
import sys
import threading
import time

from df_nats.cmd import common
from df_nats.cmd import text
from df_nats import errors
from df_nats.registry import watch

_COLUMNS = ('ID', 'ROLE', 'HOST', 'PID', 'PROCESS', 'UP', 'SEEN')


def _ago(timestamp, now):
    if isinstance(timestamp, bool) or not isinstance(timestamp,
                                                     (int, float, str)):
        return '?'
    try:
        return '%ds' % max(0, round(now - float(timestamp)))
    except (TypeError, ValueError, OverflowError):
        return '?'


def _row(record, now):
    return tuple(text.cell(value, empty='?') for value in (
        record.get('id'), record.get('role'), record.get('host'),
        record.get('pid'), record.get('process'),
        _ago(record.get('started_at'), now),
        _ago(record.get('last_activity_timestamp'), now)))


def _print_table(records, out):
    now = time.time()
    out.write(text.table(_COLUMNS, (_row(r, now) for r in records)))
    out.flush()


def _print_event(kind, record, as_json, out):
    if as_json:
        out.write(json.dumps({'event': kind, 'publisher': record},
                             sort_keys=True, default=repr) + '\n')
    else:
        extra = (' (%s)' % text.cell(record.get('left'))
                 if kind == 'leave' else '')
        out.write('%s %-6s %s role=%s host=%s pid=%s%s\n' % (
            time.strftime('%H:%M:%S'), kind,
            *(text.cell(record.get(name), empty='?')
              for name in ('id', 'role', 'host', 'pid')), extra))
    out.flush()


def run(args, out=sys.stdout) -> int:
    """List the live publishers, or watch them until interrupted."""
    conn = common.connect(args, 'publishers', service_endpoint=False)
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
                out.write(json.dumps(records, indent=2, sort_keys=True,
                                     default=repr) + '\n')
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
