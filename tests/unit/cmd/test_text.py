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


"""Escaping what the tools print."""

import pytest

from df_nats.cmd import text


@pytest.mark.parametrize('raw, shown', [
    ('plain text', 'plain text'),
    ('\x1b[2K', '\\x1b[2K'), ('\x07\x7f\x9b', '\\x07\\x7f\\x9b'),
    ('a\nb\tc\r', 'a\\x0ab\\x09c\\x0d'),
    ('\u202eevil', '\\u202eevil'), ('\u2028', '\\u2028'),
    ('\U000e0001', '\\U000e0001'), ('caf\u00e9 \u4e2d', 'caf\u00e9 \u4e2d'),
])
def test_escape(raw, shown):
    assert text.escape(raw) == shown


def test_cell_types_lengths_and_empty():
    assert text.cell(None) == '-' and text.cell('') == '-'
    assert text.cell(7) == '7' and text.cell(['a']) == "['a']"
    assert text.cell(b'\x1bk') == "b'\\x1bk'"
    assert len(text.cell('x' * 10000)) == text.MAX_CELL
    long = text.cell('\x1b' * 1000, limit=20)
    assert len(long) == 20 and long.endswith('...')


def test_table_aligns():
    assert text.table(('A', 'BB'), [('xyz', '1'), ('', '22')]) == (
        'A    BB\nxyz  1\n     22\n')
