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

"""The wire format of Dragonflow events, single and batched.

A single event is what every Dragonflow pub/sub driver sends: a msgpack
map with the keys ``table``, ``key``, ``action``, ``value`` and ``topic``.
It is packed here with today's msgpack, because Dragonflow's own
``pack_message``/``unpack_message`` pass ``encoding=``, which msgpack >= 1.0
rejects (they log and return None).

A batch is a msgpack array of such maps: the array header joined with the
maps as they were packed, never packed twice. The ``Df-Events`` header
says how many events a message holds, and their table when they all share
one, for people reading ``nats sub``; it never changes the body.
"""

import re
import struct
from typing import Any, Dict, List, Mapping, Optional, Tuple

import msgpack

from df_nats import errors
from df_nats.loop import natives

EVENT_FIELDS = ('table', 'key', 'action', 'value', 'topic')

# The actions Dragonflow nodes send each other: model changes (create, set,
# delete), port status to neutron-server (update) and log events. The
# controller's other actions (sync, reinitialize, dbrestart,
# ovs_sync_started, ovs_sync_finished) only ever originate inside its own
# process; from the wire they are malformed, since each one makes the
# controller reread or even clear its whole store.
WIRE_ACTIONS = frozenset(('create', 'set', 'delete', 'update', 'log'))
CONTROL_ACTIONS = frozenset(('sync', 'reinitialize', 'dbrestart',
                             'ovs_sync_started', 'ovs_sync_finished'))
# Field types accepted from the wire. ``key`` may be bytes: Dragonflow
# 4.0.0's table monitors (df-publisher-service) send the keys etcd3gw
# returns, which are bytes.
_KEY_TYPES = frozenset((str, bytes, type(None)))
_DATA_TYPES = frozenset((str, bytes, type(None)))
# How much of a bad field a problem report quotes.
_QUOTED = 32

HEADER_EVENTS = 'Df-Events'
# Header values must fit on one protocol line.
_MAX_HEADER_VALUE = 128
# Distinct table labels kept; Dragonflow has a few dozen tables.
_MAX_CACHED_HEADERS = 1024

# Events in one batch at most, sent or accepted: the array header of a
# batch is then at most 3 bytes (array 16).
MAX_BATCH_EVENTS = 65535
_ARRAY16 = struct.Struct('>BH')
_ARRAY32 = struct.Struct('>BI')
# The smallest event a publisher can pack: empty table, no key, value or
# topic, a three-letter action. A batch of elements averaging less than
# half of it is mostly not events (a publisher's batch holds nothing
# else): refused whole, before any decoding, however its elements are
# built. Half, so that a batch with a few small malformed elements keeps
# its good ones.
MIN_EVENT_BYTES = min(
    len(msgpack.packb({'table': '', 'key': None, 'action': action,
                       'value': None, 'topic': None}))
    for action in WIRE_ACTIONS)
MIN_ELEMENT_BYTES = MIN_EVENT_BYTES // 2
# Elements of one batch that do not decode at all, one by one, after
# which the rest of the batch is dropped unread: a publisher's batch has
# none; each costs an exception.
MAX_UNDECODABLE = 16
# Decoding: strict first (every string valid UTF-8, map keys str or
# bytes, as a publisher packs them); a body that fails is decoded once
# more with invalid UTF-8 escaped (U+DC80..U+DCFF, which valid UTF-8
# never gives), and the fields an event uses are checked for it.
_STRICT = dict(raw=False, strict_map_key=True,
               max_array_len=MAX_BATCH_EVENTS)
_LENIENT = dict(_STRICT, unicode_errors='surrogateescape')
_ESCAPED = re.compile('[\udc80-\udcff]')
_TEXT_FIELDS = ('table', 'key', 'value', 'topic')

# A Packer per native thread: reusing one is cheaper than msgpack.packb(),
# which builds one for each call. Under eventlet the original
# _thread._local is used, shared by the greenthreads of a native thread
# (pack() never yields to the hub): a lookup in the green threading.local
# costs more than building a Packer.
_packers = natives.original('_thread')._local()
_table_labels: Dict[Any, str] = {}


def _packer() -> msgpack.Packer:
    try:
        return _packers.packer
    except AttributeError:
        packer = _packers.packer = msgpack.Packer(use_bin_type=True)
        return packer


def pack_update(update) -> bytes:
    """Pack a ``DbUpdate`` into the wire body, straight from its fields."""
    try:
        pack = _packers.packer.pack
    except AttributeError:
        pack = _packer().pack
    return pack({'table': update.table, 'key': update.key,
                 'action': update.action, 'value': update.value,
                 'topic': update.topic})


