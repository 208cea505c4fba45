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

All servers come from df_nats.embedded_server, listen on loopback only
and are stopped (temp dirs removed) when their fixture scope ends.
"""

import pytest

from df_nats.embedded_server import NatsCluster
from df_nats.embedded_server import NatsServer


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


@pytest.fixture(params=['127.0.0.1', 'localhost'])
def nats_url(request, nats_server):
    """The session server's URL, by IP and by the name 'localhost'."""
    if request.param == 'localhost':
        yield nats_server.localhost_url
    else:
        yield nats_server.url
