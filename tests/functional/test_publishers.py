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


"""``df-nats publishers`` against records a hostile publisher wrote.

Every publisher's credentials may write the registry bucket: the
command lists what it can, skips what is no record (a field of the wrong
type, a record not of its key: df_nats.registry.records), and never
writes an escape sequence to the terminal.
"""

import asyncio
import json
import subprocess
import sys

import nats

from df_nats.registry import records
from df_nats.testing.worker_process import child_env
from tests.functional import hostile_tools
from tests.functional.test_driver import ROOT


def _publishers(url, *args):
    out = subprocess.run(
        [sys.executable, '-m', 'df_nats.cmd.main', 'publishers',
         '--servers', url, '--timeout', '15'] + list(args), cwd=ROOT,
        env=child_env([ROOT]), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    assert '\x1b' not in out.stdout + out.stderr
    return out.stdout


def test_hostile_records_are_listed_escaped_or_skipped(fresh_nats_server):
    escapes_id = records.publisher_uuid(hostile_tools.HOSTILE_TEXT,
                                        hostile_tools.HOSTILE_TEXT)

    async def write():
        nc = await nats.connect(fresh_nats_server.url)
        kv = await nc.jetstream().create_key_value(
            bucket='df_publishers', history=1, ttl=60)
        await kv.put('seven', json.dumps({
            'id': 'id-seven', 'role': 7, 'host': ['a', 'b'],
            'pid': {'x': 1}, 'process': None, 'started_at': 'soon',
            'last_activity_timestamp': 1e308}).encode())
        await kv.put('deep', hostile_tools.deep_json())
        # A record readers accept (its id and key are those of its
        # process, host and slot), its text fields full of escapes.
        await kv.put(records.key(hostile_tools.HOSTILE_TEXT, escapes_id),
                     json.dumps({
                         'id': escapes_id, 'role': 'df-local-controller',
                         'host': hostile_tools.HOSTILE_TEXT, 'pid': 5,
                         'process': hostile_tools.HOSTILE_TEXT,
                         'slot': 0}).encode())
        await nc.close()
    asyncio.run(write())
    url = fresh_nats_server.url
    lines = _publishers(url).splitlines()
    assert lines[0].split() == ['ID', 'ROLE', 'HOST', 'PID', 'PROCESS',
                                'UP', 'SEEN']
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    # The record of wrong types and the deep one are no records: skipped.
    assert set(rows) == {escapes_id}
    for escape in ('\\x1b[A', '\\x1b[2K', '\\x1b]0;pwned\\x07',
                   '\\u202e', '\\x9b'):
        assert escape in lines[1]
    only = _publishers(url, '--role', 'df-local-controller').splitlines()
    assert [line.split()[0] for line in only[1:]] == [escapes_id]
    listed = json.loads(_publishers(url, '--json'))
    assert [r['id'] for r in listed] == [escapes_id]
