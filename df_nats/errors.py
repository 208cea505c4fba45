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

"""The base of every df-nats exception, and the errors callers see.

``DfNatsError`` catches them all (the few defined next to their layer,
such as the transport's, derive from it too). Each class here also keeps
the builtin parent it had before this base existed (``ValueError``,
``RuntimeError``, ``TimeoutError``), so that code catching those still
does.
"""


class DfNatsError(Exception):
    """Base of the exceptions df-nats raises."""


class ConfigError(DfNatsError, ValueError):
    """A ``[df_nats]`` option has a value df-nats cannot use."""

    def __init__(self, option: str, problem: str):
        self.option = option
        super().__init__('[df_nats] %s: %s' % (option, problem))


class UsageError(DfNatsError, RuntimeError):
    """A df-nats object was used out of order (e.g. before initialize())."""


class ConnectError(DfNatsError, RuntimeError):
    """No NATS server could be reached when the driver started."""


class PublishBufferFull(DfNatsError, RuntimeError):
    """The connection is down and the reconnect buffer is full."""


class EventTooLarge(DfNatsError, ValueError):
    """An event larger than the server accepts in one message."""


class MalformedEvent(DfNatsError, ValueError):
    """A message body that is not a Dragonflow event."""


class BridgeTimeout(DfNatsError, TimeoutError):
    """A call into the loop thread did not finish in time."""


class RegistryUnavailable(DfNatsError, RuntimeError):
    """JetStream cannot be used; the registry is off, pub/sub goes on."""


class SubscribePermissionDenied(DfNatsError, RuntimeError):
    """The server refused a subscription: this user may not subscribe."""

    def __init__(self, subject: str):
        self.subject = subject
        super().__init__(
            'permission denied: the NATS server refused to let this user'
            ' subscribe to %s (see the user\'s "subscribe" permissions in'
            ' the server configuration)' % subject)


class RegistryPermissionDenied(RegistryUnavailable):
    """The server refused a subject the registry needs to this user."""

    def __init__(self, kind: str, subject: str):
        self.kind = kind
        self.subject = subject
        super().__init__(
            'permission denied: the NATS server refused to let this user'
            ' %s to %s, which the publisher registry needs (publish to'
            ' $JS.API.> requests and $KV.<registry_bucket>.>, subscribe to'
            ' _INBOX.>: see the sample server configuration in etc/)'
            % (kind, subject))
