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

"""The capture stream: every topic subject, kept for catch-up.

A JetStream stream (``[df_nats] replay_stream``) holds what publishers
send on ``<prefix>.topic.>`` for ``replay_max_age``, so that a subscriber
that lost messages fetches them (``replay_fetch``) instead of asking
Dragonflow for a full resync. Publishers keep publishing on core NATS:
the stream's servers store what they route, nothing waits for them.

Publishers create the stream, or update the settings df-nats owns on
one found different (an operator's other settings are kept), and never
delete it. Everything here speaks the JetStream API's JSON directly,
which nats-py's stream types do not fully carry (the window's start time).
"""

import calendar
import json
import time
from typing import Optional

from nats import errors as nats_errors

from df_nats import errors
from df_nats.loop import log

LOG = log.get_logger(__name__)

_API = '$JS.API.STREAM.%s.%s'
# JetStream's error codes met here.
ERR_STREAM_NOT_FOUND = 10059
_ERR_NAME_IN_USE = 10058     # exists with another configuration
_ERR_NO_STORAGE = 10047      # the store has no room for max_bytes

# What ensure_on_loop found and did.
CREATED = 'created'
UPDATED = 'updated'
UNCHANGED = 'unchanged'
KEPT = 'kept as found'       # an update was refused: used as it is
NO_JETSTREAM = 'no JetStream'
FAILED = 'failed'

# The settings df-nats owns; the others are the operator's.
_OWNED = ('subjects', 'max_age', 'max_bytes', 'discard', 'allow_direct',
          'num_replicas')


class StreamError(errors.DfNatsError):
    """A JetStream API error answer: its code, err_code and text."""

    def __init__(self, code, err_code, description):
        super().__init__('%s (code %s, err_code %s)' % (
            description, code, err_code))
        self.code = code
        self.err_code = err_code


def subject_filter(prefix: str) -> str:
    """The subjects the stream captures: every topic, not the listeners'."""
    return '%s.topic.>' % prefix


def stream_config(conf, replicas: int) -> dict:
    """The stream's configuration as the JetStream API takes it."""
    return {'name': conf.replay_stream,
            'subjects': [subject_filter(conf.subject_prefix)],
            'retention': 'limits', 'storage': 'file', 'discard': 'old',
            'max_age': conf.replay_max_age * 10 ** 9,
            'max_bytes': conf.replay_max_bytes,
            'num_replicas': replicas, 'allow_direct': True,
            'max_msgs': -1, 'max_consumers': -1,
            # df-nats sets no Nats-Msg-Id (a forger could claim a real
            # message's); the server's default window is 2 min, which
            # may not exceed max_age.
            'duplicate_window': min(120, conf.replay_max_age) * 10 ** 9}


async def api_request_on_loop(nc, verb: str, stream: str, body: dict,
                              timeout: float) -> dict:
    """One JetStream stream API call; its JSON answer (loop thread).

    Raises ``StreamError`` for an error answer, nats-py's
    ``NoRespondersError`` without JetStream, and ``asyncio.TimeoutError``
    (or nats-py's ``TimeoutError``) when JetStream is silent.
    """
    payload = json.dumps(body).encode() if body else b''
    msg = await nc.request(_API % (verb, stream), payload, timeout=timeout)
    try:
        answer = json.loads(msg.data)
    except ValueError:
        raise StreamError(None, None, 'not JSON') from None
    if not isinstance(answer, dict):
        raise StreamError(None, None, 'not a JSON object')
    error = answer.get('error')
    if error:
        if not isinstance(error, dict):
            error = {}
        raise StreamError(error.get('code'), error.get('err_code'),
                          str(error.get('description', ''))[:200])
    return answer