def pack_event(event: Mapping[str, Any]) -> bytes:
    """Pack an event dict (``DbUpdate.to_dict()``) into the wire body."""
    get = event.get
    return _packer().pack({'table': get('table'), 'key': get('key'),
                           'action': get('action'), 'value': get('value'),
                           'topic': get('topic')})


def batch_body(bodies: List[bytes]) -> bytes:
    """A msgpack array of packed events: its header and the bodies joined.

    At most ``MAX_BATCH_EVENTS`` bodies.
    """
    count = len(bodies)
    if count < 16:
        head = bytes((0x90 | count,))
    elif count <= MAX_BATCH_EVENTS:
        head = _ARRAY16.pack(0xdc, count)
    else:
        raise ValueError('%d events in one batch, at most %d'
                         % (count, MAX_BATCH_EVENTS))
    return head + b''.join(bodies)


def unpack_event(data: bytes) -> Dict[str, Any]:
    """Decode a single-event body; ``MalformedEvent`` says what is wrong."""
    try:
        event = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:
        raise errors.MalformedEvent('not msgpack: %s' % exc) from None
    if is_event(event):
        return event
    raise errors.MalformedEvent(_problem(event))


def is_event(item) -> bool:
    """True when ``item`` is a map with every field of the type expected.

    ``table`` a str; ``action`` one of ``WIRE_ACTIONS``; ``key`` a str,
    bytes or None; ``value`` and ``topic`` str, bytes or None. Other keys
    are ignored.
    """
    if type(item) is not dict:
        # Subscripting a string would raise, at several times the cost.
        return False
    try:
        return (item['action'] in WIRE_ACTIONS
                and type(item['table']) is str
                and type(item['key']) in _KEY_TYPES
                and type(item['value']) in _DATA_TYPES
                and type(item['topic']) in _DATA_TYPES)
    except (KeyError, TypeError):
        # A missing field, or an unhashable action.
        return False


def _problem(item) -> str:
    if not isinstance(item, dict):
        return 'not a map but %s' % type(item).__name__
    missing = [f for f in EVENT_FIELDS if f not in item]
    if missing:
        return 'missing %s' % ', '.join(missing)
    action = item['action']
    if type(action) is not str:
        return 'action is %s' % type(action).__name__
    if action in CONTROL_ACTIONS:
        return 'action %s never comes from the wire' % action
    if action not in WIRE_ACTIONS:
        return 'unknown action %r' % header_value(action)[:_QUOTED]
    for field, types in (('table', (str,)), ('key', _KEY_TYPES),
                         ('value', _DATA_TYPES), ('topic', _DATA_TYPES)):
        if type(item[field]) not in types:
            return '%s is %s' % (field, type(item[field]).__name__)
    return 'not an event'


def _is_map(first: int) -> bool:
    return 0x80 <= first <= 0x8f or first in (0xde, 0xdf)


def _is_array(first: int) -> bool:
    return 0x90 <= first <= 0x9f or first in (0xdc, 0xdd)


def unpack_events(data: bytes
                  ) -> Tuple[List[Dict[str, Any]], int, Optional[str]]:
    """Decode a message body: a single event or a batch of them.

    Returns ``(events, dropped, problem)``: the good events in order, how
    many were dropped as malformed, and what was wrong with the first one
    dropped. A batch's malformed elements are dropped without their
    neighbours; a body that is neither a map nor an array of at most
    ``MAX_BATCH_EVENTS`` elements counts as one dropped.

    The cost is linear in the body and small whatever it holds (hostile
    input): a batch announcing more elements than its bytes can hold as
    events is dropped whole unread; invalid UTF-8 costs one more decoding
    of the body, not an exception per element; and after
    ``MAX_UNDECODABLE`` elements that do not decode at all the rest of the
    batch is dropped.
    """
    if not data:
        return [], 1, 'empty body'
    first = data[0]
    if _is_map(first):
        try:
            return [unpack_event(data)], 0, None
        except errors.MalformedEvent as exc:
            return [], 1, str(exc)
    if not _is_array(first):
        return [], 1, 'not msgpack: neither a map nor an array'
    count = _array_count(data)
    if count is None:
        return [], 1, 'not msgpack: a cut array header'
    if count > MAX_BATCH_EVENTS:
        return [], 1, 'a batch of %d events, at most %d' % (
            count, MAX_BATCH_EVENTS)
    if count * MIN_ELEMENT_BYTES > len(data):
        return [], count, (
            'a batch of %d elements in %d bytes: too small for events'
            ' (%d bytes each)' % (count, len(data), MIN_EVENT_BYTES))
    try:
        # _STRICT, spelled out: a ** call builds a dict each time.
        items = msgpack.unpackb(data, raw=False, strict_map_key=True,
                                max_array_len=MAX_BATCH_EVENTS)
    except Exception:
        try:
            items = msgpack.unpackb(data, **_LENIENT)
        except Exception:
            return _unpack_batch_slowly(data, count)
        return _sort(items, escaped=True)
    return _sort(items, escaped=False)


