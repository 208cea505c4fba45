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


"""What the commands print for people: escaped, shortened, in columns.

Everything the tools show comes from the wire, the registry or a server
reply, that is from anyone allowed to publish there. A terminal obeys
the control characters in what it is sent (ESC [ A moves the cursor up,
ESC [ 2 K erases the line, OSC sequences set the title or a hyperlink),
so every human line goes through ``cell``: characters that are not
printable are written as Python escapes (``\\x1b``), and the text is
shortened. JSON output needs none of this: ``json.dumps`` escapes
control characters itself.
"""

from typing import Iterable, Sequence

# Characters of one value shown in a table or a line.
MAX_CELL = 300


def escape(text: str) -> str:
    """``text`` with every non-printable character escaped.

    Control characters (C0, DEL, C1), format characters such as the
    bidirectional overrides, and line or paragraph separators become
    ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``; a backslash stays as it is.
    """
    if text.isprintable():
        return text
    return ''.join(c if c.isprintable() else _escaped(c) for c in text)


def _escaped(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return '\\x%02x' % code
    if code < 0x10000:
        return '\\u%04x' % code
    return '\\U%08x' % code


def cell(value, limit: int = MAX_CELL, empty: str = '-') -> str:
    """Any value as one escaped, shortened table cell.

    None and '' are ``empty``; bytes are shown as their ``repr``; other
    types as ``str``. Shortened before escaping (a value may be
    megabytes), and again after (escapes are longer).
    """
    if value is None or value == '':
        return empty
    if isinstance(value, (bytes, bytearray)):
        text = repr(bytes(value[:limit]))
    elif isinstance(value, str):
        text = value[:limit]
    else:
        try:
            text = str(value)[:limit]
        except Exception:   # a hostile __str__ cannot reach us from JSON
            text = '?'
    text = escape(text)
    if len(text) > limit:
        text = text[:limit - 3] + '...'
    return text


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Aligned columns: the header, then one line per row of cells."""
    rows = [tuple(header)] + [tuple(row) for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return ''.join('  '.join(c.ljust(w) for c, w in zip(row, widths))
                   .rstrip() + '\n' for row in rows)
