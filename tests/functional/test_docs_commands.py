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

"""The commands of the documentation's "Try it" blocks run as shown.

A "Try it" block is a ``.. code-block:: console`` with ``:class: try-it``
in ``doc/source``; each of its lines that starts with ``$`` is a command.
They run with bash, in the order of the pages in the toctrees of
``index.rst``, in one copy of the checkout (the files git knows of, as a
fresh clone has them, committed to a repository of their own so that pbr
finds a version), with the interpreter CI has (not this test's
virtualenv): the commands make their virtualenv themselves, as a newcomer
would. Any command that fails fails the test.
"""

import os
import pathlib
import re
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).parents[2]
DOCS = ROOT / 'doc' / 'source'
# Seconds for one command (the first installs df-nats from PyPI).
COMMAND_TIMEOUT = 600

_TOCTREE = re.compile(r'^\.\. toctree::')
_BLOCK = re.compile(r'^(\s*)\.\. code-block:: console\s*$')


def pages(index=DOCS / 'index.rst'):
    """The documents of the index's toctrees, in order."""
    names, inside = [], False
    for line in index.read_text().splitlines():
        if _TOCTREE.match(line):
            inside = True
            continue
        if inside:
            if line and not line[0].isspace():
                inside = False
            elif line.strip() and not line.strip().startswith(':'):
                names.append(line.strip())
    return names


def try_it_commands(text):
    """The ``$`` lines of the text's try-it console blocks, in order."""
    lines = text.splitlines()
    commands = []
    i = 0
    while i < len(lines):
        match = _BLOCK.match(lines[i])
        i += 1
        if not match:
            continue
        indent = len(match.group(1))
        classes = []
        # Options: indented lines starting with ":" right after.
        while i < len(lines) and lines[i].strip().startswith(':'):
            name, _, value = lines[i].strip()[1:].partition(':')
            if name == 'class':
                classes += value.split()
            i += 1
        body = []
        while i < len(lines) and (not lines[i].strip() or (
                len(lines[i]) - len(lines[i].lstrip()) > indent)):
            body.append(lines[i].strip())
            i += 1
        if 'try-it' in classes:
            commands += [line[1:].strip() for line in body
                         if line.startswith('$')]
    return commands


def documented_commands():
    commands = []
    for page in pages():
        commands += try_it_commands((DOCS / (page + '.rst')).read_text())
    return commands


def _checkout_copy(dest):
    """The files of the checkout git knows of, in a repository of their own.
    """
    listed = subprocess.run(
        ['git', 'ls-files', '-z', '--cached', '--others',
         '--exclude-standard'], cwd=ROOT, check=True,
        capture_output=True).stdout.decode().split('\0')
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    git = ['git', '-c', 'user.name=docs test',
           '-c', 'user.email=docs-test@example.org']
    for args in (['init', '-q'], ['add', '-A'],
                 ['commit', '-q', '-m', 'the checkout under test']):
        subprocess.run(git + args, cwd=dest, check=True,
                       capture_output=True)


def _newcomer_env():
    """This environment without this test's virtualenv."""
    env = dict(os.environ)
    for name in ('VIRTUAL_ENV', 'PYTHONPATH', 'PYTHONHOME',
                 'DF_NATS_REQUIRE_DRAGONFLOW'):
        env.pop(name, None)
    ours = os.path.join(sys.prefix, 'bin')
    if sys.prefix != sys.base_prefix:
        env['PATH'] = os.pathsep.join(
            p for p in env.get('PATH', '').split(os.pathsep)
            if os.path.abspath(p) != os.path.abspath(ours))
    return env


def test_try_it_blocks_are_found():
    text = '\n'.join([
        'Try it', '------', '',
        '.. code-block:: console', '   :class: try-it', '',
        '   $ echo one && echo two', '   one', '   two', '',
        '   $ true', '',
        'Not this one:', '',
        '.. code-block:: console', '',
        '   $ false', '',
        '.. code-block:: console', '   :caption: x', '   :class: a try-it',
        '',
        '   $ echo three', ''])
    assert try_it_commands(text) == ['echo one && echo two', 'true',
                                     'echo three']


def test_the_readme_demo_command_is_a_documented_one():
    """The README shows the demo command of the install page."""
    commands = documented_commands()
    assert len(commands) >= 2, commands
    readme = (ROOT / 'README.rst').read_text()
    demo = [c for c in commands if c.endswith('df-nats demo')]
    assert demo and '\n    %s\n' % demo[0] in readme


def test_the_readme_and_ci_run_the_same_test_command():
    readme = re.findall(r'^    python3 -m pip install tox && (tox -e \S+)$',
                        (ROOT / 'README.rst').read_text(), re.M)
    ci = re.findall(r'^TEST_CMD="(.*)"$', (ROOT / '.ci' / 'run').read_text(),
                    re.M)
    assert len(readme) == 1 and readme == ci, (readme, ci)


def test_documented_commands_run(tmp_path):
    commands = documented_commands()
    assert commands
    work = tmp_path / 'df-nats'
    work.mkdir()
    _checkout_copy(work)
    env = _newcomer_env()
    for command in commands:
        out = subprocess.run(['bash', '-c', command], cwd=work, env=env,
                             capture_output=True, text=True,
                             timeout=COMMAND_TIMEOUT)
        assert out.returncode == 0, '$ %s\n%s%s' % (
            command, out.stdout[-3000:], out.stderr[-3000:])
