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

"""What the drain puts on the wire: one message for a group of events.

Pure but for ``write_pending_now`` and ``write_message``, which write to
nats-py's socket; all run on the loop thread (see ``sender``).
"""

import time
from typing import Dict, List, Tuple

from df_nats.transport import outbox as df_outbox
from df_nats.wire import codec
from df_nats.wire import send_time
from df_nats.wire import sequence


def message(stream, n: int, group: List) -> Tuple[bytes, Dict, int]:
    """Body, headers and outbox bytes of message ``n`` of ``stream``.

    ``group`` holds the outbox entries ``take`` gave: one entry, or
    consecutive events of the stream to send as one batch. ``Df-Events``
    carries the send time (``send_time``), taken here, on the loop
    thread, once per message; a raw body goes without either.
    """
    headers = {sequence.HEADER_SEQ: stream.header(n)}
    label = group[0][2]
    if len(group) == 1:
        body = group[0][1]
        if label is not df_outbox.RAW:
            headers[codec.HEADER_EVENTS] = send_time.stamp(
                codec.events_header(1, label), time.time_ns() // 1000)
        return body, headers, len(body)
    bodies = [entry[1] for entry in group]
    if any(entry[2] != label for entry in group):
        label = None  # no table shared by all
    headers[codec.HEADER_EVENTS] = send_time.stamp(
        codec.events_header(len(group), label), time.time_ns() // 1000)
    return codec.batch_body(bodies), headers, sum(map(len, bodies))


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


def write_message(nc, writer, subject: str, body: bytes,
                  headers: Dict[str, str]) -> None:
    """Write one message to ``writer`` (``idle_writer``) as the NATS
    protocol's ``HPUB``, past nats-py's ``publish`` (loop thread).

    Subjects and header values are df-nats' own (``subjects``,
    ``sequence``, ``codec``): printable ASCII without line breaks, so
    they need none of the checks nats-py makes on a user's.
    """
    block = ''.join(['NATS/1.0\r\n']
                    + ['%s: %s\r\n' % item for item in headers.items()]
                    + ['\r\n']).encode()
    writer.write(b'HPUB %s %d %d\r\n%s%s\r\n' % (
        subject.encode(), len(block), len(block) + len(body), block, body))
    nc.stats['out_msgs'] += 1
    nc.stats['out_bytes'] += len(body)
