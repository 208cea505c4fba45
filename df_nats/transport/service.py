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

"""This process as an instance of the NATS service ``df-nats``.

Every df-nats process registers one instance of the service ``df-nats``
with the NATS micro protocol (nats-py's ``nats.micro``) on its
connection, so that ``nats micro ls``, ``nats micro info df-nats``,
``nats micro stats df-nats`` and ``df-nats stats`` list every Dragonflow
process: its role (publisher, subscriber or both), host, pid, publisher
id and df-nats version in the service metadata, and its counters in the
data of the service's one endpoint, ``counters``.

The counters are the ``collections.Counter`` objects the driver keeps
anyway (``Connection.stats``, each running subscriber's ``stats``): they
are read only when somebody asks, so the hot path pays nothing.

Threads: replies are built on the bridge's loop thread, while the
caller's world increments the counters. Each counter is copied with
``dict.copy``, one C call that holds the GIL from start to end, so a copy
never sees a dict changing size under it; no lock is added to the hot
path. The connection's and the subscribers' copies are taken one after
the other, so they may be a few events apart: counters for people, not
an atomic snapshot. The list of subscribers and the metadata change in
the caller's world and on the loop thread respectively and are read as
whole objects (a list copy, a dict of fixed keys whose values are
replaced).

Replies go only to inboxes: a request whose reply subject is not under
``[df_nats] service_inbox_prefix`` (``_INBOX.``) is counted, logged
(throttled) and not answered. Otherwise anyone who may publish on
``$SRV.>`` could make every df-nats process publish its JSON on a topic,
registry or JetStream API subject of its choosing, with the process's
own permissions (and with a server's ``allow_responses``, even where the
process may not publish itself). nats-py's micro service answers on
whatever reply subject it is given: the connection it is handed
(``_InboxOnly``) screens the requests of every subscription it makes.

Permissions: the service subscribes to ``$SRV.>`` subjects and publishes
its replies to the requesters' inboxes (``_INBOX.>``). When the server
refuses the subscriptions, the service logs one warning, unregisters and
leaves the driver alone. A refused reply is counted and logged
(throttled), and nothing more: it says only that one requester could not
be answered (two requests sharing one reply subject under the server's
``allow_responses``, for one), never that the service cannot work.
"""

import asyncio
import collections
import json
import re
import socket
import threading
import time
from typing import Dict, Iterable, List, Mapping, Optional

from nats import micro
from nats.micro import service as micro_service

from df_nats.conf import timeouts
from df_nats.loop import log
from df_nats.transport import connect_args
from df_nats import version
from df_nats.wire import codec

LOG = log.get_logger(__name__)

NAME = 'df-nats'
ENDPOINT = 'counters'
DESCRIPTION = 'Dragonflow pub/sub driver df-nats: one instance per process'
SUBJECT_PREFIX = micro_service.DEFAULT_PREFIX   # $SRV
STATS_RESPONSE_TYPE = micro_service.STATS_RESPONSE_TYPE

ROLES = ('publisher', 'subscriber', 'both', 'none')

# Shown (as 0) before they are first counted, so that every process lists
# the same keys. Other keys the counters hold are shown as well.
CONNECTION_COUNTERS = ('published', 'messages', 'marks', 'resent',
                       'slow_consumer_drops', 'rejected', 'publish_errors',
                       'errors', 'disconnects',
                       'reconnects', 'unsent_at_close',
                       # requests not answered: a reply subject that is
                       # not an inbox; replies the server refused
                       'service_replies_refused', 'service_replies_denied')
SUBSCRIBER_COUNTERS = ('received', 'duplicates', 'gaps', 'missed', 'syncs',
                       'marks', 'malformed', 'callback_errors',
                       # hostile input (README "Hostile publishers")
                       'syncs_suppressed', 'syncs_delayed', 'overflow',
                       'jumps', 'rebaselines', 'late', 'bad_headers',
                       'untracked_streams', 'conflicts', 'over_budget',
                       # resyncs asked for, by cause (delivery.SYNC_CAUSES)
                       'sync_reconnect', 'sync_gap', 'sync_jump',
                       'sync_rebaseline', 'sync_overflow', 'sync_fork',
                       'sync_conflict', 'sync_over_budget', 'sync_other',
                       'sync_no_stream', 'sync_window_passed',
                       'sync_replay_silent', 'sync_replay_limit',
                       'sync_replay_failed', 'sync_hole',
                       'sync_held_overflow', 'sync_slow_consumer',
                       # catch-up from the capture stream (catch_up)
                       'catchup_reconnect', 'catchup_gap',
                       'catchup_slow_consumer', 'catchup_overflow',
                       'catchups_refused', 'replays', 'replay_retries',
                       'replayed', 'held',
                       'replay_untracked',
                       # registry records dropped (publisher_events)
                       'registry_malformed', 'registry_oversized',
                       'registry_forged', 'registry_over_limit')
