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

"""The unpatched modules, and an asyncio loop built only on them.

Under eventlet monkey-patching, ``select``, ``socket``, ``_thread`` and
``os`` are green. The bridge's loop thread must never enter the hub, so its
selector, its self-pipe and its name resolution use the originals.
"""

import asyncio
import importlib
import selectors
import sys


def is_green() -> bool:
    """True when eventlet has monkey-patched threads in this process."""
    if 'eventlet' not in sys.modules:
        return False
    from eventlet import patcher
    return patcher.is_monkey_patched('thread')


def original(name: str):
    """The module as it was before any monkey-patching."""
    if 'eventlet' in sys.modules:
        from eventlet import patcher
        return patcher.original(name)
    return importlib.import_module(name)


class NativeEpollSelector(selectors._BaseSelectorImpl):
    """An epoll selector built on the unpatched ``select`` module.

    Under monkey-patching ``selectors`` only offers a green SelectSelector,
    and ``patcher.original('selectors')`` re-imports against green select.
    """

    def __init__(self, select_module):
        super().__init__()
        self._select = select_module
        self._epoll = select_module.epoll()

    def _mask(self, events):
        mask = 0
        if events & selectors.EVENT_READ:
            mask |= self._select.EPOLLIN
        if events & selectors.EVENT_WRITE:
            mask |= self._select.EPOLLOUT
        return mask

    def register(self, fileobj, events, data=None):
        key = super().register(fileobj, events, data)
        try:
            self._epoll.register(key.fd, self._mask(events))
        except BaseException:
            super().unregister(fileobj)
            raise
        return key

    def unregister(self, fileobj):
        key = super().unregister(fileobj)
        try:
            self._epoll.unregister(key.fd)
        except OSError:
            pass  # the fd was closed first
        return key

    def select(self, timeout=None):
        timeout = -1 if timeout is None else max(timeout, 0)
        try:
            ready = self._epoll.poll(timeout, max(len(self._fd_to_key), 1))
        except InterruptedError:
            return []
        chosen = []
        for fd, mask in ready:
            events = 0
            if mask & ~self._select.EPOLLOUT:
                events |= selectors.EVENT_READ
            if mask & ~self._select.EPOLLIN:
                events |= selectors.EVENT_WRITE
            key = self._fd_to_key.get(fd)
            if key:
                chosen.append((key, events & key.events))
        return chosen

    def close(self):
        self._epoll.close()
        super().close()


class NativeLoop(asyncio.SelectorEventLoop):
    """A selector loop that resolves names on a native thread.

    asyncio resolves host names in its default executor, whose workers are
    green threads under monkey-patching: connects to ``localhost`` stalled
    for seconds. Here each lookup gets an original thread of its own.
    """

    def __init__(self, natives):
        self._natives = natives  # before the base class makes its pipe
        super().__init__(NativeEpollSelector(natives.select))

    def _make_self_pipe(self):
        # The wake-up of call_soon_threadsafe. asyncio makes it with the
        # socket module it imported, green under monkey-patching: every
        # wake-up went through eventlet's socket wrapper, on both threads.
        self._ssock, self._csock = self._natives.socket.socketpair()
        self._ssock.setblocking(False)
        self._csock.setblocking(False)
        self._internal_fds += 1
        self._add_reader(self._ssock.fileno(), self._read_from_self)

    async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0,
                          flags=0):
        future = self.create_future()

        def resolve():
            try:
                result = self._natives.socket.getaddrinfo(
                    host, port, family, type, proto, flags)
            except BaseException as exc:
                self.call_soon_threadsafe(_settle, future, None, exc)
            else:
                self.call_soon_threadsafe(_settle, future, result, None)

        self._natives.thread.start_new_thread(resolve, ())
        return await future


def _settle(future, result, exc):
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


class Natives:
    """The unpatched modules the loop thread and the wake-ups rely on."""

    def __init__(self):
        self.select = original('select')
        self.socket = original('socket')
        self.thread = original('_thread')
        self.os = original('os')
