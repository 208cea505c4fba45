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

"""The nats-py client df-nats connects with, and what its errors mean.

nats-py upgrades a connection to TLS only when the server's INFO asks for
it: a server (or anything in the path) that leaves ``tls_required`` out
would receive CONNECT, credentials included, in clear. ``GuardedClient``
refuses that: with ``require_tls`` it checks, on every connect and
reconnect, that the socket is TLS before CONNECT is written, and closes it
otherwise.

The helpers below read the server's ``-ERR`` lines that nats-py hands to
the error callback: permission violations (the connection stays up) and
authorization violations (the server closes it).
"""

import re
from typing import Optional, Tuple

from nats import errors as nats_errors

from df_nats import errors
from df_nats.transport import nats_compat


class PlaintextRefused(errors.DfNatsError, nats_errors.Error):
    """TLS is configured but a server offered none; nothing was sent.

    A ``nats.errors.Error``, so that nats-py counts it as a failed attempt
    and goes on to the next server.
    """

    def __init__(self, server: str):
        self.server = server
        super().__init__()

    def __str__(self):
        return ('server %s does not offer TLS, but TLS is configured'
                ' ([df_nats] tls_* options or a tls:// URL): refused before'
                ' sending CONNECT or any credential' % self.server)


# -ERR 'Permissions Violation for Subscription to "a.b"' (using queue "q")
# -ERR 'Permissions Violation for Publish to "a.b"'; nats-py lower-cases
# the whole line, subject included.
_PERMISSION = re.compile(r'permissions violation for (subscription|publish)'
                         r' (?:to|with reply of) "([^"]*)"', re.IGNORECASE)
_AUTHORIZATION = 'authorization violation'


def permission_violation(exc) -> Optional[Tuple[str, str]]:
    """``('subscribe'|'publish', subject)`` for a permission error."""
    match = _PERMISSION.search(str(exc))
    if match is None:
        return None
    kind = ('subscribe' if match.group(1).lower() == 'subscription'
            else 'publish')
    return kind, match.group(2).lower()


_API_TOKENS = frozenset(('$JS', 'API', '$KV', '_INBOX', 'INFO', 'STREAM',
                         'CONSUMER', 'CREATE', 'UPDATE', 'DELETE', 'DIRECT',
                         'GET', 'MSG', 'FC'))


def subject_as_sent(subject: str, bucket: str, stream: str = '') -> str:
    """A JetStream or KV subject nats-py reported lower-cased, as sent.

    The API tokens are upper case, ``bucket`` is the registry's and
    ``stream`` the capture stream's (``replay_stream``).
    """
    tokens = []
    for token in subject.split('.'):
        if token.upper() in _API_TOKENS:
            token = token.upper()
        elif token == 'kv_' + bucket.lower():
            token = 'KV_' + bucket
        elif token == bucket.lower():
            token = bucket
        elif stream and token == stream.lower():
            token = stream
        tokens.append(token)
    return '.'.join(tokens)


def is_authorization_error(exc) -> bool:
    """True when the server refused the client's credentials."""
    return (isinstance(exc, nats_errors.AuthorizationError)
            or _AUTHORIZATION in str(exc).lower())


class GuardedClient(nats_compat.HookedClient):
    """A nats-py client that never sends CONNECT in clear when TLS is due.

    The check runs where nats-py builds CONNECT (``nats_compat``): after
    the INFO exchange and any TLS upgrade, on the first connect and on
    every reconnect, to configured and to discovered servers alike.
    """

    def __init__(self, require_tls: bool = False):
        if require_tls and not nats_compat.CONNECT_HOOK:
            # The guard would never run: refuse rather than risk CONNECT
            # in clear.
            raise errors.ConnectError(
                'nats-py %s lacks the hook the check that CONNECT goes'
                ' over TLS needs (see df_nats/transport/nats_compat.py):'
                ' install a nats-py release that requirements.txt allows'
                % nats_compat.version())
        super().__init__()
        self.require_tls = require_tls

    def before_connect(self) -> None:
        if self.require_tls and not nats_compat.is_tls(self):
            server = nats_compat.server_name(self)
            # Nothing more goes out on this socket.
            nats_compat.close_socket(self)
            raise PlaintextRefused(server)