# The subscribers' gauges (delivery.Delivery.gauges); of these, the ones
# combined by their maximum rather than summed.
DELIVERY_GAUGES = ('queue_messages', 'queue_bytes', 'lag_last_us',
                   'lag_avg_us', 'lag_max_us', 'lag_measured',
                   'lag_ignored', 'last_sync')
_MAX_GAUGES = frozenset(('lag_last_us', 'lag_avg_us', 'lag_max_us',
                         'last_sync'))
# A round trip measured longer ago than this is measured again when
# somebody asks for the counters (seconds).
RTT_REFRESH = 5.0

_LAST_ERROR_CHARS = 300
_URL_USERINFO = re.compile(r'(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@')
_SEMVER = re.compile(r'^(\d+)\.(\d+)\.(\d+)(.*)$')
_PERMISSION_REFUSED = 'permissions violation'
# A reply subject longer than this is no inbox (nats-py's: about 50).
MAX_REPLY_SUBJECT = 256
# Unanswered requests and refused replies: logged at most this often.
_REFUSED_LOG_INTERVAL = 10.0
# Characters of an untrusted reply subject quoted in a log line.
_SHOWN = 64


def semver(version: str) -> str:
    """``version`` as the semantic version the micro protocol demands.

    pbr versions (``0.0.1.dev87``) are not semantic versions: the part
    after the third number becomes a pre-release (``0.0.1-dev87``).
    """
    match = _SEMVER.match(version or '')
    if not match:
        return '0.0.0-unknown'
    rest = re.sub(r'[^0-9A-Za-z.]+', '.', match.group(4)).strip('.')
    # Numeric identifiers without leading zeros, as semver wants them.
    rest = '.'.join(str(int(part)) if part.isdigit() else part
                    for part in rest.split('.') if part)
    core = '.'.join(str(int(match.group(i))) for i in (1, 2, 3))
    return '%s-%s' % (core, rest) if rest else core


def role(publishers: int, subscribers: int) -> str:
    """``publisher``, ``subscriber``, ``both`` or ``none``."""
    if publishers and subscribers:
        return 'both'
    if publishers:
        return 'publisher'
    if subscribers:
        return 'subscriber'
    return 'none'


def endpoint_subject(service_id: str) -> str:
    """The subject of an instance's ``counters`` endpoint.

    Under ``$SRV`` with the control subjects, so that one permission
    (subscribe ``$SRV.>``) covers the whole service.
    """
    return '%s.%s.%s.%s' % (SUBJECT_PREFIX, NAME, ENDPOINT, service_id)


def describe_error(exc: BaseException) -> str:
    """One line for ``last_error``: type and message, URLs redacted."""
    text = '%s: %s' % (type(exc).__name__, exc)
    text = _URL_USERINFO.sub(r'\1***@', ' '.join(text.split()))
    return text[:_LAST_ERROR_CHARS]


def counters(connection_stats: Mapping, subscriber_stats: Iterable[Mapping],
             outbox_events: int, outbox_bytes: int,
             last_error: Optional[str], gauges: Iterable[Mapping] = (),
             link: Optional[Mapping] = None) -> Dict:
    """The data of the ``counters`` endpoint, from copies of the counters.

    The subscribers' counters are summed: a process may run more than one
    subscriber. Their ``gauges`` (``Delivery.gauges``) become the section
    ``delivery``: queue depths and counts summed, the lags and the time
    of the last sync their maximum. ``link`` is the section of that name:
    the server this process is connected to and the round trip to it.
    """
    conn = dict.fromkeys(CONNECTION_COUNTERS, 0)
    conn.update(connection_stats)
    subs = collections.Counter(dict.fromkeys(SUBSCRIBER_COUNTERS, 0))
    for stats in subscriber_stats:
        subs.update(stats)
    delivery = dict.fromkeys(DELIVERY_GAUGES, 0)
    for values in gauges:
        for name, value in values.items():
            if name in _MAX_GAUGES:
                delivery[name] = max(delivery.get(name, 0), value)
            else:
                delivery[name] = delivery.get(name, 0) + value
    return {'connection': conn,
            'subscriber': dict(subs),
            'delivery': delivery,
            'link': dict(link) if link else {'server': '', 'rtt_us': 0},
            'outbox_events': outbox_events,
            'outbox_bytes': outbox_bytes,
            'last_error': last_error or ''}


