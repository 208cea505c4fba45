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

"""A 3-node cluster started from etc/nats-server/df-nats-cluster.conf.

The shipped file is used as it is, but for its addresses and paths: its
listen, monitor and cluster addresses become free loopback ports, its
routes those of the other nodes, its TLS files the test certificates and
its store a temp dir. Every replaced text must occur in the file, so a
change to the sample that these tests cannot follow fails loudly instead
of testing something else. The users' password placeholders become
bcrypt hashes of passwords made for the run, the host whose registry
records the publisher may write becomes this machine; node names reach the
servers through the environment, as the file says.
"""

import json
import os
import secrets

import bcrypt

from df_nats.registry import records
from df_nats.registry import registration
from df_nats.testing import embedded_cluster
from df_nats.testing import embedded_server

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
SAMPLE = os.path.join(ROOT, 'etc', 'nats-server', 'df-nats-cluster.conf')
ROLES = ('publisher', 'controller', 'watcher')
# The host whose records the sample's publisher may write.
SAMPLE_HOST_TOKEN = 'net-1=2Eexample=2Enet'

_ROUTES = ['"nats-route://nats-%d.example.net:6222"' % i for i in (1, 2, 3)]


def _replace(text, old, new, count=None):
    found = text.count(old)
    if not found or (count is not None and found != count):
        raise AssertionError('%s: expected %s occurrence(s) of %r, found %d'
                             % (SAMPLE, count or 'some', old, found))
    return text.replace(old, new)


class SampleNode(embedded_server.NatsServer):
    """One node running the sample configuration."""

    def __init__(self, index, tls_files, hashes, **kwargs):
        self.index = index
        self.tls_files = tls_files
        self.hashes = hashes
        super().__init__(name='nats-%d' % index, jetstream=True,
                         env={'NATS_SERVER_NAME': 'nats-%d' % index},
                         **kwargs)

    def config_text(self):
        with open(SAMPLE) as sample:
            text = sample.read()
        q = json.dumps
        addr = '%s:%%d' % embedded_server.LOOPBACK
        text = _replace(text, '"0.0.0.0:4222"', q(addr % self.client_port), 1)
        text = _replace(text, '"127.0.0.1:8222"',
                        q(addr % self.monitor_port), 1)
        text = _replace(text, '"0.0.0.0:6222"', q(addr % self.cluster_port),
                        1)
        for route, port in zip(_ROUTES, self.route_ports):
            text = _replace(text, route, q('nats-route://' + addr % port), 1)
        for name, path in (('server.pem', 'server_cert'),
                           ('server-key.pem', 'server_key'),
                           ('ca.pem', 'ca')):
            text = _replace(text, q('/etc/nats/tls/' + name),
                            q(self.tls_files[path]), 2)
        for role in ROLES:
            text = _replace(text, q('BCRYPT_HASH_OF_THE_%s_PASSWORD'
                                    % role.upper()), q(self.hashes[role]), 1)
        # The sample's publishing host is this machine.
        text = _replace(text, SAMPLE_HOST_TOKEN,
                        records.host_token(registration.host_name()), 1)
        return _replace(text, '"/var/lib/nats/jetstream"',
                        q(self.store_dir), 1)


class SampleCluster(embedded_cluster.NatsCluster):
    """The sample's 3 nodes; ``passwords[role]`` log each role in."""

    def __init__(self, tls_files):
        self.name = 'dragonflow'
        self.jetstream = True
        self.passwords = {role: secrets.token_urlsafe(16) for role in ROLES}
        # Cost 4: the test's logins stay fast.
        hashes = {role: bcrypt.hashpw(password.encode(), bcrypt.gensalt(
            4, prefix=b'2a')).decode()
            for role, password in self.passwords.items()}
        ports = [embedded_server.free_port() for _ in range(3)]
        self.nodes = []
        for i, port in enumerate(ports):
            node = SampleNode(i + 1, tls_files, hashes,
                              cluster_name='dragonflow', cluster_port=port)
            node.route_ports = ports  # a node's own route is ignored
            self.nodes.append(node)

    def options(self, role):
        """[df_nats] options of a process logging in as ``role``."""
        return {'tls_ca_file': self.nodes[0].tls_files['ca'],
                'user': 'df-' + role, 'password': self.passwords[role]}
