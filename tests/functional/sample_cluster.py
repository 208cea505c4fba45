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

"""A 3-node cluster started from etc/nats-server/df-nats-cluster.conf, and
the [df_nats] sections of etc/nats-server/clients/ that go with it.

The shipped file is used as it is, but for its addresses and paths: its
listen, monitor and cluster addresses become free loopback ports, its
routes those of the other nodes (by the name ``localhost``), its TLS
files the test certificates and its store a temp dir. Every replaced text
must occur in the file, so a change to the sample that these tests cannot
follow fails loudly instead of testing something else. The users'
password placeholders become bcrypt hashes of passwords made for the run;
node names and advertised addresses reach the servers through the
environment, from the shipped nats-server.env.

Certificates name hosts only, no IP address, as production ones do, and
the nodes announce themselves by name (``client_advertise``), so that a
client verifying the server's name can fail over to a node it was not
given. By default every node is ``localhost`` (the one name that
resolves to loopback everywhere without touching /etc/hosts or DNS),
each on its own port. ``PrivateHosts`` gives each node a name of its own
instead (``nats-1.df-nats.test``...), all resolving to 127.0.0.1 in the
processes it wraps only: each runs in a mount namespace of its own
(``unshare --mount``), where a private copy of /etc/hosts with those
names is bind-mounted over /etc/hosts; the machine's own file is never
written, and nothing leaves loopback. That needs root (or the right to
make mount namespaces); ``PrivateHosts.available()`` says whether this
machine allows it.
"""

import configparser
import json
import os
import secrets
import subprocess

import bcrypt

from df_nats.testing import embedded_cluster
from df_nats.testing import embedded_server

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
SAMPLE_DIR = os.path.join(ROOT, 'etc', 'nats-server')
SAMPLE = os.path.join(SAMPLE_DIR, 'df-nats-cluster.conf')
ENV = os.path.join(SAMPLE_DIR, 'nats-server.env')
# The users of the sample: role -> [df_nats] section shipped for it
# (None: no df-nats process uses it).
CLIENTS = {'publisher': 'neutron-server.conf',
           'controller': 'df-local-controller.conf',
           'watcher': 'df-local-controller-watcher.conf',
           'combined': 'combined.conf',
           'inspector': 'inspector.conf',
           'monitor': None}
ROLES = tuple(CLIENTS)
# The one host name of the test certificates.
HOST = 'localhost'
_ROUTES = ['"nats-route://nats-%d.example.net:6222"' % i for i in (1, 2, 3)]
_SHIPPED_SERVERS = ','.join('tls://nats-%d.example.net:4222' % i
                            for i in (1, 2, 3))


