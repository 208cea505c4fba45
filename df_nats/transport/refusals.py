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

"""What the NATS server refused this process, told in words to act on.

A refused connect (credentials, TLS) is explained once; a refused publish
or subscription comes as an asynchronous -ERR on the loop thread: it is
counted, logged at most every few seconds per subject, and handed to the
waiters that asked for it. nats-py lower-cases the server's error lines,
so subjects sent are remembered to name a refusal in its own letter case.
"""

import asyncio
import time
from typing import Callable, Dict, List, Tuple

from df_nats.conf import options
from df_nats.loop import log
from df_nats.transport import client

LOG = log.get_logger(__name__)

# A refused publish is logged as an ERROR at most this often per subject
# (every refusal is counted in stats['permission_denied']).
_DENIED_LOG_INTERVAL = 10.0
# Subjects remembered to name a refused publish in its own letter case
# (nats-py lower-cases the server's error lines).
_MAX_SENT_SUBJECTS = 4096


def explain(conf, exc) -> str:
    """Why a connect failed, in words an operator can act on."""
    if isinstance(exc, client.PlaintextRefused):
        return str(exc)
    if client.is_authorization_error(exc):
        return ('the server refused the credentials (Authorization'
                ' Violation): check [df_nats] %s' % auth_option(conf))
    if isinstance(exc, asyncio.TimeoutError) and not str(exc):
        hint = ''
        if options.tls_wanted(conf) and (
                not conf.tls_handshake_first):
            hint = (' If the server is configured with TLS'
                    ' handshake_first, set [df_nats]'
                    ' tls_handshake_first = true.')
        return ('TimeoutError: no answer from the server within'
                ' connect_timeout (%s s).%s' % (
                    conf.connect_timeout, hint))
    return '%s: %s' % (type(exc).__name__, exc)


def auth_option(conf) -> str:
    """The option(s) holding the credentials a server refused."""
    for name in ('creds_file', 'nkey_seed_file', 'token'):
        if conf[name]:
            return name
    return 'user and password' if conf.user else (
        'user/password, token, nkey_seed_file or creds_file (none is'
        ' set)')


class Refusals:
    """Permission refusals of one connection (loop thread).

    Subscriptions refused since they were asked for, waiters for
    refusals, log pacing, and the subjects sent in their own case.
    """

    def __init__(self, conf, bridge, stats):
        self._registry_bucket = conf.registry_bucket
        self._replay_stream = conf.replay_stream
        self._bridge = bridge
        self.stats = stats
        self.refused_subscriptions = set()
        self._denied_waiters: List[Tuple[Callable[[str, str], bool],
                                         asyncio.Future]] = []
        self._denied_logged: Dict[str, float] = {}
        self._sent_subjects: Dict[str, str] = {}
        # Subjects (lower case) of optional requests whose refusal is an
        # answer, not a fault: logged at DEBUG only.
        self.optional_subjects = set()

    def note_on_loop(self, kind: str, subject: str):
        """Count, log (paced) and hand out a refusal (loop thread)."""
        assert self._bridge.on_loop_thread()
        # nats-py lower-cases the server's error line: name the subject
        # as we know it when we can.
        if kind == 'subscribe':
            if len(self.refused_subscriptions) > _MAX_SENT_SUBJECTS:
                self.refused_subscriptions.clear()
            self.refused_subscriptions.add(subject)
        if subject.startswith(('$js.', '$kv.')):
            subject = client.subject_as_sent(
                subject, self._registry_bucket, self._replay_stream)
        else:
            subject = self._sent_subjects.get(subject, subject)
        self.stats['permission_denied'] += 1
        for predicate, future in list(self._denied_waiters):
            if not future.done() and predicate(kind, subject):
                future.set_result((kind, subject))
        now = time.monotonic()
        key = '%s %s' % (kind, subject.lower())
        if now - self._denied_logged.get(key, -_DENIED_LOG_INTERVAL) < (
                _DENIED_LOG_INTERVAL):
            return
        if len(self._denied_logged) > _MAX_SENT_SUBJECTS:
            self._denied_logged.clear()
        self._denied_logged[key] = now
        log = (LOG.debug if subject.lower() in self.optional_subjects
               else LOG.error)
        log(
            'df-nats: permission denied: the NATS server refused to let'
            ' this user %s to %s%s (%d refusals so far; see the user\'s'
            ' permissions in the server configuration)',
            kind, subject,
            ': what was sent there is lost' if kind == 'publish' else '',
            self.stats['permission_denied'])

    def permission_denied_on_loop(
            self, predicate: Callable[[str, str], bool]) -> asyncio.Future:
        """A future for the next refusal ``predicate(kind, subject)`` takes.

        Loop thread. Its result is ``(kind, subject)``, kind 'publish' or
        'subscribe'; the subject may be lower-cased. Cancel it when done.
        """
        assert self._bridge.on_loop_thread()
        future = self._bridge.loop.create_future()
        entry = (predicate, future)
        self._denied_waiters.append(entry)
        future.add_done_callback(lambda _: self._denied_waiters.remove(entry))
        return future

    def remember_subject_on_loop(self, subject: str):
        """Note a subject as sent, before it may be refused (loop thread)."""
        assert self._bridge.on_loop_thread()
        # To name a refused subject in its own letter case.
        lower = subject.lower()
        if lower not in self._sent_subjects:
            if len(self._sent_subjects) >= _MAX_SENT_SUBJECTS:
                self._sent_subjects.clear()
            self._sent_subjects[lower] = subject
