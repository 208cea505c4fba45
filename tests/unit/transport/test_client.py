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

"""What the server's errors mean, and the TLS guard before CONNECT."""

from urllib import parse

from nats.aio import client as nats_client_module
from nats import errors as nats_errors
import pytest

from df_nats import errors
from df_nats.transport import client
from df_nats.transport import nats_compat


@pytest.mark.parametrize('text, expected', [
    ('nats: permissions violation for subscription to "dragonflow.topic.d"',
     ('subscribe', 'dragonflow.topic.d')),
    ('nats: permissions violation for subscription to "dragonflow.listeners"'
     ' using queue "df-listeners"', ('subscribe', 'dragonflow.listeners')),
    ('nats: Permissions Violation for Publish to "$JS.API.INFO"',
     ('publish', '$js.api.info')),
    ('nats: permissions violation for publish with reply of "_inbox.x"',
     ('publish', '_inbox.x')),
    ('nats: stale connection', None),
])
def test_permission_violation(text, expected):
    assert client.permission_violation(
        nats_errors.Error(text)) == expected


def test_authorization_error():
    assert client.is_authorization_error(
        nats_errors.AuthorizationError())
    assert client.is_authorization_error(
        nats_errors.Error("nats: 'Authorization Violation'"))
    assert not client.is_authorization_error(ConnectionResetError())


def test_subject_as_sent():
    assert client.subject_as_sent(
        '$js.api.stream.info.kv_df_publishers', 'df_publishers') == (
            '$JS.API.STREAM.INFO.KV_df_publishers')
    assert client.subject_as_sent('$kv.my_bucket.abc', 'My_Bucket') == (
        '$KV.My_Bucket.abc')
    # The capture stream's requests, as the refusal names them.
    for verb in ('STREAM.INFO', 'STREAM.CREATE', 'STREAM.UPDATE',
                 'DIRECT.GET'):
        assert client.subject_as_sent(
            '$js.api.%s.df_nats_events' % verb.lower(), 'df_publishers',
            'DF_NATS_EVENTS') == '$JS.API.%s.DF_NATS_EVENTS' % verb


class _Writer:
    def __init__(self, tls):
        self._tls = tls

    def get_extra_info(self, name):
        return object() if name == 'ssl_object' and self._tls else None


class _Transport:
    def __init__(self, tls):
        self._io_writer = _Writer(tls)
        self.closed = False

    def close(self):
        self.closed = True


def _client(require_tls, tls):
    guarded = client.GuardedClient(require_tls=require_tls)
    guarded._transport = _Transport(tls)
    guarded._current_server = nats_client_module.Srv(
        parse.urlparse('nats://127.0.0.1:4222'))
    return guarded


def test_connect_refused_in_clear_when_tls_is_required():
    guarded = _client(require_tls=True, tls=False)
    with pytest.raises(client.PlaintextRefused,
                       match='server 127.0.0.1:4222 does not offer TLS'):
        guarded._connect_command()
    assert guarded._transport.closed


@pytest.mark.parametrize('require_tls, tls', [(True, True), (False, False)])
def test_connect_sent_otherwise(require_tls, tls, monkeypatch):
    monkeypatch.setattr(nats_client_module.Client, '_connect_command',
                        lambda self: b'CONNECT {}\r\n')
    guarded = _client(require_tls, tls)
    assert guarded._connect_command().startswith(b'CONNECT ')
    assert not guarded._transport.closed


def test_no_guard_no_start_when_nats_py_lacks_the_hook(monkeypatch):
    # A nats-py without the hook would never run the check: refused at
    # once rather than CONNECT in clear.
    monkeypatch.setattr(nats_compat, 'CONNECT_HOOK', False)
    with pytest.raises(errors.ConnectError, match='install a nats-py'):
        client.GuardedClient(require_tls=True)
    client.GuardedClient(require_tls=False)
