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

"""One native thread per process runs asyncio for nats-py; hand-offs to it.

Dragonflow runs under eventlet monkey-patching today and under native
threads tomorrow; nats-py is asyncio. The bridge keeps the two apart:

* the *loop thread* is an original OS thread running an asyncio loop whose
  selector, thread start and name resolution come from the unpatched
  modules, so it never blocks or enters the eventlet hub;
* the *caller's world* is the greenthreads of the hub (monkey-patched
  process) or ordinary threads (native process).

Work crosses in both directions through a deque plus a single wake-up:
toward the loop with ``call_soon_threadsafe``, toward the caller's world
with a byte on a pipe the eventlet hub listens to (a monkey-patched
process) or the release of an original lock (a native one). The
loop thread never touches a green lock, queue or event, and never logs
directly under eventlet (logging handlers hold green locks): its log
records are handed to the caller's world like everything else
(``df_nats.loop.log``).
"""

import asyncio
import collections
import os
import threading
import time
from typing import Any, Callable, Coroutine, Optional

from df_nats import errors
from df_nats.loop import log
from df_nats.loop import natives

LOG = log.get_logger(__name__)


class _Doorbell:
    """A pipe that one side rings and the caller's world waits on.

    Ringing is a non-blocking ``write`` with the original ``os`` functions,
    safe from any thread. Waiting trampolines into the hub under eventlet
    (the green ``os.read`` would trampoline on every call) and blocks in the
    original ``select`` otherwise.
    """

    def __init__(self, originals: natives.Natives, green: bool):
        self._os = originals.os
        self._select = originals.select
        self._green = green
        self._rfd, self._wfd = self._os.pipe()
        self._os.set_blocking(self._rfd, False)
        self._os.set_blocking(self._wfd, False)

    def ring(self):
        try:
            self._os.write(self._wfd, b'\0')
        except (BlockingIOError, OSError):
            pass  # full pipe: a wake-up is pending already; closed: ignore

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait until rung; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(
                deadline - time.monotonic(), 0)
            if not self._readable(left):
                return False
            try:
                self._os.read(self._rfd, 4096)
                return True
            except BlockingIOError:
                # Woken with nothing to read: not rung. It happens when an
                # eventlet hub's epoll is shared with a forked process.
                continue

    def _readable(self, timeout: Optional[float]) -> bool:
        if self._green:
            from eventlet import hubs
            try:
                hubs.trampoline(self._rfd, read=True, timeout=timeout,
                                timeout_exc=TimeoutError)
            except TimeoutError:
                return False
            return True
        ready, _, _ = self._select.select([self._rfd], [], [], timeout)
        return bool(ready)

    def close(self):
        for fd in (self._rfd, self._wfd):
            try:
                self._os.close(fd)
            except OSError:
                pass


class _HubDoorbell(_Doorbell):
    """A doorbell that the eventlet hub listens to for good; one waiter.

    ``trampoline`` adds the pipe to the hub's poller and removes it again
    on every wait: two system calls per wake-up, one of them between the
    wake-up and the work it is for. Here the pipe stays registered; the
    hub's callback empties it (so that a ring while nobody waits does not
    keep the hub spinning) and switches to the greenthread parked in
    ``wait``, or leaves it a flag.
    """

    def __init__(self, originals: natives.Natives):
        super().__init__(originals, True)
        from eventlet import hubs
        import greenlet
        self._current = greenlet.getcurrent
        self._hub = hubs.get_hub()
        self._rung = False
        self._waiter = None
        self._listener = self._hub.add(self._hub.READ, self._rfd,
                                       self._on_readable, self._on_error,
                                       None)

    def wait(self) -> bool:
        """Wait until rung, for good (the dispatcher's wait: no timeout)."""
        while not self._rung:
            self._waiter = self._current()
            try:
                self._hub.switch()
            finally:
                self._waiter = None
        self._rung = False
        return True

    def _on_readable(self, fileno):
        # In the hub's greenlet: must not raise (the hub would drop the
        # listener and the waiter would never wake again).
        try:
            self._os.read(self._rfd, 4096)
        except OSError:
            # Nothing to read: woken through an epoll shared with a
            # forked process; or closed.
            return
        self._rung = True
        if self._waiter is not None:
            self._waiter.switch()

    def _on_error(self, exc):
        # The hub gave up on the descriptor: tell the waiter.
        if self._waiter is not None:
            self._waiter.throw(exc)

    def close(self):
        self._hub.remove(self._listener)
        super().close()


class _LockBell:
    """The native world's doorbell for the dispatcher: a bare lock.

    Held while nobody rang; ringing releases it, waiting takes it. A
    wake-up is one futex call each side, where the pipe took a write, a
    ``select`` and a read: the hand-off of every message received.
    """

    def __init__(self, originals: natives.Natives):
        self._lock = originals.thread.allocate_lock()
        self._lock.acquire()

    def ring(self):
        try:
            self._lock.release()
        except RuntimeError:
            pass  # rung already, and not yet waited for

    def wait(self) -> bool:
        """Wait until rung, for good (the dispatcher's wait: no timeout)."""
        self._lock.acquire()
        return True

    def close(self):
        pass


