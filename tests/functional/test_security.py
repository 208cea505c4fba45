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

"""TLS enforced and credentials checked, on real nats-servers (and, for
what a client must never send, a fake one), in both worlds.
"""

import json
import os

import nkeys
import pytest

from df_nats.testing.embedded_server import NatsServer
from tests.functional import fake_server
from tests.functional.test_driver import _answer
from tests.functional.test_driver import _finish
from tests.functional.test_driver import _start
from tests.functional.test_driver import WORLDS

_MODULE = 'security_scenarios'
PASSWORD = 'hunter2-secret'


def tls_block(files, extra=''):
    """The nats-server ``tls {}`` block of a server using ``files``."""
    return ('tls {\n  cert_file: %s\n  key_file: %s\n  ca_file: %s\n'
            '  timeout: 2\n%s}\n' % (json.dumps(files['server_cert']),
                                     json.dumps(files['server_key']),
                                     json.dumps(files['ca']), extra))


def user_block(user='df', password=PASSWORD):
    return 'authorization {\n  user: %s\n  password: %s\n}\n' % (
        json.dumps(user), json.dumps(password))


def run_scenario(world, scenario, urls, tmp_path, settings, timeout=120):
    """Run a security scenario; (stdout, stderr) once it passed."""
    with open(os.path.join(str(tmp_path), 'settings.json'), 'w') as out:
        json.dump(settings, out)
    proc = _start(world, scenario, urls, tmp_path, module=_MODULE)
    out, err = finish(proc, timeout)
    print(out)
    return out, err


def finish(proc, timeout=120):
    """(stdout, stderr) of a scenario that passed."""
    return _finish(proc, timeout, with_stderr=True)


def answer(proc, expected, action):
    """Wait for the scenario's request, run ``action``, tell it we are
    done.
    """
    _answer(proc, expected)
    action()
    proc.send('answer', answer='done')


def _no_secret(out, err):
    assert PASSWORD not in out + err


# -- 1. TLS is required when configured ---------------------------------

_TLS_TRIGGERS = {
    'ca_file': lambda files, url: ([url], {'tls_ca_file': files['ca']}),
    'tls_url': lambda files, url: ([url.replace('nats://', 'tls://')],
                                   {'tls_ca_file': files['ca']}),
    'hostname': lambda files, url: ([url], {'tls_hostname': 'localhost'}),
}


@pytest.mark.parametrize('world', WORLDS)
@pytest.mark.parametrize('trigger', sorted(_TLS_TRIGGERS))
def test_tls_configured_never_sends_connect_in_clear(
        world, trigger, tls_files, tmp_path):
    """A server whose INFO leaves tls_required out never receives CONNECT
    (nor the password); the error names the server.
    """
    with fake_server.PlaintextFakeServer() as fake:
        urls, tls = _TLS_TRIGGERS[trigger](tls_files, fake.url)
        settings = {'options': dict(tls, user='df', password=PASSWORD,
                                    initial_connect_wait=2.0),
                    'expect': ['does not offer TLS',
                               'server 127.0.0.1:%d' % fake.port],
                    'forbid': [PASSWORD]}
        out, err = run_scenario(world, 'connect_refused_clearly', urls,
                                tmp_path, settings)
        received = fake.received
        assert fake.connections >= 1
    assert b'CONNECT' not in received and PASSWORD.encode() not in received
    _no_secret(out, err)


@pytest.mark.parametrize('world', WORLDS)
def test_tls_configured_refuses_plaintext_nats_server(
        world, tls_files, tmp_path):
    with NatsServer(jetstream=False, extra_config=user_block()) as server:
        settings = {'options': {'tls_ca_file': tls_files['ca'], 'user': 'df',
                                'password': PASSWORD,
                                'initial_connect_wait': 2.0},
                    'expect': ['does not offer TLS',
                               'server 127.0.0.1:%d' % server.client_port],
                    'forbid': [PASSWORD]}
        out, err = run_scenario(world, 'connect_refused_clearly',
                                [server.url], tmp_path, settings)
        # Attempts were made, and none got as far as authenticating.
        conns = (server.get_json('/connz?state=all&auth=true') or {}).get(
            'connections') or []
        assert conns and not any(c.get('authorized_user') for c in conns)
    _no_secret(out, err)


@pytest.mark.parametrize('world', WORLDS)
def test_tls_kept_on_every_reconnect(world, tls_files, tmp_path):
    """Connected over (mutual) TLS; the server replaced by a plaintext one
    at the same address: every reconnect attempt is refused before
    CONNECT; the TLS server back, the driver reconnects and delivers.
    """
    config = tls_block(tls_files, '  verify: true\n') + user_block()
    with NatsServer(jetstream=True, extra_config=config) as server:
        settings = {'options': {'tls_ca_file': tls_files['ca'],
                                'tls_cert_file': tls_files['client_cert'],
                                'tls_key_file': tls_files['client_key'],
                                'user': 'df', 'password': PASSWORD,
                                'reconnect_time_wait': 0.2,
                                'reconnect_time_wait_max': 0.5}}
        with open(os.path.join(str(tmp_path), 'settings.json'), 'w') as f:
            json.dump(settings, f)
        proc = _start(world, 'tls_kept_across_reconnects', [server.url],
                      tmp_path, module=_MODULE)
        fake = fake_server.PlaintextFakeServer(server.client_port)

        def swap():
            server.stop()
            fake.__enter__()

        def restore():
            fake.__exit__(None, None, None)
            server.start()

        answer(proc, 'swap-to-plaintext', swap)
        answer(proc, 'restore-tls', restore)
        out, err = finish(proc)
    assert fake.connections >= 1
    assert b'CONNECT' not in fake.received
    assert 'does not offer TLS' in err
    _no_secret(out, err)


