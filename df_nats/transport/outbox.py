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

"""Events waiting for the loop thread to send them, and who may touch what.

Callers (greenthreads or native threads) put entries in (``put``); the
loop thread takes them out in order (``take_on_loop``), returns what it
could not send (``put_back_on_loop``) and releases the bytes of what it
sent (``release_on_loop``).
The rules:

* The entries are a deque: callers only append, the loop only pops and
  pushes back at the front. Each is one atomic operation.
* The byte count is two counters, so that nobody updates what another
  thread updates: bytes put (callers, under a native lock that no one
  holds across a wait) and bytes released (the loop thread alone). What
  is waiting is their difference; a stale read is off by the entries in
  flight at that moment, and the count never drifts.
* A caller that finds no room waits on a doorbell (a pipe) that the loop
  rings after releasing bytes, never on a green lock or event; it looks
  again only when rung, or every 50 ms to see whether the link dropped.
  Waiting callers queue on a lock of their own world, so that one at a
  time watches the doorbell.

While connected a full outbox slows its callers down; while disconnected
``put`` raises ``PublishBufferFull`` naming ``reconnect_buffer_size``.
"""

import collections
import threading
from typing import Callable, List, Optional

from df_nats import errors
from df_nats.loop import natives

# Marks an entry whose body was packed by the caller (``_send_event``):
# not an event df-nats can vouch for, so it is never put into a batch.
RAW = object()

# How long a waiting caller sleeps before it looks at the connection
# again: the doorbell rings when bytes leave, not when the link drops.
_RECHECK_SECONDS = 0.05


class Outbox:
    """A FIFO of ``(stream, body, label)`` entries bounded in bytes.

    ``label`` is the event's table, or ``RAW`` for a body that must go out
    as a message of its own. ``on_loop()`` says whether the caller is the
    loop thread (``Bridge.on_loop_thread``), which the ``_on_loop``
    methods assert.
    """

    def __init__(self, limit: int, bell, is_connected: Callable[[], bool],
                 on_loop: Callable[[], bool]):
        self.limit = limit
        self._entries = collections.deque()
        self._put_bytes = 0        # callers, under _put_lock
        self._released_bytes = 0   # the loop thread only
        self._put_lock = natives.original('_thread').allocate_lock()
        self._room_lock = threading.Lock()  # the caller's world
        self._bell = bell
        self._waiting = False
        self._is_connected = is_connected
        self._on_loop = on_loop

    def __len__(self) -> int:
        return len(self._entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    @property
    def waiting_bytes(self) -> int:
        """Bytes put and not yet released."""
        return self._put_bytes - self._released_bytes

    # -- the caller's side -------------------------------------------------

    def put(self, stream, body: bytes, label) -> None:
        """Queue an entry; waits for room, or raises when disconnected."""
        size = len(body)
        if (self._put_bytes - self._released_bytes + size > self.limit
                and self._entries):
            self._wait_for_room(size)
        # Counted before it is visible, so the loop never releases bytes
        # that were not counted yet. (acquire/release rather than a with
        # block: cheaper, on every event.)
        lock = self._put_lock
        lock.acquire()
        try:
            self._put_bytes += size
        finally:
            lock.release()
        self._entries.append((stream, body, label))

    def _wait_for_room(self, size: int) -> None:
        with self._room_lock:
            while True:
                self._waiting = True
                # Looked at after raising the flag: bytes released before
                # are seen here, bytes released after ring the bell.
                if not (self._entries and self.waiting_bytes + size
                        > self.limit):
                    break
                if not self._is_connected():
                    self._waiting = False
                    raise errors.PublishBufferFull(
                        'NATS is unreachable and %d bytes of events are'
                        ' waiting ([df_nats] reconnect_buffer_size = %d)'
                        % (self.waiting_bytes, self.limit))
                self._bell.wait(_RECHECK_SECONDS)
            self._waiting = False

    # -- the loop thread's side --------------------------------------------

    def take_on_loop(self, max_bytes: int, max_count: int) -> Optional[List]:
        """Pop the next message's entries (loop thread), or None.

        Consecutive event entries of one stream, at most ``max_count`` of
        them and ``max_bytes`` together (a first entry larger than that
        goes alone); a ``RAW`` entry always goes alone.
        """
        assert self._on_loop()
        entries = self._entries
        if not entries:
            return None
        first = entries.popleft()
        stream, body, label = first
        if label is RAW or not entries:
            return [first]
        group = [first]
        size = len(body)
        while entries and len(group) < max_count:
            entry = entries[0]
            if entry[0] is not stream or entry[2] is RAW:
                break
            size += len(entry[1])
            if size > max_bytes:
                break
            group.append(entries.popleft())
        return group

    def put_back_on_loop(self, group: List) -> None:
        """Return entries taken but not sent to the front (loop thread)."""
        assert self._on_loop()
        self._entries.extendleft(reversed(group))

    def release_on_loop(self, size: int) -> None:
        """Bytes that left the outbox for good (loop thread)."""
        assert self._on_loop()
        self._released_bytes += size
        if self._waiting:
            self._bell.ring()
