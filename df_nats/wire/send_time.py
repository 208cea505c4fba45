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


"""The send time of a message, for the lag from publish to callback.

A publisher writes the wall-clock time at which the loop thread sends a
message as the last field of its ``Df-Events`` header value::

    Df-Events: 40 lport t=1733327749388783

(microseconds since the epoch). Once per message, not per event, and in
a header the message carries anyway: nats-py parses every header line,
so a header of its own would cost more. A subscriber reads it before the
callback of at most one message per ``SAMPLE_NS`` (every message at
ordinary rates; a clock read is all the others cost in a burst) and
keeps a summary of the lag (``LagSummary``), no history.

Tolerant on both sides of a mixed deployment: older subscribers never
read ``Df-Events`` beyond its first field, and a message without the
field (an older publisher, a raw body, a mark) has no lag. The value is
untrusted and the clocks of two hosts differ: a value that is not a
short number, or that puts the send more than ``MAX_AHEAD`` seconds in
the future or more than ``MAX_LAG`` seconds in the past, is ignored and
counted; a small negative lag (clock skew) counts as 0.
"""

from typing import Mapping, Optional

from df_nats.wire import codec

_FIELD = ' t='
# Microseconds since the epoch have 16 digits until the year 2286.
_MAX_DIGITS = 17
# Beyond these the value is not believed (seconds).
MAX_AHEAD = 1.0
MAX_LAG = 3600.0
_MAX_AHEAD_US = int(MAX_AHEAD * 1e6)
_MAX_LAG_US = int(MAX_LAG * 1e6)
# A subscriber measures at most one message per this many nanoseconds.
SAMPLE_NS = 1000000
# The weight of a new lag in the moving average: 1 / 2**_EWMA_SHIFT.
_EWMA_SHIFT = 4


def stamp(events_value: str, now_us: int) -> str:
    """``events_value`` with the send time ``now_us`` as its last field."""
    return '%s t=%d' % (events_value, now_us)


def sent_us(headers: Optional[Mapping[str, str]]) -> Optional[int]:
    """The send time of a message in microseconds, or None.

    None when the message has no send time or one that is not a short
    number; the range is judged by ``LagSummary.note``.
    """
    if not headers:
        return None
    value = headers.get(codec.HEADER_EVENTS)
    if not value or not isinstance(value, str):
        return None
    start = value.rfind(_FIELD)
    if start < 0:
        return None
    digits = value[start + 3:]
    if (len(digits) > _MAX_DIGITS or not digits.isdigit()
            or not digits.isascii()):
        return None
    return int(digits)


class LagSummary:
    """The lag from publish to callback: last, moving average, maximum.

    Integers of microseconds, updated in place: no allocation per
    message beyond the integers themselves. ``ignored`` counts send
    times not believed. One writer (the dispatcher); readers take the
    attributes as they are.
    """

    __slots__ = ('last_us', 'avg_us', 'max_us', 'measured', 'ignored')

    def __init__(self):
        self.last_us = 0
        self.avg_us = 0
        self.max_us = 0
        self.measured = 0
        self.ignored = 0

    def note(self, sent: int, now_us: int) -> None:
        """One message sent at ``sent``, handed to the callback now."""
        lag = now_us - sent
        if lag < 0:
            if lag < -_MAX_AHEAD_US:
                self.ignored += 1
                return
            lag = 0   # clock skew between the two hosts
        elif lag > _MAX_LAG_US:
            self.ignored += 1
            return
        self.last_us = lag
        if self.measured:
            self.avg_us += (lag - self.avg_us) >> _EWMA_SHIFT
        else:
            self.avg_us = lag
        if lag > self.max_us:
            self.max_us = lag
        self.measured += 1