# -- 10. credentials: clear errors ---------------------------------------

def _seed_file(directory, name, seed=None, mode=0o600):
    seed = seed or nkeys.encode_seed(os.urandom(32),
                                     nkeys.PREFIX_BYTE_USER)
    path = os.path.join(str(directory), name)
    with open(path, 'wb') as out:
        out.write(seed + b'\n')
    os.chmod(path, mode)
    return path, nkeys.from_seed(bytearray(seed)).public_key.decode()


@pytest.fixture(scope='module')
def nkey_server(tmp_path_factory):
    """A server that admits one NKey user."""
    directory = tmp_path_factory.mktemp('nkey')
    seed_path, public = _seed_file(directory, 'good.nk')
    config = 'authorization {\n  users: [{nkey: %s}]\n}\n' % public
    with NatsServer(jetstream=False, extra_config=config) as server:
        server.seed_path = seed_path
        yield server


@pytest.mark.parametrize('world', WORLDS)
def test_wrong_nkey_reports_authorization_violation(
        world, nkey_server, tmp_path):
    wrong, _ = _seed_file(tmp_path, 'wrong.nk')
    settings = {'options': {'nkey_seed_file': wrong,
                            'initial_connect_wait': 2.0},
                'expect': ['Authorization Violation', 'nkey_seed_file'],
                'forbid': ['ConnectionResetError', 'SU']}
    run_scenario(world, 'connect_refused_clearly', [nkey_server.url],
                 tmp_path, settings)


def _creds_file(directory, jwt, seed):
    path = os.path.join(str(directory), 'user.creds')
    with open(path, 'w') as out:
        out.write('-----BEGIN NATS USER JWT-----\n%s\n'
                  '------END NATS USER JWT------\n\n'
                  '-----BEGIN USER NKEY SEED-----\n%s\n'
                  '------END USER NKEY SEED------\n' % (jwt, seed))
    os.chmod(path, 0o600)
    return path


@pytest.mark.parametrize('world', WORLDS)
def test_wrong_jwt_reports_authorization_violation(
        world, nkey_server, tmp_path):
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    # Well formed, signed by nobody the server trusts.
    jwt = 'eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.e30.c2ln'
    creds = _creds_file(tmp_path, jwt, seed.decode())
    settings = {'options': {'creds_file': creds,
                            'initial_connect_wait': 2.0},
                'expect': ['Authorization Violation', 'creds_file'],
                'forbid': ['ConnectionResetError', seed.decode()]}
    run_scenario(world, 'connect_refused_clearly', [nkey_server.url],
                 tmp_path, settings)


@pytest.mark.parametrize('world', WORLDS)
def test_seed_given_as_creds_file_fails_at_start(
        world, nkey_server, tmp_path):
    settings = {'options': {'creds_file': nkey_server.seed_path},
                'expect': ['ConfigError', '[df_nats] creds_file',
                           'nkey_seed_file'],
                'forbid': ['TypeError', 'SU']}
    run_scenario(world, 'connect_refused_clearly', [nkey_server.url],
                 tmp_path, settings)


@pytest.mark.parametrize('world', WORLDS)
def test_group_readable_seed_warned(world, nkey_server, tmp_path):
    """The right seed connects, with a WARNING about the file's mode."""
    with open(nkey_server.seed_path, 'rb') as good:
        seed = good.read().strip()
    path, _ = _seed_file(tmp_path, 'loose.nk', seed=seed, mode=0o640)
    settings = {'options': {'nkey_seed_file': path}}
    out, err = run_scenario(world, 'one_event_nkey', [nkey_server.url],
                            tmp_path, settings)
    assert 'readable by its group or by others (mode 640)' in err, err
    assert seed.decode() not in out + err


@pytest.mark.parametrize('world', WORLDS)
def test_missing_handshake_first_explained(world, tls_files, tmp_path):
    config = tls_block(tls_files, '  handshake_first: true\n')
    with NatsServer(jetstream=False, extra_config=config) as server:
        settings = {'options': {'tls_ca_file': tls_files['ca'],
                                'connect_timeout': 0.5,
                                'initial_connect_wait': 2.0},
                    'expect': ['tls_handshake_first = true']}
        run_scenario(world, 'connect_refused_clearly', [server.url],
                     tmp_path, settings)
