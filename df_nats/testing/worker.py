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

"""The child side of a worker process: its world, and its JSON lines.

``python -m df_nats.testing.worker --world=eventlet|native MODULE[:FUNCTION]
[ARG...]`` sets the world up first -- under ``eventlet`` it monkey-patches
before anything else is imported, as Dragonflow services do -- checks that
the process is in that world, then imports MODULE and calls its
``FUNCTION(argv)`` (``main`` by default); what that returns is the exit
status. An exception is
reported to the parent (an ``error`` message) before the process exits.
SIGUSR1 makes the process, and any fork of it, write every thread's
Python stack to stderr: the parent asks so when a worker hangs.

Parent and child speak one wire format: one JSON object a line, whose
``"type"`` says what it is. A worker writes with ``say`` and reads the
parent's commands with ``next_command`` or ``commands``; the parent side
is ``df_nats.testing.worker_process.WorkerProcess``.
"""

import sys

if __name__ == '__main__' and '--world=eventlet' in sys.argv[1:2]:
    import eventlet
    eventlet.monkey_patch()

import faulthandler  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import select  # noqa: E402
import signal  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

WORLDS = ('eventlet', 'native')
# How often a green reader looks at stdin (eventlet's own select never saw
# the pipe readable): a command waits this long at most.
_GREEN_POLL = 0.005

_say_lock = threading.Lock()
_commands = None


def say(kind, **fields):
    """Tell the parent ``kind`` with ``fields``: one JSON line on stdout.

    One unbuffered write per line, under a lock: forked children sharing
    the pipe do not interleave, and a line is in the pipe even if the
    process is killed right after.
    """
    fields['type'] = kind
    data = (json.dumps(fields, sort_keys=True) + '\n').encode()
    with _say_lock:
        sys.stdout.flush()  # what was printed before comes before
        while data:
            data = data[os.write(sys.stdout.fileno(), data):]


class _Commands:
    """The parent's commands from stdin, without blocking eventlet's hub.

    Under eventlet the pipe is polled with the original ``select`` and the
    green ``sleep`` in between.
    """

    def __init__(self):
        self._fd = sys.stdin.fileno()
        self._buffer = b''
        self._green = _is_green()
        if self._green:
            from eventlet import patcher
            self._select = patcher.original('select').select
            self._read = patcher.original('os').read
        else:
            self._select = select.select
            self._read = os.read

    def _readable(self, timeout):
        if not self._green:
            return bool(self._select([self._fd], [], [], timeout)[0])
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._select([self._fd], [], [], 0)[0]:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(_GREEN_POLL)
        return True

    def next(self, timeout):
        while b'\n' not in self._buffer:
            if not self._readable(timeout):
                return None
            chunk = self._read(self._fd, 65536)
            if not chunk:
                raise EOFError('the parent closed stdin')
            self._buffer += chunk
            if timeout is not None and b'\n' not in self._buffer:
                return None
        line, self._buffer = self._buffer.split(b'\n', 1)
        return json.loads(line)


def next_command(timeout=None):
    """The parent's next command (a dict), or None after ``timeout`` s.

    Raises EOFError when the parent closed stdin.
    """
    global _commands
    if _commands is None:
        _commands = _Commands()
    return _commands.next(timeout)


def commands():
    """The parent's commands as they come, until it closes stdin."""
    while True:
        try:
            yield next_command()
        except EOFError:
            return


def world():
    """``eventlet`` in a monkey-patched process, else ``native``."""
    return 'eventlet' if _is_green() else 'native'


def _is_green():
    if 'eventlet' not in sys.modules:
        return False
    from eventlet import patcher
    return patcher.is_monkey_patched('thread')


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or not argv[0].startswith('--world='):
        sys.exit('usage: python -m df_nats.testing.worker'
                 ' --world=eventlet|native MODULE[:FUNCTION] [ARG...]')
    world = argv[0].split('=', 1)[1]
    if world not in WORLDS or _is_green() != (world == 'eventlet'):
        sys.exit('not in the %r world (the first argument must be'
                 ' --world=eventlet or --world=native)' % world)
    # Evidence of a hang that cannot be reproduced: the parent's SIGUSR1
    # (WorkerProcess.dump_stacks) gets every thread's stack, from a C
    # handler that needs no lock; forks inherit it.
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True,
                          chain=False)
    module, _, function = argv[1].partition(':')
    try:
        return getattr(importlib.import_module(module),
                       function or 'main')(argv[2:])
    except Exception as exc:
        traceback.print_exc()
        say('error', reason='%s: %s' % (type(exc).__name__, exc))
        return 1


if __name__ == '__main__':
    # The workers' own ``from df_nats.testing import worker`` gets this module,
    # not a second copy with a stdin buffer of its own.
    sys.modules.setdefault('df_nats.testing.worker', sys.modules[__name__])
    sys.exit(main())
