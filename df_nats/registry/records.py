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

"""Registry records and their keys: the layout, and what a reader accepts.

Key layout: ``<host token>.<publisher id>``. The host token is the host's
name in lower case with letters, digits, ``-`` and ``_`` kept and every
other byte written ``=XX`` (the topic encoding of ``wire.subjects``), so
``net-1.example.net`` becomes ``net-1=2Eexample=2Enet``: one KV key token
and one subject token, the same for every spelling of a (case-blind) DNS
name, distinct for distinct names. Its point is ownership: the server's
permissions can allow a host's user to write ``$KV.<bucket>.<its
token>.>`` and nothing else of the bucket.

A record is accepted only when its id is the one its own ``process``,
``host`` and ``slot`` give (``publisher_uuid``) and its key is that
host's token and that id: a host that may write only its own keys can
then not speak for another host's publisher. Records are written by
other processes, so reading one is bounded: its size first (before any
parsing), then the type and length of every field; fields unknown here
are not kept.

Keys of one token are the layout of df-nats before this one
(``<publisher id>``): ``parse`` accepts them as *legacy* records, under
the same id check, so that a registry read during a rolling upgrade
still lists the publishers not upgraded yet.
"""

import json
import re
import uuid
from typing import Dict, Optional, Tuple

from df_nats.wire import subjects

# Why a record was not accepted (the watch counts each kind).
MALFORMED = 'malformed'   # not a record, or a field of the wrong type
OVERSIZED = 'oversized'   # longer than registry_max_record_size
FORGED = 'forged'         # its id does not match its key or its fields

# Headers df-nats never writes on a record: a per-message TTL would keep
# a record past the bucket's max age (nats-server honours "never").
_FORBIDDEN_HEADERS = ('Nats-TTL',)

_UUID = re.compile(r'^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-'
                   r'[0-9a-f]{12}$')
# Slots a process name may take on one host (see registration).
MAX_SLOTS = 256
# The longest string kept of each field (a DNS name has at most 253
# characters; a process name is a file name).
_STRINGS = {'id': 36, 'role': 64, 'host': 255, 'process': 255,
            'uri': 512, 'version': 64}
_REQUIRED = ('id', 'role', 'host', 'pid', 'process', 'slot')
_NUMBERS = ('started_at', 'last_activity_timestamp')


def host_token(host: str) -> str:
    """The key token of ``host``: lower case, ``=XX`` for other bytes."""
    return subjects.topic_token(host.lower())


def publisher_uuid(process: str, host: str, slot: int = 0) -> str:
    """The id of ``process`` on ``host``; slot 0 is Dragonflow's own."""
    name = '%s.%s' % (process, host)
    if slot:
        name = '%s.%d' % (name, slot)
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, name))


def key(host: str, publisher_id: str) -> str:
    """The key of ``publisher_id``'s record, written by ``host``."""
    return '%s.%s' % (host_token(host), publisher_id)


def split_key(name: str) -> Tuple[Optional[str], str]:
    """(host token, publisher id) of a key; (None, id) for a legacy key.

    ``ValueError`` for a key of any other shape.
    """
    tokens = name.split('.')
    if len(tokens) == 2 and all(tokens):
        return tokens[0], tokens[1]
    if len(tokens) == 1 and tokens[0]:
        return None, tokens[0]
    raise ValueError('%r is not a registry key' % name)


def _int(value, low, high) -> bool:
    return type(value) is int and low <= value <= high


def decode(value: bytes) -> Optional[Dict]:
    """The fields df-nats knows of a record, or None if it is not one.

    Every field is checked for its type and length; unknown fields are
    dropped, so what is kept is bounded whatever was written. The size
    of ``value`` is the caller's to bound (``parse``) before this.
    """
    try:
        raw = json.loads(value)
    except (TypeError, ValueError, RecursionError):
        return None
    if not isinstance(raw, dict) or not all(f in raw for f in _REQUIRED):
        return None
    record = {}
    for field, longest in _STRINGS.items():
        text = raw.get(field)
        if text is None and field not in _REQUIRED:
            continue
        if not isinstance(text, str) or not 0 < len(text) <= longest:
            return None
        record[field] = text
    if not (_int(raw['pid'], 0, 2 ** 31)
            and _int(raw['slot'], 0, MAX_SLOTS - 1)):
        return None
    record['pid'] = raw['pid']
    record['slot'] = raw['slot']
    for field in _NUMBERS:
        number = raw.get(field)
        if number is None:
            continue
        if type(number) not in (int, float) or number != number:
            return None  # a bool, a string, NaN
        record[field] = number
    if not _UUID.match(record['id']):
        return None
    return record


def parse(name: str, value: bytes, headers, max_size: int
          ) -> Tuple[Optional[Dict], Optional[str]]:
    """(record, None) for an acceptable record under key ``name``, or
    (None, why) with why one of MALFORMED, OVERSIZED, FORGED.

    A legacy record (a key of one token) gets ``legacy: True``.
    """
    if len(value) > max_size:
        return None, OVERSIZED
    if headers and any(h in headers for h in _FORBIDDEN_HEADERS):
        return None, MALFORMED
    try:
        token, publisher_id = split_key(name)
    except ValueError:
        return None, MALFORMED
    record = decode(value)
    if record is None:
        return None, MALFORMED
    expected = publisher_uuid(record['process'], record['host'],
                              record['slot'])
    if publisher_id != record['id'] or record['id'] != expected:
        return None, FORGED
    if token is None:
        record['legacy'] = True
    elif token != host_token(record['host']):
        return None, FORGED
    return record, None
