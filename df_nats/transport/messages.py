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

Pure: the sender writes the message (``sender``, ``nats_compat``).
"""

import time
from typing import Dict, List, Tuple

from df_nats.transport import outbox
from df_nats.wire import codec
from df_nats.wire import send_time
from df_nats.wire import sequence


def message(stream, n: int, group: List) -> Tuple[bytes, Dict, int]:
    """Body, headers and outbox bytes of message ``n`` of ``stream``.

    ``group`` holds the outbox entries ``take_on_loop`` gave: one entry, or
    consecutive events of the stream to send as one batch. ``Df-Events``
    carries the send time (``send_time``), taken here, on the loop
    thread, once per message; a raw body goes without either.
    """
    headers = {sequence.HEADER_SEQ: stream.header(n)}
    label = group[0][2]
    if len(group) == 1:
        body = group[0][1]
        if label is not outbox.RAW:
            headers[codec.HEADER_EVENTS] = send_time.stamp(
                codec.events_header(1, label), time.time_ns() // 1000)
        return body, headers, len(body)
    bodies = [entry[1] for entry in group]
    if any(entry[2] != label for entry in group):
        label = None  # no table shared by all
    headers[codec.HEADER_EVENTS] = send_time.stamp(
        codec.events_header(len(group), label), time.time_ns() // 1000)
    return codec.batch_body(bodies), headers, sum(map(len, bodies))
