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

"""Map Dragonflow topics to NATS subjects and back, one to one.

A topic becomes exactly one subject token under ``<prefix>.topic.``, so that
NATS matches it exactly: ``abc`` never receives ``abcd`` (ZeroMQ matched
prefixes) and a topic holding ``*`` or ``>`` is not a wildcard.

The token is the topic's UTF-8 bytes with letters, digits, ``-`` and ``_``
kept as they are and every other byte written ``=XX`` (upper-case hex). The
empty topic is the token ``=``. UUIDs, ``D`` and ``listener_<host>`` thus
stay readable in ``nats sub`` output, and every subject decodes to exactly
one topic.

``str`` and ``bytes`` topics that Dragonflow considers equal (it encodes
topics to UTF-8 before sending) map to the same subject. Bytes that are not
valid UTF-8 round-trip through ``surrogateescape``.

One exception, when ``[df_nats] listener_queue_group`` is on (the
default): every neutron listener topic (``listener_<host>``) maps to the
one shared subject ``<prefix>.listeners``, which subscribers receive as
members of one NATS queue group, so that each port-status update reaches
one live neutron-server (at most once), whichever listener its publisher
picked.
``SubjectMap`` applies this; the module-level functions do not.
"""

import re
from typing import Optional, Union

Topic = Union[str, bytes]

_TOPIC_TOKEN = 'topic'
_LISTENERS_TOKEN = 'listeners'
# Dragonflow's Listener model names its topic 'listener_<id>' (the host).
LISTENER_TOPIC_PREFIX = b'listener_'
# The one queue group of the listeners subject. Queue groups are scoped by
# subject, so deployments with different prefixes never share it.
LISTENER_QUEUE_GROUP = 'df-listeners'
_EMPTY = '='
_SAFE = frozenset(b'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'
                  b'0123456789-_')
_BYTE_TOKEN = tuple(chr(b) if b in _SAFE else '=%02X' % b
                    for b in range(256))
_ESCAPE = re.compile(r'=([0-9A-F]{2})')
_VALID_TOKEN = re.compile(r'^(?:[A-Za-z0-9_-]|=[0-9A-F]{2})+$')


def topic_bytes(topic: Topic) -> bytes:
    """The topic as the bytes that identify it on the wire."""
    if isinstance(topic, bytes):
        return topic
    if isinstance(topic, str):
        return topic.encode('utf-8', 'surrogateescape')
    raise TypeError('a topic is str or bytes, not %s' % type(topic).__name__)


def topic_token(topic: Topic) -> str:
    """The single subject token that stands for ``topic``."""
    raw = topic_bytes(topic)
    if not raw:
        return _EMPTY
    return ''.join([_BYTE_TOKEN[b] for b in raw])


def token_topic(token: str) -> str:
    """The topic a token stands for; ``ValueError`` if it is not one."""
    if token == _EMPTY:
        return ''
    if not _VALID_TOKEN.match(token):
        raise ValueError('%r is not a df-nats topic token' % token)
    raw = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), token)
    return raw.encode('latin-1').decode('utf-8', 'surrogateescape')


def topic_subject(prefix: str, topic: Topic) -> str:
    """The NATS subject that carries ``topic``."""
    return '%s.%s.%s' % (prefix, _TOPIC_TOKEN, topic_token(topic))


def is_listener_topic(topic: Topic) -> bool:
    """True for a neutron listener topic (``listener_<host>``)."""
    return topic_bytes(topic).startswith(LISTENER_TOPIC_PREFIX)


def listeners_subject(prefix: str) -> str:
    """The shared subject of every listener topic, beside the topics."""
    return '%s.%s' % (prefix, _LISTENERS_TOKEN)


def all_topics_subject(prefix: str) -> str:
    """The wildcard subject that matches every topic (for inspection)."""
    return '%s.%s.*' % (prefix, _TOPIC_TOKEN)


def subject_topic(prefix: str, subject: str) -> str:
    """The topic carried by ``subject``; ``ValueError`` if it carries none."""
    head = '%s.%s.' % (prefix, _TOPIC_TOKEN)
    if not subject.startswith(head):
        raise ValueError('%r is not a topic subject under %r'
                         % (subject, prefix))
    return token_topic(subject[len(head):])


class SubjectMap:
    """Topic-to-subject mapping for one prefix, memoised for the hot path.

    With ``listener_queue_group``, listener topics map to the shared
    ``listeners_subject``, received through ``queue_group()``.

    Dragonflow publishes to a small, slowly changing set of topics (the
    send-all topic, tenants, listeners), so the cache stays small; it is
    bounded all the same.
    """

    _MAX_CACHED = 65536

    def __init__(self, prefix: str, listener_queue_group: bool = False):
        self.prefix = prefix
        self._cache = {}
        self._shared = (listeners_subject(prefix) if listener_queue_group
                        else None)

    def subject(self, topic: Topic) -> str:
        """The subject for ``topic``."""
        try:
            return self._cache[topic]
        except KeyError:
            pass
        if self._shared is not None and is_listener_topic(topic):
            subject = self._shared
        else:
            subject = topic_subject(self.prefix, topic)
        if len(self._cache) >= self._MAX_CACHED:
            self._cache.clear()
        self._cache[topic] = subject
        return subject

    def topic(self, subject: str) -> str:
        """The topic carried by ``subject``.

        ``ValueError`` for the shared listeners subject: it carries many
        topics (each event names its own in its body).
        """
        return subject_topic(self.prefix, subject)

    def is_shared(self, subject: str) -> bool:
        """True for the subject that a queue group shares out."""
        return subject == self._shared

    def queue_group(self, subject: str) -> Optional[str]:
        """The queue group to subscribe ``subject`` in, or None."""
        return LISTENER_QUEUE_GROUP if subject == self._shared else None
