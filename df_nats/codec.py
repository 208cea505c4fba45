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

"""The wire format of a Dragonflow event, and the NATS headers beside it.

The body is what every Dragonflow pub/sub driver sends: a msgpack map with
the keys ``table``, ``key``, ``action``, ``value`` and ``topic``. It is
packed here with today's msgpack, because Dragonflow's own
``pack_message``/``unpack_message`` pass ``encoding=``, which msgpack >= 1.0
rejects (they log and return None).

Headers repeat the table and action so that ``nats sub`` shows what flows
without decoding the body; they never change it.
"""

from typing import Any, Dict, Mapping, Optional

import msgpack

from df_nats import bridge

EVENT_FIELDS = ('table', 'key', 'action', 'value', 'topic')
_EVENT_FIELD_SET = frozenset(EVENT_FIELDS)

HEADER_TABLE = 'Df-Table'
HEADER_ACTION = 'Df-Action'
# Header values must fit on one protocol line.
_MAX_HEADER_VALUE = 128
# Distinct (table, action) pairs whose headers are kept; Dragonflow has a
# few dozen tables and a handful of actions.
_MAX_CACHED_HEADERS = 1024

# A Packer per native thread: reusing one is about twice as fast as
# msgpack.packb(), which builds one for each call. Under eventlet the
# original _thread._local is used, shared by the greenthreads of a native
# thread (pack() never yields to the hub): the green threading.local costs
# 4 us per lookup, more than building a Packer.
_packers = bridge._original('_thread')._local()
_headers_cache: Dict[Any, Dict[str, str]] = {}


class MalformedEvent(ValueError):
    """A message body that is not a Dragonflow event."""


def pack_event(event: Mapping[str, Any]) -> bytes:
    """Pack an event dict (``DbUpdate.to_dict()``) into the wire body."""
    try:
        packer = _packers.packer
    except AttributeError:
        packer = _packers.packer = msgpack.Packer(use_bin_type=True)
    get = event.get
    return packer.pack({'table': get('table'), 'key': get('key'),
                        'action': get('action'), 'value': get('value'),
                        'topic': get('topic')})


def unpack_event(data: bytes) -> Dict[str, Any]:
    """Decode a wire body; ``MalformedEvent`` says what is wrong with it."""
    try:
        event = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:
        raise MalformedEvent('not msgpack: %s' % exc) from None
    if isinstance(event, dict) and event.keys() >= _EVENT_FIELD_SET:
        return event
    if not isinstance(event, dict):
        raise MalformedEvent('not a map but %s' % type(event).__name__)
    missing = [f for f in EVENT_FIELDS if f not in event]
    raise MalformedEvent('missing %s' % ', '.join(missing))


def _header_value(value: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode('utf-8', 'replace')
    text = str(value)
    if not text.isprintable() or not text.isascii():
        text = text.encode('ascii', 'backslashreplace').decode('ascii')
        text = ''.join(c if c.isprintable() else '?' for c in text)
    return text[:_MAX_HEADER_VALUE]


def event_headers(table: Any, action: Any) -> Dict[str, str]:
    """Headers that label an event for people reading ``nats sub``.

    The dict returned is shared between calls with the same table and
    action: read it, do not change it.
    """
    try:
        return _headers_cache[(type(table), table, type(action), action)]
    except KeyError:
        cache_key = (type(table), table, type(action), action)
    except TypeError:
        cache_key = None  # unhashable: build it every time
    headers = {}
    for name, value in ((HEADER_TABLE, table), (HEADER_ACTION, action)):
        text = _header_value(value)
        if text:
            headers[name] = text
    if cache_key is not None:
        if len(_headers_cache) >= _MAX_CACHED_HEADERS:
            _headers_cache.clear()
        _headers_cache[cache_key] = headers
    return headers
