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

"""The parent side of a worker process: start it, talk to it, end it.

A ``WorkerProcess`` runs ``python -m df_nats.testing.worker --world=W
MODULE[:FUNCTION] ARGS`` (see df_nats/testing/worker.py) -- or, with ``argv``,
any command that prints JSON lines, such as ``df-nats publishers --watch
--json``. A reader thread takes every line of its stdout as it comes (a
line that is not JSON becomes ``{"type": "text", "text": ...}``) with its
arrival time; the end of its output is a ``{"type": "eof"}`` message. Its
stderr goes to a log file.

A worker that does not say what is awaited in time is asked first for
every thread's stack, it and what it forked (``dump_stacks``): the error
then shows where each process was stuck.
"""

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time

from df_nats import errors

EOF = 'eof'
# How much of a worker's stderr its errors show.
_TAIL = 6000
# How long a process asked for its stacks gets to write them, and how long
# the log stays still once they are written.
_DUMP_TIME = 1.0
_DUMP_QUIET = 0.1
# What the log says before a process's stacks.
_DUMP_HEADER = '--- the stacks of pid %d (dump_stacks) ---\n'


class WorkerError(errors.DfNatsError, RuntimeError):
    """A worker failed, exited, or did not answer in time."""


def child_env(paths=(), **variables):
    """This process's environment, ``paths`` first on PYTHONPATH.

    ``paths``: directories of modules outside the installed packages (the
    repository root for ``tests`` and ``benchmarks``).
    """
    env = dict(os.environ, **variables)
    env['PYTHONPATH'] = os.pathsep.join(
        [str(path) for path in paths]
        + [p for p in [os.environ.get('PYTHONPATH')] if p])
    return env