def _array_count(data: bytes) -> Optional[int]:
    """The element count of the array header that starts ``data``."""
    first = data[0]
    if first <= 0x9f:
        return first & 0x0f
    try:
        if first == 0xdc:
            return _ARRAY16.unpack_from(data)[1]
        return _ARRAY32.unpack_from(data)[1]
    except struct.error:
        return None


def _sort(items, escaped: bool):
    """The events among a decoded batch's ``items``, and what was dropped.

    ``escaped``: the batch was decoded with invalid UTF-8 escaped, so the
    text fields are checked for it.
    """
    if not items:
        return [], 1, 'empty batch'
    if escaped:
        events = [item for item in items
                  if is_event(item) and _escaped_field(item) is None]
    else:
        events = [item for item in items if is_event(item)]
    dropped = len(items) - len(events)
    if not dropped:
        return events, 0, None
    for item in items:
        # The first one dropped says what was wrong.
        if not is_event(item):
            return events, dropped, 'batch element: ' + _problem(item)
        field = escaped and _escaped_field(item)
        if field:
            return events, dropped, (
                'batch element: %s is not valid UTF-8' % field)


def _escaped_field(event) -> Optional[str]:
    """The first text field of ``event`` holding escaped invalid UTF-8."""
    for field in _TEXT_FIELDS:
        value = event[field]
        if (type(value) is str and not value.isascii()
                and _ESCAPED.search(value)):
            return field
    return None


def _unpack_batch_slowly(data: bytes, count: int):
    # Some element did not decode even leniently: find each element's
    # bytes by skipping (no decoding, so a bad element does not stop it)
    # and decode them one by one, up to MAX_UNDECODABLE failures.
    unpacker = msgpack.Unpacker(max_buffer_size=len(data))
    unpacker.feed(data)
    unpacker.read_array_header()
    events = []
    dropped, problem = 0, None
    undecodable = 0
    for i in range(count):
        start = unpacker.tell()
        try:
            unpacker.skip()
        except Exception as exc:
            dropped += count - i
            problem = problem or 'batch cut at element %d: %s' % (i, exc)
            break
        element = data[start:unpacker.tell()]
        try:
            item = msgpack.unpackb(element, **_LENIENT)
        except Exception as exc:
            dropped += 1
            problem = problem or 'batch element %d: not msgpack: %s' % (
                i, exc)
            undecodable += 1
            if undecodable >= MAX_UNDECODABLE and i + 1 < count:
                dropped += count - i - 1
                problem += ' (and %d more not decoded: the rest of the' \
                    ' batch dropped)' % (undecodable - 1)
                break
            continue
        if is_event(item) and _escaped_field(item) is None:
            events.append(item)
            continue
        dropped += 1
        if problem is None:
            field = _escaped_field(item) if is_event(item) else None
            problem = 'batch element %d: %s' % (i, (
                '%s is not valid UTF-8' % field) if field else _problem(
                    item))
    else:
        if unpacker.tell() != len(data):
            dropped += 1
            problem = problem or '%d bytes after the batch' % (
                len(data) - unpacker.tell())
    return events, dropped, problem


def events_header(count: int, table: Any) -> str:
    """The ``Df-Events`` value: the count, and the table if shared.

    ``table`` is None when the events have no table in common.
    """
    if table is None:
        return str(count)
    try:
        label = _table_labels[type(table), table]
    except KeyError:
        label = (header_value(table) or '').replace(' ', '_')
        if len(_table_labels) >= _MAX_CACHED_HEADERS:
            _table_labels.clear()
        _table_labels[type(table), table] = label
    except TypeError:
        label = (header_value(table) or '').replace(' ', '_')
    return '%d %s' % (count, label) if label else str(count)


def header_value(value: Any) -> Optional[str]:
    """``value`` as printable ASCII of at most 128 characters, or None."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode('utf-8', 'replace')
    text = str(value)
    if not text.isprintable() or not text.isascii():
        text = text.encode('ascii', 'backslashreplace').decode('ascii')
        text = ''.join(c if c.isprintable() else '?' for c in text)
    return text[:_MAX_HEADER_VALUE]