async def ensure_on_loop(nc, conf, replicas: int, timeout: float,
                         quiet: bool = False) -> str:
    """Create the stream, or bring df-nats' settings of it up to date.

    Loop thread. Returns what was done (``CREATED``, ``UPDATED``...);
    logs a warning for what leaves replay off or degraded (``quiet``: a
    ``FAILED`` at debug level, for an attempt made again).
    """
    failed = LOG.debug if quiet else LOG.warning
    name = conf.replay_stream
    wanted = stream_config(conf, replicas)
    try:
        try:
            info = await api_request_on_loop(nc, 'INFO', name, None, timeout)
        except StreamError as exc:
            if exc.err_code != ERR_STREAM_NOT_FOUND:
                raise
            await api_request_on_loop(nc, 'CREATE', name, wanted, timeout)
            LOG.info('df-nats: created the capture stream %s (%s, %d'
                     ' replica(s))', name, wanted['subjects'][0], replicas)
            return CREATED
        found = info.get('config') or {}
        # Never fewer replicas than found: processes configured apart
        # must not take turns shrinking and growing it.
        wanted['num_replicas'] = max(wanted['num_replicas'],
                                     found.get('num_replicas') or 0)
        if all(found.get(key) == wanted[key] for key in _OWNED):
            return UNCHANGED
        update = dict(found, **{key: wanted[key] for key in _OWNED})
        update['duplicate_window'] = min(
            found.get('duplicate_window') or wanted['duplicate_window'],
            wanted['max_age'])
        try:
            await api_request_on_loop(nc, 'UPDATE', name, update, timeout)
        except StreamError as exc:
            LOG.warning('df-nats: the capture stream %s differs from'
                        ' [df_nats] replay_* and cannot be updated (%s);'
                        ' using it as it is', name, exc)
            return KEPT
        LOG.info('df-nats: updated the capture stream %s to [df_nats]'
                 ' replay_* settings', name)
        return UPDATED
    except nats_errors.NoRespondersError:
        LOG.warning('df-nats: the servers have no JetStream: no capture'
                    ' stream, so a subscriber that loses messages asks for'
                    ' a full resync, as without [df_nats] replay_stream')
        return NO_JETSTREAM
    except StreamError as exc:
        hint = (' (the servers\' JetStream store has no room for'
                ' replay_max_bytes x replicas)'
                if exc.err_code == _ERR_NO_STORAGE else '')
        failed('df-nats: cannot create the capture stream %s: %s%s;'
               ' catch-up falls back to full resyncs until it exists (tried'
               ' again)', name, exc, hint)
        return FAILED
    except Exception as exc:
        failed('df-nats: cannot check the capture stream %s: %s: %s;'
               ' catch-up falls back to full resyncs until it exists (tried'
               ' again)', name, type(exc).__name__, exc)
        return FAILED


def window_start_ns(info: dict) -> Optional[int]:
    """Since when the stream holds everything (ns); None: unknown.

    From its ``created`` time and its ``state``: while nothing was
    removed (its first sequence is 1), everything since it was created;
    otherwise since its oldest message, or, when every message is gone,
    since just after its last one. A catch-up from before that may
    have lost messages.
    """
    created = parse_time_ns(info.get('created'))
    state = info.get('state') or {}
    since = None
    if state.get('messages'):
        if (state.get('first_seq') or 0) > 1:
            since = parse_time_ns(state.get('first_ts'))
    elif state.get('last_seq'):
        stamp = parse_time_ns(state.get('last_ts'))
        since = None if stamp is None else stamp + 1
    if since is None or (created is not None and created > since):
        return created
    return since


def parse_time_ns(stamp) -> Optional[int]:
    """An RFC 3339 UTC time as the servers write it, in ns; None if not."""
    if not isinstance(stamp, str) or not stamp.endswith('Z'):
        return None
    whole, _, fraction = stamp[:-1].partition('.')
    try:
        seconds = calendar.timegm(
            time.strptime(whole, '%Y-%m-%dT%H:%M:%S'))
    except ValueError:
        return None
    digits = (fraction + '000000000')[:9]
    if not digits.isdigit():
        return None
    if seconds < 0:
        return None   # the zero time: nothing stored
    return seconds * 10 ** 9 + int(digits)


def format_time_ns(ns: int) -> str:
    """``ns`` since the epoch as an RFC 3339 UTC time with nanoseconds."""
    seconds, fraction = divmod(ns, 10 ** 9)
    whole = time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))
    return '%s.%09dZ' % (whole, fraction)
