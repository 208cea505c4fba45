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

"""INI edits for the devstack harness: ``iniset`` and ``iniget``.

Same contract as devstack's: ``set FILE SECTION OPTION VALUE`` creates the
file and the section when missing and replaces the option's value within
its section (comments and other lines are kept); ``get FILE SECTION
OPTION`` prints the value, or nothing.
"""

import os
import re
import sys

_SECTION = re.compile(r'^\[(?P<name>[^\]]+)\]\s*$')


def _option(line, option):
    match = re.match(r'^%s\s*=\s?(?P<value>.*)$' % re.escape(option), line)
    return match.group('value') if match else None


def _section_span(lines, section):
    """(start, end): the header's index and the next section's, or None."""
    start = None
    for i, line in enumerate(lines):
        match = _SECTION.match(line)
        if not match:
            continue
        if start is not None:
            return start, i
        if match.group('name') == section:
            start = i
    return (start, len(lines)) if start is not None else None


def iniget(path, section, option):
    if not os.path.exists(path):
        return ''
    with open(path) as f:
        lines = f.read().splitlines()
    span = _section_span(lines, section)
    if span is None:
        return ''
    for line in lines[span[0] + 1:span[1]]:
        value = _option(line, option)
        if value is not None:
            return value.strip()
    return ''


def iniset(path, section, option, value):
    lines = []
    if os.path.exists(path):
        with open(path) as f:
            lines = f.read().splitlines()
    span = _section_span(lines, section)
    if span is None:
        lines += ['', '[%s]' % section]
        span = (len(lines) - 1, len(lines))
    new = '%s = %s' % (option, value)
    for i in range(span[0] + 1, span[1]):
        if _option(lines[i], option) is not None:
            lines[i] = new
            break
    else:
        lines.insert(span[0] + 1, new)
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')


def main(argv):
    if len(argv) == 5 and argv[0] == 'set':
        iniset(*argv[1:])
    elif len(argv) == 4 and argv[0] == 'get':
        print(iniget(*argv[1:]))
    else:
        sys.exit('usage: ini.py set FILE SECTION OPTION VALUE'
                 ' | get FILE SECTION OPTION')


if __name__ == '__main__':
    main(sys.argv[1:])