class WorkerProcess:
    """One worker process, the messages it said, the commands it is sent.

    ``inbox``: a queue shared by several workers, which then get
    ``(worker, message)`` items there instead of keeping their own.
    ``prefix``: a command to run the worker under (a profiler).
    ``new_session``: the worker and what it forks are killed together.
    """

    def __init__(self, module, args=(), world='native', label=None,
                 log_path=None, paths=(), env=None, cwd=None, prefix=(),
                 argv=None, inbox=None, new_session=False):
        self.label = label or (module or argv[-1]).rsplit('.', 1)[-1]
        if argv is None:
            argv = [sys.executable, '-m', 'df_nats.testing.worker',
                    '--world=%s' % world, module] + [str(a) for a in args]
        if log_path is None:
            self._log = tempfile.TemporaryFile()
        else:
            self._log = open(log_path, 'a+b')
        self.log_path = log_path
        self._inbox = inbox
        self._lines = queue.Queue()
        self._seen = []      # (arrival time, message), in arrival order
        self._taken = set()  # indices of _seen handed out by next()
        self._ended = threading.Event()
        self._new_session = new_session
        self.proc = subprocess.Popen(
            list(prefix) + list(argv), cwd=cwd,
            env=child_env(paths, **(env or {})), text=True,
            start_new_session=new_session, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._log)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self):
        return self.proc.pid

    def _consume(self, message):
        """A subclass's chance to take ``message`` before it is queued.

        Runs on the reader thread; True means taken.
        """
        return False

    def _read(self):
        try:
            for line in self.proc.stdout:
                try:
                    message = json.loads(line)
                except ValueError:
                    message = None
                if not isinstance(message, dict):
                    message = {'type': 'text', 'text': line.rstrip('\n')}
                if not self._consume(message):
                    self._put(message)
        finally:
            self.proc.stdout.close()
            self._put({'type': EOF})
            self._ended.set()

    def _put(self, message):
        if self._inbox is not None:
            self._inbox.put((self, message))
        else:
            self._lines.put((time.monotonic(), message))

    # -- talking to the worker ----------------------------------------------

    def send(self, kind, **fields):
        """Send the command ``kind`` with ``fields`` (one JSON line)."""
        fields['type'] = kind
        try:
            self.proc.stdin.write(json.dumps(fields) + '\n')
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass  # the worker is gone: its eof says so

    def _pull(self, timeout):
        """Move one message from the reader to ``_seen``; False if none."""
        try:
            self._seen.append(self._lines.get(timeout=max(timeout, 0)))
        except queue.Empty:
            return False
        return True

    def received(self):
        """Every message so far, in order, taken or not (no waiting)."""
        while self._pull(0):
            pass
        return [message for _, message in self._seen]

    def next(self, match, timeout=15.0):
        """``(arrival time, message)`` of the first message not handed out
        yet for which ``match(message)`` holds, waiting up to ``timeout``.

        Messages that do not match stay for a later call: workers print in
        an order a parent should not rely on. Raises WorkerError on timeout
        or when the worker's output ended without such a message.
        """
        if self._inbox is not None:
            raise TypeError('%s reports to a shared inbox' % self.label)
        deadline = time.monotonic() + timeout
        index = 0
        while True:
            while index < len(self._seen):
                at, message = self._seen[index]
                if index not in self._taken and match(message):
                    self._taken.add(index)
                    return at, message
                if message.get('type') == EOF:
                    raise self.error('ended (exit status %s) without the'
                                     ' message awaited' % self.proc.poll())
                index += 1
            if not self._pull(deadline - time.monotonic()):
                raise self._hang_error('no message awaited within %ss'
                                       % timeout)

    def expect(self, kind, timeout=60.0, also=()):
        """The next message of type ``kind`` (or in ``also``).

        An ``error`` message raises WorkerError with the worker's reason.
        """
        kinds = (kind, 'error') + tuple(also)
        message = self.next(lambda m: m.get('type') in kinds, timeout)[1]
        if message['type'] == 'error':
            raise self.error('failed: %s' % message.get('reason'))
        return message

    def call(self, kind, reply, timeout=60.0, **fields):
        """Send ``kind`` and wait for its ``reply``."""
        self.send(kind, **fields)
        return self.expect(reply, timeout)

    # -- ending it --------------------------------------------------------

    def wait(self, timeout):
        """Wait until the worker exited and all it said was read; its exit
        status. A worker still running after ``timeout`` is killed, and
        WorkerError raised.
        """
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            error = self._hang_error('hung for %ss' % timeout)
            self.kill()
            raise error from None
        # What a forked grandchild keeps open could hold the pipe longer.
        self._ended.wait(timeout)
        return self.proc.returncode

    def stop(self, timeout=5.0):
        """Ask the worker to quit (a ``quit`` command, then end of input);
        kill it if it has not exited after ``timeout``.
        """
        if self.proc.poll() is None:
            self.send('quit')
            try:
                self.proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            try:
                self.wait(timeout)
            except WorkerError:
                pass  # killed
        self.kill()

    def kill(self):
        """SIGKILL the worker (and, with ``new_session``, what it forked)."""
        if self._new_session:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        elif self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def stderr_text(self, chars=6000):
        """The last ``chars`` characters the worker wrote to stderr (None:
        all of it).
        """
        fd = self._log.fileno()
        size = os.fstat(fd).st_size
        start = 0 if chars is None else max(size - chars * 4, 0)
        # pread: the worker shares this file's offset; leave it alone.
        text = os.pread(fd, size - start, start).decode(errors='replace')
        return text if chars is None else text[-chars:]

    def error(self, what, chars=_TAIL):
        """A WorkerError saying ``what`` of this worker, with the last
        ``chars`` characters of its stderr.
        """
        return WorkerError('%s %s; stderr:\n%s' % (
            self.label, what, self.stderr_text(chars)))

    def _hang_error(self, what):
        """``error(what)`` for a worker that did not answer in time, after
        ``dump_stacks``: the dumps in full, then the usual tail before them.
        """
        fd = self._log.fileno()
        before = os.fstat(fd).st_size
        self.dump_stacks()
        return self.error(what, _TAIL + os.fstat(fd).st_size - before)

    def dump_stacks(self):
        """Ask the worker and what it forked for every thread's Python
        stack, written to its stderr; the pids asked.

        A hang that cannot be reproduced (a lock held by another thread at
        a fork, say) leaves this as its only evidence. The worker answers
        SIGUSR1 with faulthandler (df_nats/testing/worker.py), and so do
        its forks: the registration survives fork. Only live processes
        that catch SIGUSR1 are sent it -- to others it would be fatal --
        and only while the worker is not reaped: its pid and the tree under
        it are still its own. One at a time, each under a line naming its
        pid: they share the log, and dumps written together would be
        interleaved. Linux only (/proc); elsewhere, nothing.
        """
        if self.proc.poll() is not None:
            return []
        asked = []
        for pid in _family(self.proc.pid):
            if _catches_sigusr1(pid):
                os.write(self._log.fileno(), (_DUMP_HEADER % pid).encode())
                try:
                    os.kill(pid, signal.SIGUSR1)
                except OSError:
                    continue  # gone meanwhile
                asked.append(pid)
                self._wait_for_the_log()
        return asked

    def _wait_for_the_log(self):
        """Wait until the log grew and then stayed still (a dump was
        written), ``_DUMP_TIME`` at most.
        """
        fd = self._log.fileno()
        deadline = time.monotonic() + _DUMP_TIME
        size, grown = os.fstat(fd).st_size, False
        while time.monotonic() < deadline:
            time.sleep(_DUMP_QUIET)
            now = os.fstat(fd).st_size
            if grown and now == size:
                return
            grown, size = grown or now > size, now


def _status(pid):
    """The fields of /proc/PID/status, or {} if there is none."""
    try:
        with open('/proc/%s/status' % pid) as status:
            return dict(line.rstrip('\n').split(':\t', 1)
                        for line in status if ':\t' in line)
    except OSError:
        return {}


def _family(pid):
    """``pid`` and its descendants, from each process's parent in /proc.

    (/proc/PID/task/TID/children would be shorter, but not every kernel
    has it.)
    """
    children = {}
    try:
        entries = os.listdir('/proc')
    except OSError:
        entries = []
    for entry in entries:
        parent = _status(entry).get('PPid') if entry.isdigit() else None
        if parent:
            children.setdefault(int(parent), []).append(int(entry))
    family, todo = [], [pid]
    while todo:
        member = todo.pop()
        if member > 1 and member not in family:
            family.append(member)
            todo.extend(children.get(member, ()))
    return family


def _catches_sigusr1(pid):
    """Whether ``pid`` is alive (not a zombie) and has a SIGUSR1 handler."""
    status = _status(pid)
    if not status or status.get('State', 'Z')[:1] in 'ZX':
        return False
    caught = int(status.get('SigCgt', '0'), 16)
    return bool(caught >> (signal.SIGUSR1 - 1) & 1)