class PrivateHosts:
    """Host names of the nodes, resolving to 127.0.0.1 in wrapped
    processes only (see the module's docstring).
    """

    NAMES = ['nats-%d.df-nats.test' % i for i in (1, 2, 3)]
    _SCRIPT = 'mount --bind "$0" /etc/hosts && exec "$@"'

    def __init__(self, directory, names=None):
        self.names = list(names or self.NAMES)
        self.path = os.path.join(directory, 'hosts')
        with open('/etc/hosts') as hosts:
            original = hosts.read()
        with open(self.path, 'w') as out:
            out.write(original.rstrip('\n') + '\n%s %s\n' % (
                embedded_server.LOOPBACK, ' '.join(self.names)))

    @property
    def wrapper(self):
        """The command to run a process under, before its own."""
        return ['unshare', '--mount', '--', 'sh', '-c', self._SCRIPT,
                self.path]

    def available(self):
        """'' when a wrapped process resolves the names to 127.0.0.1,
        else why not.
        """
        try:
            proc = subprocess.run(
                self.wrapper + ['getent', 'hosts', self.names[0]],
                capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return str(exc)
        if proc.returncode or embedded_server.LOOPBACK not in proc.stdout:
            return (proc.stderr or proc.stdout).strip() or (
                'exit status %d' % proc.returncode)
        return ''


def _replace(text, old, new, count=None, path=SAMPLE):
    found = text.count(old)
    if not found or (count is not None and found != count):
        raise AssertionError('%s: expected %s occurrence(s) of %r, found %d'
                             % (path, count or 'some', old, found))
    return text.replace(old, new)


class SampleNode(embedded_server.NatsServer):
    """One node running the sample configuration."""

    def __init__(self, index, tls_files, hashes, host=HOST, **kwargs):
        self.index = index
        self.tls_files = tls_files
        self.hashes = hashes
        self.host_name = host
        super().__init__(name='nats-%d' % index, jetstream=True, **kwargs)
        self.env = self._environment()

    def _environment(self):
        """The shipped nats-server.env, for this node."""
        with open(ENV) as shipped:
            text = shipped.read()
        text = _replace(text, '=nats-1.example.net:4222', '=%s:%d' % (
            self.host_name, self.client_port), 1, ENV)
        text = _replace(text, '=nats-1.example.net:6222', '=%s:%d' % (
            self.host_name, self.cluster_port), 1, ENV)
        text = _replace(text, 'NATS_SERVER_NAME=nats-1\n',
                        'NATS_SERVER_NAME=%s\n' % self.name, 1, ENV)
        env = {}
        for line in text.splitlines():
            if line.strip() and not line.startswith('#'):
                name, _, value = line.partition('=')
                env[name] = value
        return env

    @property
    def tls_url(self):
        """This node's URL as clients are told it: its name, TLS."""
        return 'tls://%s:%d' % (self.host_name, self.client_port)

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
        for route, host, port in zip(_ROUTES, self.route_hosts,
                                     self.route_ports):
            text = _replace(text, route,
                            q('nats-route://%s:%d' % (host, port)), 1)
        # This node's own certificate when it has one.
        own = 'cert:' + self.host_name in self.tls_files
        files = {'server.pem': self.tls_files[
            'cert:' + self.host_name if own else 'server_cert'],
            'server-key.pem': self.tls_files[
                'key:' + self.host_name if own else 'server_key'],
            'ca.pem': self.tls_files['ca']}
        for name, path in files.items():
            text = _replace(text, q('/etc/nats/tls/' + name), q(path), 2)
        for role in ROLES:
            text = _replace(text, q('BCRYPT_HASH_OF_THE_%s_PASSWORD'
                                    % role.upper()), q(self.hashes[role]), 1)
        return _replace(text, '"/var/lib/nats/jetstream"',
                        q(self.store_dir), 1)

    def log_text(self):
        try:
            with open(self.log_path, errors='replace') as log:
                return log.read()
        except OSError:
            return ''


class SampleCluster(embedded_cluster.NatsCluster):
    """The sample's 3 nodes; ``passwords[role]`` log each role in."""

    def __init__(self, tls_files, hosts=None):
        """``hosts``: a PrivateHosts naming each node (default: every
        node is localhost).
        """
        self.name = 'dragonflow'
        self.jetstream = True
        self.tls_files = tls_files
        self.wrapper = hosts.wrapper if hosts else []
        names = hosts.names if hosts else [HOST] * 3
        self.passwords = {role: secrets.token_urlsafe(16) for role in ROLES}
        # Cost 4: the test's logins stay fast.
        hashes = {role: bcrypt.hashpw(password.encode(), bcrypt.gensalt(
            4, prefix=b'2a')).decode()
            for role, password in self.passwords.items()}
        ports = [embedded_server.free_port() for _ in range(3)]
        self.nodes = []
        for i, port in enumerate(ports):
            node = SampleNode(i + 1, tls_files, hashes, host=names[i],
                              cluster_name='dragonflow', cluster_port=port,
                              wrapper=self.wrapper)
            # A node's own route is ignored.
            node.route_hosts, node.route_ports = names, ports
            self.nodes.append(node)

    @property
    def urls(self):
        return [node.tls_url for node in self.nodes]

    def options(self, role):
        """[df_nats] credentials, TLS and registry replicas of a process
        logging in as ``role`` (the rest of the shipped section left
        out).
        """
        return {'tls_ca_file': self.tls_files['ca'], 'kv_replicas': 3,
                'user': 'df-' + role, 'password': self.passwords[role]}

    def client_config(self, role, servers):
        """The shipped [df_nats] section of ``role`` as a file's text,
        with ``servers`` (a list of URLs), the test CA and the run's
        password in place of the host names, path and placeholder.
        """
        path = os.path.join(SAMPLE_DIR, 'clients', CLIENTS[role])
        with open(path) as shipped:
            text = shipped.read()
        text = _replace(text, 'servers = ' + _SHIPPED_SERVERS,
                        'servers = ' + ','.join(servers), 1, path)
        text = _replace(text, 'tls_ca_file = /etc/nats/tls/ca.pem',
                        'tls_ca_file = ' + self.tls_files['ca'], 1, path)
        text = _replace(text, 'user = df-%s\n' % role,
                        'user = df-%s\n' % role, 1, path)
        return _replace(text, 'PASSWORD_OF_DF_%s' % role.upper(),
                        self.passwords[role], None, path)

    def client_options(self, role, servers):
        """``client_config`` as a dict of option values (strings)."""
        parser = configparser.ConfigParser(interpolation=None)
        parser.read_string(self.client_config(role, servers))
        return dict(parser['df_nats'])

    def violations(self):
        """The permission violations every node logged."""
        return [line for node in self.nodes
                for line in node.log_text().splitlines()
                if 'Violation' in line]