def metadata(identity: Mapping, publisher_ids: Iterable[str],
             subscribers: int) -> Dict[str, str]:
    """The service metadata: ``identity`` plus role and publisher id.

    Values are strings, as the micro protocol wants them.
    """
    ids = sorted(publisher_ids)
    meta = {key: str(value) for key, value in identity.items()}
    meta['role'] = role(len(ids), subscribers)
    meta['publisher_id'] = ','.join(ids)
    return meta


def refusal(exc: BaseException, inbox_prefix: str,
            service_registered: bool) -> Optional[str]:
    """What the server refused the service in ``exc``, if it did.

    ``'subscribe'``: a subscription to ``$SRV.`` subjects, which the
    service cannot do without. ``'reply'`` (once registered): a reply to
    an inbox, under ``inbox_prefix``; the driver itself never publishes
    there. None for anything else.
    """
    text = str(exc).lower()
    if _PERMISSION_REFUSED not in text:
        return None
    if 'subscription to "%s.' % SUBJECT_PREFIX.lower() in text:
        return 'subscribe'
    if service_registered and (
            'publish to "%s.' % inbox_prefix.lower()) in text:
        return 'reply'
    return None


def is_inbox(reply: Optional[str], inbox_prefix: str) -> bool:
    """True when ``reply`` is a requester's inbox the service may answer.

    Under ``inbox_prefix.``, of plain tokens (no wildcard, no empty one,
    no white space) and not too long.
    """
    if (not reply or len(reply) > MAX_REPLY_SUBJECT
            or not reply.startswith(inbox_prefix + '.')):
        return False
    tokens = reply.split('.')
    return ('*' not in tokens and '>' not in tokens and '' not in tokens
            and not any(c.isspace() for c in reply))


