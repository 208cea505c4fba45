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

"""Shared pytest fixtures: real nats-server processes on 127.0.0.1.

All servers come from df_nats.testing.embedded_server, listen on loopback only
and are stopped (temp dirs removed) when their fixture scope ends.
"""

import asyncio
import os
import time

import nats
from nats.js import errors as js_errors
import pytest

from df_nats.testing.embedded_cluster import NatsCluster
from df_nats.testing.embedded_server import NatsServer

# The publisher registry bucket (the default in
# df_nats/registry/registration.py).
REGISTRY_BUCKET = 'df_publishers'


@pytest.fixture(scope='session')
def nats_server():
    """One JetStream-enabled server shared by the whole session."""
    with NatsServer(jetstream=True) as server:
        yield server


@pytest.fixture
def fresh_nats_server():
    """A private JetStream server per test, free to kill or restart."""
    with NatsServer(jetstream=True) as server:
        yield server


@pytest.fixture
def nats_server_no_js():
    """A private server per test with JetStream disabled."""
    with NatsServer(jetstream=False) as server:
        yield server


@pytest.fixture(scope='module')
def nats_cluster():
    """A 3-node JetStream cluster shared by the tests of one module."""
    with NatsCluster(size=3, jetstream=True) as cluster:
        yield cluster


@pytest.fixture(scope='session')
def tls_files(tmp_path_factory):
    """A test CA with server and client certificates, made at test time
    (paths by name: ca, server_cert, server_key, client_cert, client_key).
    """
    from tests.functional import pki
    return pki.make_pki(str(tmp_path_factory.mktemp('pki')))


@pytest.fixture(scope='session')
def host_tls_files(tmp_path_factory):
    """Like ``tls_files``, but the server certificate names the host
    ``localhost`` only, no IP address, as production certificates do.
    """
    from tests.functional import pki
    return pki.make_pki(str(tmp_path_factory.mktemp('host-pki')),
                        ip_addresses=())


@pytest.fixture(scope='module')
def sample_cluster(host_tls_files):
    """A 3-node TLS cluster from etc/nats-server/df-nats-cluster.conf, as
    shipped but for ports and paths, its certificates naming the host
    ``localhost`` only; ``urls`` are tls://localhost:<port>;
    ``options(role)`` are the [df_nats] credentials of its users and
    ``client_config(role, servers)`` the shipped [df_nats] section of each
    (roles: publisher, controller, watcher, combined, inspector; monitor
    is in the system account).
    """
    from tests.functional import sample_cluster as sample
    with sample.SampleCluster(host_tls_files) as cluster:
        yield cluster


@pytest.fixture(params=['127.0.0.1', 'localhost'])
def nats_url(request, nats_server):
    """The session server's URL, by IP and by the name 'localhost'."""
    if request.param == 'localhost':
        yield nats_server.localhost_url
    else:
        yield nats_server.url


async def _create_registry_bucket(url, timeout=20.0):
    # Right after the cluster forms the meta leader may still reject a
    # replicated placement ("no suitable peers"): retry for a while.
    nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + timeout
        while True:
            try:
                return await js.create_key_value(
                    bucket=REGISTRY_BUCKET, history=1, ttl=10, replicas=3)
            except (js_errors.BadRequestError,
                    js_errors.ServiceUnavailableError,
                    nats.errors.TimeoutError) as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError('cannot create KV bucket %s: %s'
                                       % (REGISTRY_BUCKET, exc)) from exc
                await asyncio.sleep(0.2)
    finally:
        await nc.close()


@pytest.fixture(scope='module')
def failover_cluster_module():
    """A 3-node JetStream cluster with the registry bucket (3 replicas)."""
    with NatsCluster(size=3, jetstream=True, name='df-nats-failover') as c:
        asyncio.run(_create_registry_bucket(c.urls[0]))
        yield c


@pytest.fixture
def failover_cluster(failover_cluster_module):
    """The module's 3-node cluster, free to kill -9, stop and restart
    single nodes (``cluster.nodes[i].kill()/stop()/restart()``,
    ``cluster.node_for(url)``); every node is back and the cluster formed
    again after the test.
    """
    yield failover_cluster_module
    failover_cluster_module.heal()


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'failover: 3-node cluster failover and fork tests'
        ' (run alone with -m failover)')


# tox -e dragonflow sets this: there a test needing Dragonflow fails, not
# skips, when Dragonflow cannot be imported.
REQUIRE_DRAGONFLOW = os.environ.get('DF_NATS_REQUIRE_DRAGONFLOW') == '1'


def dragonflow_missing():
    """Why Dragonflow 4.0.0's db layer cannot be imported, or None."""
    try:
        from dragonflow.db import api_nb  # noqa: F401
        from dragonflow.db.models import l2  # noqa: F401
        from dragonflow.db import pub_sub_api  # noqa: F401
    except Exception as exc:  # any import failure: Dragonflow is unusable
        return '%s: %s' % (type(exc).__name__, exc)
    return None


@pytest.fixture(scope='session')
def dragonflow():
    """Dragonflow's ``pub_sub_api`` module: skip without Dragonflow, except
    under DF_NATS_REQUIRE_DRAGONFLOW=1 (tox -e dragonflow), where it fails.
    """
    problem = dragonflow_missing()
    if problem is not None:
        if REQUIRE_DRAGONFLOW:
            pytest.fail('Dragonflow is required here but cannot be'
                        ' imported: %s' % problem)
        pytest.skip('Dragonflow not installed (tox -e dragonflow): %s'
                    % problem)
    from dragonflow.db import pub_sub_api
    return pub_sub_api
