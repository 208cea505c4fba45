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

"""Every use df-nats makes of nats-py's internals, in one place.

nats-py's public API has no way to write what it queued at once, to
write a message without queueing it, to queue messages ahead of what it
holds for its next connection, to send queued SUB/UNSUB before a PING,
or to act between the INFO exchange and CONNECT. df-nats needs all five
(latency, resends in order after a reconnect, subscriptions confirmed,
the TLS guard), so it reaches past the API here and only here:

- ``Client._pending`` and ``_pending_data_size``: the commands nats-py
  queued for its flusher task (``write_pending_now``, ``idle_writer``,
  ``queue_first``);
- ``Client._transport._io_writer``: the asyncio stream of the TCP
  transport (``write_pending_now``, ``idle_writer``, ``is_tls``), and
  the ``HPUB`` frame written to it by hand (``write_hpub``);
- ``Client._transport.close()`` (``close_socket``);
- ``Client._flush_pending(force_flush=True)`` (``flush_pending``);
- ``Client._connect_command``, overridden by ``HookedClient``;
- ``Client._current_server`` (``server_name``).

requirements.txt caps nats-py at the newest release these were tested
with; tests/unit/transport/test_nats_compat.py fails, naming the
attribute, when a release changes one of them, and ``tox -e nats-lowest``
runs them against the oldest release supported. The writes fall back to
nats-py's own path when the internals are not the expected ones; the TLS
guard refuses to start instead (``CONNECT_HOOK``).
"""

from importlib import metadata
from typing import Dict

import nats

# nats-py calls _connect_command on every connect and reconnect: without
# it, HookedClient.before_connect would silently never run.
CONNECT_HOOK = callable(getattr(nats.NATS, '_connect_command', None))


def write_pending_now(nc) -> None:
    """Hand what nats-py queued to the socket at once (loop thread).

    nats-py's ``publish`` appends to a pending list that its flusher task
    writes on a later turn of the loop: at low rates that turn was a good
    part of the latency df-nats adds. Written here only when the socket
    took everything written before (no back-pressure to respect); when
    nats-py's internals are not the expected ones (another transport, a
    changed release), the flusher writes as usual.
    """
    try:
        pending = nc._pending
        writer = nc._transport._io_writer
        if (not pending or not nc.is_connected
                or writer.transport.get_write_buffer_size()):
            return
    except AttributeError:
        return
    writer.writelines(pending)
    nc._pending = []
    nc._pending_data_size = 0


def idle_writer(nc):
    """nats-py's stream writer if nothing waits to be written (loop thread).

    None while nats-py holds pending commands or the socket did not take
    everything written before (a message written now would overtake
    them), when disconnected, and when nats-py's internals are not the
    expected ones (another transport, a changed release).
    """
    try:
        writer = nc._transport._io_writer
        if (nc._pending or not nc.is_connected
                or writer.transport.get_write_buffer_size()):
            return None
    except AttributeError:
        return None
    return writer


def write_hpub(nc, writer, subject: str, body: bytes,
               headers: Dict[str, str]) -> None:
    """Write one message to ``writer`` (``idle_writer``) as the NATS
    protocol's ``HPUB``, past nats-py's ``publish`` (loop thread).

    Subjects and header values are df-nats' own (``subjects``,
    ``sequence``, ``codec``): printable ASCII without line breaks, so
    they need none of the checks nats-py makes on a user's. Counted in
    nats-py's ``stats`` as its ``publish`` would.
    """
    writer.write(_hpub(subject, body, headers))
    nc.stats['out_msgs'] += 1
    nc.stats['out_bytes'] += len(body)


def queue_first(nc, messages) -> bool:
    """Queue ``messages`` (subject, body, headers) ahead of everything
    nats-py holds for its next connection (loop thread, disconnected).

    nats-py writes what it queued before a reconnect as soon as the new
    connection is up, before any callback runs: messages sent again after
    the reconnect would come after newer ones that were still queued, and
    subscribers would see a gap. Queued first, they go out in their
    order. False, and nothing queued, when nats-py's internals are not
    the expected ones (the caller then sends them after the reconnect).
    """
    try:
        pending = nc._pending
        size = nc._pending_data_size
    except AttributeError:
        return False
    if not isinstance(pending, list) or not isinstance(size, int):
        return False
    frames = [_hpub(subject, body, headers)
              for subject, body, headers in messages]
    nc._pending = frames + pending
    nc._pending_data_size = size + sum(len(frame) for frame in frames)
    nc.stats['out_msgs'] += len(frames)
    nc.stats['out_bytes'] += sum(len(body) for _, body, _ in messages)
    return True


def _hpub(subject: str, body: bytes, headers: Dict[str, str]) -> bytes:
    """The NATS protocol's ``HPUB`` frame of one message."""
    block = ''.join(['NATS/1.0\r\n']
                    + ['%s: %s\r\n' % item for item in headers.items()]
                    + ['\r\n']).encode()
    return b'HPUB %s %d %d\r\n%s%s\r\n' % (
        subject.encode(), len(block), len(block) + len(body), block, body)


async def flush_pending(nc) -> None:
    """Write the SUB/UNSUB nats-py queued before a PING (loop thread).

    nats-py writes PING straight to the socket but leaves SUB and UNSUB
    to its flusher task: without this the PONG could come back before
    the server saw them.
    """
    await nc._flush_pending(force_flush=True)


def is_tls(nc) -> bool:
    """True when ``nc``'s socket is TLS now."""
    writer = getattr(getattr(nc, '_transport', None), '_io_writer', None)
    if writer is None:
        return False
    return writer.get_extra_info('ssl_object') is not None


def close_socket(nc) -> None:
    """Close ``nc``'s socket: nothing more is written to it."""
    nc._transport.close()


def server_name(nc) -> str:
    """host:port of the server ``nc`` is connecting to, or '?'."""
    server = getattr(nc, '_current_server', None)
    uri = getattr(server, 'uri', None)
    if uri is None or not uri.hostname:
        return '?'
    return '%s:%s' % (uri.hostname, uri.port)


class HookedClient(nats.NATS):
    """A nats-py client that calls ``before_connect`` before CONNECT.

    nats-py builds CONNECT in ``_connect_command``, after the INFO
    exchange and any TLS upgrade: the same code on the first connect and
    on every reconnect, to configured and to discovered servers alike.
    """

    def before_connect(self) -> None:
        """Raise to send no CONNECT (close the socket first)."""

    def _connect_command(self) -> bytes:
        self.before_connect()
        return super()._connect_command()


def version() -> str:
    """The nats-py release installed, for messages."""
    try:
        return metadata.version('nats-py')
    except metadata.PackageNotFoundError:
        return '?'