class ProcessService:
    """This process's instance of the NATS service ``df-nats``.

    Lives as long as its connection (``Connection.service``): ``start``
    registers it after every connect, ``stop`` ends it at close. A fork
    child makes a connection of its own, hence a service of its own with
    a new id; the parent's is never touched there. Publishers and
    subscribers join and leave (caller's world), which sets the role.
    """

    def __init__(self, conn, enabled: bool):
        self.enabled = enabled
        self._conn = conn
        self._bridge = conn.bridge
        # Joins and leaves (caller's world, seldom) take the lock; the
        # loop thread reads without it.
        self._lock = threading.Lock()
        self._publisher_ids = collections.Counter()
        self._subscriber_stats: List[collections.Counter] = []
        # (stats, gauges callable) of the subscribers that gave gauges.
        self._subscriber_gauges: List = []
        # The round trip to the server: microseconds, and when measured.
        self._rtt_us = 0
        self._rtt_at = None
        self._rtt_task = None
        self._identity = _identity(conn) if enabled else {}
        # Handed to nats-py, which answers with it: only ever updated in
        # place, on the loop thread.
        self._metadata = metadata(self._identity, (), 0)
        self._last_error: Optional[str] = None
        self._nc = None
        self._service = None
        self._task = None
        self._refused = False
        self._inbox_prefix = (conn.conf.service_inbox_prefix if enabled
                              else '_INBOX')
        self._not_answered = log.Throttled(LOG, _REFUSED_LOG_INTERVAL)
        self._denied = log.Throttled(LOG, _REFUSED_LOG_INTERVAL)
        if enabled:
            conn.add_listener(self._reconnected_on_loop)

    # -- caller's world ----------------------------------------------------
    # The collections are replaced, never changed in place: the loop
    # thread reads whichever one it finds.

    def publisher_joined(self, publisher_id: str):
        """A publisher of this process started, with this registry id."""
        with self._lock:
            ids = collections.Counter(self._publisher_ids)
            ids[publisher_id] += 1
            self._publisher_ids = ids
        self._changed()

    def publisher_left(self, publisher_id: str):
        with self._lock:
            ids = collections.Counter(self._publisher_ids)
            ids[publisher_id] -= 1
            self._publisher_ids = +ids  # without ids counted down to 0
        self._changed()

    def subscriber_joined(self, stats: collections.Counter, gauges=None):
        """A subscriber started; its ``stats`` are summed in the data.

        ``gauges()``, if given, returns its delivery's gauges (queue
        depth, lag, last sync), read when somebody asks.
        """
        with self._lock:
            if not any(s is stats for s in self._subscriber_stats):
                self._subscriber_stats = self._subscriber_stats + [stats]
                if gauges is not None:
                    self._subscriber_gauges = self._subscriber_gauges + [
                        (stats, gauges)]
        self._changed()

    def subscriber_left(self, stats: collections.Counter):
        with self._lock:
            self._subscriber_stats = [s for s in self._subscriber_stats
                                      if s is not stats]
            self._subscriber_gauges = [g for g in self._subscriber_gauges
                                       if g[0] is not stats]
        self._changed()

    def _changed(self):
        if self.enabled:
            self._bridge.call_soon(self._update_metadata_on_loop)

    # -- loop thread ---------------------------------------------------------

    def _update_metadata_on_loop(self):
        assert self._bridge.on_loop_thread()
        self._metadata.update(metadata(
            self._identity, list(self._publisher_ids),
            len(self._subscriber_stats)))

    def snapshot(self) -> Dict:
        """The counters' data now (any thread; see the module's notes)."""
        subscribers = self._subscriber_stats
        return counters(dict.copy(self._conn.stats),
                        [dict.copy(s) for s in subscribers],
                        *self._conn.sender.outbox_load, self._last_error,
                        [gauges() for _, gauges in self._subscriber_gauges],
                        {'server': self._conn.connected_url or '',
                         'rtt_us': self._rtt_us})

    def note_error_on_loop(self, exc: BaseException) -> bool:
        """Record an error of the connection; True if it was the service's.

        Called from the connection's error callback. A refusal by the
        server to let the service subscribe is logged once (here) and
        unregisters the service; a refused reply is counted and logged
        (throttled), and the service goes on; any other error becomes
        ``last_error``.
        """
        assert self._bridge.on_loop_thread()
        kind = self.enabled and refusal(exc, self._inbox_prefix,
                                        self._service is not None)
        if kind == 'reply':
            stats = self._conn.stats
            stats['service_replies_denied'] += 1
            self._denied.warning(
                'df-nats: the server refused a reply of the NATS service'
                ' %s (%s); one requester was not answered, the service'
                ' goes on (%d refused so far). Its user needs permission'
                ' to publish to %s.>', NAME, describe_error(exc),
                stats['service_replies_denied'], self._inbox_prefix)
            return True
        if kind:
            if not self._refused:
                self._refused = True
                LOG.warning(
                    'df-nats: the NATS service %s is not available: the'
                    ' server refused it (%s). It needs permission to'
                    ' subscribe to %s.> and to publish to %s.>;'
                    ' pub/sub goes on without it. Set [df_nats]'
                    ' service_endpoint = False to not try.', NAME, exc,
                    SUBJECT_PREFIX, self._inbox_prefix)
                self._bridge.loop.create_task(self._unregister())
            return True
        self._last_error = describe_error(exc)
        return False

    def start_on_loop(self, nc):
        """Register on ``nc`` in the background (loop thread)."""
        assert self._bridge.on_loop_thread()
        self._nc = nc
        if not self.enabled or self._refused or self._service is not None:
            return
        if self._task is None or self._task.done():
            self._task = self._bridge.loop.create_task(self._register(nc))

    def stop_on_loop(self):
        """Forget the registration before the connection closes (loop).

        Closing the connection ends its subscriptions: unsubscribing each
        first would only cost round trips at close.
        """
        assert self._bridge.on_loop_thread()
        self._nc = None
        self._service = None
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = None

    def _reconnected_on_loop(self):
        # nats-py subscribes again after a reconnect; a registration that
        # failed (the link broke meanwhile) is tried again.
        assert self._bridge.on_loop_thread()
        if self._nc is not None:
            self.start_on_loop(self._nc)

    def _answers_on_loop(self, msg) -> bool:
        """True when the request ``msg`` may be answered (loop thread)."""
        assert self._bridge.on_loop_thread()
        if is_inbox(msg.reply, self._inbox_prefix):
            return True
        stats = self._conn.stats
        stats['service_replies_refused'] += 1
        self._not_answered.warning(
            'df-nats: the NATS service %s did not answer a request on %s:'
            ' its reply subject %r is not under [df_nats]'
            ' service_inbox_prefix %s. (%d not answered so far)', NAME,
            _shown(msg.subject), _shown(msg.reply), self._inbox_prefix,
            stats['service_replies_refused'])
        return False

    async def _register(self, nc):
        self._update_metadata_on_loop()
        config = micro_service.ServiceConfig(
            name=NAME, version=semver(self._identity['df_nats_version']),
            description=DESCRIPTION, metadata=self._metadata,
            stats_handler=self._endpoint_data_on_loop)
        service = micro.Service(_InboxOnly(nc, self._answers_on_loop), config)
        try:
            await service.start()
            await service.add_endpoint(
                name=ENDPOINT, subject=endpoint_subject(service.id),
                handler=self._on_counters_request)
            # The server refuses subscriptions after the fact: past this
            # round trip, a refusal has reached note_error_on_loop. Timed: the
            # first round trip shown.
            started = time.monotonic()
            await nc.flush(timeout=timeouts.CONFIRM)
            self._note_rtt_on_loop(time.monotonic() - started)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            LOG.warning(
                'df-nats: the NATS service %s is not registered (tried'
                ' again after a reconnect): %s', NAME, describe_error(exc))
            await _quietly_stop(service)
            return
        if self._refused:
            await _quietly_stop(service)
            return
        self._service = service
        LOG.info('df-nats: registered as instance %s of the NATS service'
                 ' %s', service.id, NAME)

    async def _unregister(self):
        service, self._service = self._service, None
        if service is not None:
            await _quietly_stop(service)

    def _note_rtt_on_loop(self, seconds):
        assert self._bridge.on_loop_thread()
        self._rtt_us = int(seconds * 1e6)
        self._rtt_at = time.monotonic()

    def _refresh_rtt_on_loop(self):
        # When somebody asks: the answer carries the round trip measured
        # before, and one is measured for the next asker. Nothing is
        # measured while nobody asks.
        assert self._bridge.on_loop_thread()
        nc = self._nc
        if nc is None or (self._rtt_task is not None
                          and not self._rtt_task.done()):
            return
        if (self._rtt_at is not None
                and time.monotonic() - self._rtt_at < RTT_REFRESH):
            return
        self._rtt_task = self._bridge.loop.create_task(self._measure_rtt(nc))

    async def _measure_rtt(self, nc):
        try:
            self._note_rtt_on_loop(await nc.rtt(timeout=timeouts.CONFIRM))
        except Exception:  # nosec: not connected now; shown as it was
            self._rtt_at = time.monotonic()

    def _endpoint_data_on_loop(self, endpoint_stats):
        # nats-py's STATS reply: the data of the endpoint.
        assert self._bridge.on_loop_thread()
        self._refresh_rtt_on_loop()
        return self.snapshot()

    async def _on_counters_request(self, request):
        self._refresh_rtt_on_loop()
        await request.respond(
            json.dumps(self.snapshot(), sort_keys=True).encode())


