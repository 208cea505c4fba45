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


"""``df-nats publishers``: any record shown, nothing obeyed."""

import io

from df_nats.cmd import publishers


def test_rows_of_records_of_any_types():
    records = [{'id': 'a', 'role': 7, 'host': ['x'], 'pid': None,
                'process': '\x1b[2Jp', 'started_at': 'soon',
                'last_activity_timestamp': 1e308},
               {'id': 'b', 'started_at': True, 'last_activity_timestamp': [1]}]
    out = io.StringIO()
    publishers._print_table(records, out)
    lines = out.getvalue().splitlines()
    assert lines[1].split() == ['a', '7', "['x']", '?', '\\x1b[2Jp', '?',
                                '0s']
    assert lines[2].split() == ['b', '?', '?', '?', '?', '?', '?']
    out = io.StringIO()
    publishers._print_event('leave', dict(records[0], left='\x1b]0;t\x07'),
                            False, out)
    publishers._print_event('join', {'role': 7}, False, out)
    assert '\x1b' not in out.getvalue()
    assert 'role=7' in out.getvalue()