class _CallerWorld:
    """Runs functions posted from the loop thread in the caller's world.

    One greenthread (eventlet) or daemon thread (native) pops a FIFO of
    posted calls; a function that raises is logged and the next one runs.
    """

    def __init__(self, originals: natives.Natives, green: bool):
        self._calls = collections.deque()
        self._bell = (_HubDoorbell(originals) if green
                      else _LockBell(originals))
        self._rung = False
        if green:
            import eventlet
            eventlet.spawn(self._run)
        else:
            threading.Thread(target=self._run, name='df-nats-dispatch',
                             daemon=True).start()

    def post(self, fn: Callable, *args):
        """Queue ``fn(*args)``; callable from any thread."""
        self._calls.append((fn, args))
        if not self._rung:
            # At once: a message is a batch of events when they come fast,
            # so this is seldom; deferring the ring to the loop's next turn
            # cost the latency of that turn.
            self._rung = True
            self._bell.ring()

    def _run(self):
        calls = self._calls
        while True:
            self._bell.wait()
            # The flag stays up while calls are drained, so that posts
            # landing meanwhile do not ring once each (a write, a wake-up
            # and a read per message). Once the queue looked empty it is
            # cleared and the queue looked at again: a post that landed
            # before is drained here, one that lands after rings.
            while True:
                while calls:
                    fn, args = calls.popleft()
                    try:
                        fn(*args)
                    except Exception:
                        LOG.exception('df-nats: error in %s', fn)
                self._rung = False
                if not calls:
                    break


class Bridge:
    """The loop thread of this process and the ways in and out of it."""

    def __init__(self):
        self.pid = os.getpid()
        self.green = natives.is_green()
        self._natives = natives.Natives()
        self.world = _CallerWorld(self._natives, self.green)
        # Built here rather than on the loop thread, so that asyncio's own
        # set-up logging happens in the caller's world.
        self.loop = natives.NativeLoop(self._natives)
        self.loop.set_exception_handler(self._on_loop_exception)
        self._loop_ident = None
        # From here on, what the loop thread logs is moved to the caller's
        # world under eventlet (df-nats' loggers, asyncio's and nats-py's).
        log.divert_loop_records(self)
        started = self._natives.thread.allocate_lock()
        started.acquire()
        self._natives.thread.start_new_thread(self._run_loop, (started,))
        # An original lock: waiting on it blocks this greenthread's hub for
        # the moment the loop thread needs to start, and no longer.
        started.acquire()

    def _run_loop(self, started):
        self._loop_ident = self._natives.thread.get_ident()
        asyncio.set_event_loop(self.loop)
        started.release()
        self.loop.run_forever()

    def on_loop_thread(self) -> bool:
        """True when called on this bridge's loop thread."""
        return self._natives.thread.get_ident() == self._loop_ident

    def _on_loop_exception(self, loop, context):
        exc = context.get('exception')
        LOG.error('df-nats loop: %s', context.get('message'),
                  exc_info=(type(exc), exc, exc.__traceback__)
                  if exc else None)

    def doorbell(self) -> '_Doorbell':
        """A new pipe that any thread rings and the caller's world waits on.

        For a caller waiting on the loop thread's progress: the loop rings
        it without touching anything green.
        """
        return _Doorbell(self._natives, self.green)

    def call_soon(self, fn: Callable, *args):
        """Run ``fn(*args)`` on the loop thread; do not wait for it."""
        self.loop.call_soon_threadsafe(fn, *args)

    def run(self, coro: Coroutine, timeout: Optional[float] = None) -> Any:
        """Run ``coro`` on the loop and wait for its result.

        Blocks only the calling greenthread or thread. Raises what the
        coroutine raised, or ``BridgeTimeout`` (and cancels it).
        """
        call = _PendingCall(coro, _Doorbell(self._natives, self.green))
        self.loop.call_soon_threadsafe(call.start)
        if not call.bell.wait(timeout):
            self.loop.call_soon_threadsafe(call.abandon)
            raise errors.BridgeTimeout('gave up after %s s' % timeout)
        call.bell.close()
        if call.task.cancelled():
            raise errors.BridgeTimeout('cancelled')
        return call.task.result()


class _PendingCall:
    """A coroutine run for a waiting caller; its fields change on the loop.

    Once the caller gave up, the loop closes the doorbell itself, so that it
    never rings a file descriptor number the process may have reused.
    """

    def __init__(self, coro, bell: _Doorbell):
        self.coro = coro
        self.bell = bell
        self.task = None
        self._abandoned = False

    def start(self):
        if self._abandoned:
            self.coro.close()
            return
        self.task = asyncio.ensure_future(self.coro)
        self.task.add_done_callback(self._finish)

    def _finish(self, task):
        if self._abandoned:
            self.bell.close()
        else:
            self.bell.ring()

    def abandon(self):
        self._abandoned = True
        if self.task is None:
            self.bell.close()
            self.coro.close()
        elif self.task.done():
            self.bell.close()
        else:
            self.task.cancel()