class _InboxOnly:
    """The connection as nats-py's micro service sees it.

    Every subscription it makes gets a handler that passes on only the
    requests ``answers(msg)`` accepts: nats-py replies on whatever reply
    subject a request names. Everything else is the connection's own.
    """

    def __init__(self, nc, answers):
        self._nc = nc
        self._answers = answers

    def __getattr__(self, name):
        return getattr(self._nc, name)

    async def subscribe(self, subject, queue='', cb=None, **kwargs):
        answers = self._answers

        async def screened(msg):
            if answers(msg):
                await cb(msg)
        return await self._nc.subscribe(subject, queue=queue, cb=screened,
                                        **kwargs)


def _shown(value) -> str:
    """An untrusted subject or message as a log line may quote it."""
    text = codec.header_value(value if value is None else value[:_SHOWN + 1])
    if text is not None and len(text) > _SHOWN:
        return text[:_SHOWN] + '...'
    return text or ''


async def _quietly_stop(service):
    try:
        await asyncio.wait_for(service.stop(), timeouts.CONFIRM)
    except Exception:  # nosec: what is left goes with the connection
        pass


def _identity(conn) -> Dict[str, str]:
    """What does not change in a process: host, pid, names, version."""
    return {'host': socket.gethostname(),
            'pid': str(conn.pid),
            'process': connect_args.process_name(),
            'threads': 'eventlet' if conn.bridge.green else 'native',
            'subject_prefix': conn.conf.subject_prefix,
            'df_nats_version': version.version_string(),
            # Checked by "df-nats stats" against the user the server
            # says the connection has; the Dragonflow role of
            # [df_nats] role, if set (its default is the process name's).
            'user': conn.conf.user or '',
            'registry_role': conn.conf.role or ''}
