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

"""The production cluster as shipped, at work.

A 3-node cluster from etc/nats-server/df-nats-cluster.conf (the sample
cluster of tests/functional/sample_cluster.py), whose nodes have names of
their own (``nats-1.df-nats.test``...: sample_cluster.PrivateHosts, every
process here runs with a private /etc/hosts) and certificates of their
own made by the recipe of etc/nats-server/README.rst, each naming its
node and no IP address; and every df-nats role under
its user with the [df_nats] section shipped for it in
etc/nats-server/clients/, given ONE server only, so that failing over
means using the servers the cluster announces:

* neutron-server publishes the topology and receives the port status;
* two compute nodes' controllers (one eventlet, one native) receive the
  topology and send port status through the listeners' queue group;
* a host running both (the combined user) does all of it in one process,
  and is the queue group's second member;
* ``df-nats tail``, ``df-nats stats`` and ``df-nats publishers`` look,
  as the inspector;
* the node every process was given is killed: each reconnects to another
  by its announced name, TLS verified, and everything works again.

Not one permission is refused, neither as the processes count it nor as
the servers log it. The system account's monitor and the inspector answer
what ``nats server report``, ``nats micro`` and ``nats kv`` ask.
"""

import asyncio
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
from urllib import parse

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
import nats
import pytest

from df_nats.testing.worker_process import child_env
from df_nats.testing.worker_process import WorkerProcess
from tests.functional import sample_cluster as sample
from tests.functional.test_driver import ROOT

RECIPE = os.path.join(sample.SAMPLE_DIR, 'README.rst')

HOSTS = {'neutron': 'net-1', 'combined': 'aio-1'}
LISTENER_TOPICS = ['listener_%s' % HOSTS['neutron'],
                   'listener_%s' % HOSTS['combined']]
TOPOLOGY = 20     # topology events per publisher and round
PORT_STATUS = 20  # port-status updates per compute node and round
# df-nats's log line for a refusal, and the server's error as nats-py words it.
_REFUSAL = re.compile(r'permission denied|permissions violation', re.I)


@pytest.fixture(scope='module')
def hosts(tmp_path_factory):
    """The nodes' names, resolving to 127.0.0.1 in wrapped processes."""
    hosts = sample.PrivateHosts(str(tmp_path_factory.mktemp('hosts')))
    why = hosts.available()
    if why:
        pytest.skip('no private /etc/hosts for the nodes\' names (a mount'
                    ' namespace needs root): %s' % why)
    return hosts


def _recipe():
    """The certificate recipe of etc/nats-server/README.rst (its first
    literal block that makes a CA), as a shell script.
    """
    with open(RECIPE) as readme:
        lines = readme.read().splitlines()
    start = lines.index('    domain=example.net')
    block = []
    for line in lines[start:]:
        if line and not line.startswith('    '):
            break
        block.append(line[4:])
    assert any('openssl req -x509' in line for line in block), block
    return '\n'.join(block) + '\n'


@pytest.fixture(scope='module')
def recipe_files(tmp_path_factory, hosts):
    """Certificates made by the shipped recipe, for the nodes' names."""
    if not shutil.which('openssl'):
        pytest.skip('openssl is not installed: the certificate recipe'
                    ' needs it')
    directory = str(tmp_path_factory.mktemp('recipe'))
    domain = {name.split('.', 1)[1] for name in hosts.names}
    nodes = [name.split('.', 1)[0] for name in hosts.names]
    assert len(domain) == 1 and nodes == ['nats-1', 'nats-2', 'nats-3']
    script = _recipe().replace('domain=example.net\n',
                               'domain=%s\n' % domain.pop(), 1)
    proc = subprocess.run(['sh', '-e', '-c', script], cwd=directory,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    files = {'ca': os.path.join(directory, 'ca.pem')}
    for node, name in zip(nodes, hosts.names):
        files['cert:' + name] = os.path.join(directory, node + '.pem')
        files['key:' + name] = os.path.join(directory, node + '-key.pem')
    return files


@pytest.fixture(scope='module')
def cluster(recipe_files, hosts):
    """The shipped cluster, each node named and certified on its own by
    the shipped recipe.
    """
    with sample.SampleCluster(recipe_files, hosts) as cluster:
        yield cluster


@pytest.fixture
def start(tmp_path, hosts):
    started = []

    def start(world, config, role, host):
        process = WorkerProcess(
            'tests.functional.node_worker', ['--config', config, role, host],
            world=world, label='%s-%s' % (host, world), paths=[ROOT],
            cwd=ROOT, new_session=True, prefix=hosts.wrapper,
            log_path=str(tmp_path / ('%s-%s.log' % (host, world))))
        started.append(process)
        return process
    yield start
    for process in started:
        process.kill()


def _refused(text):
    """Whether TEXT reports a refusal: df-nats's own log line or the
    server's error. (Not the bare word: a traceback through a function
    named after refusals is no refusal.)
    """
    return bool(_REFUSAL.search(text))


def _write_config(cluster, tmp_path, role, servers):
    path = tmp_path / ('%s.conf' % role)
    path.write_text(cluster.client_config(role, servers))
    return str(path)


def _cli(hosts, config, command, *args, timeout=60, retry_for=0,
         until=None):
    """``df-nats COMMAND ARGS --config-file CONFIG``: its stdout, once it
    exited 0 and wrote nothing about a permission. ``retry_for``: seconds
    during which a failure that is not a refusal is retried (JetStream
    electing leaders after a node was lost), and an answer ``until(stdout)``
    does not accept yet.
    """
    argv = [sys.executable, '-m', 'df_nats.cmd.main', command,
            '--config-file', config] + list(args)
    deadline = time.monotonic() + retry_for
    while True:
        proc = subprocess.run(hosts.wrapper + argv, cwd=ROOT,
                              env=child_env([ROOT]), capture_output=True,
                              text=True, timeout=timeout)
        assert not _refused(proc.stderr), proc.stderr[-3000:]
        if time.monotonic() > deadline or proc.returncode == 0 and (
                until is None or until(proc.stdout)):
            break
        time.sleep(1)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    return proc.stdout


def _tail(hosts, config, count, log_path):
    """``df-nats tail --json --count COUNT``, once it listens."""
    log = open(log_path, 'w+')
    argv = [sys.executable, '-m', 'df_nats.cmd.main', 'tail', '--json',
            '--count', str(count), '--config-file', config]
    proc = subprocess.Popen(hosts.wrapper + argv, cwd=ROOT,
                            env=child_env([ROOT]), text=True,
                            stdout=subprocess.PIPE, stderr=log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        log.seek(0)
        if 'df-nats tail: listening on' in log.read():
            return proc, log
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    log.seek(0)
    raise AssertionError('tail did not start: %s' % log.read())


def _handled(processes, kind, field):
    """Every ``kind`` message's ``field`` said so far, by process."""
    return {p: [m[field] for m in p.received() if m.get('type') == kind]
            for p in processes}


def _wait(predicate, what, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, 'timed out waiting for ' + what
        time.sleep(0.1)


def _stats(process):
    return process.call('stats', 'stats')['stats']


def _interest(node, subject):
    """Whether ``node`` has a subscriber to ``subject`` (account
    DRAGONFLOW), its own client's or known through a route.
    """
    local = node.get_json('/subsz?acc=DRAGONFLOW&subs=1&test=' + subject)
    if (local or {}).get('subscriptions_list'):
        return True
    routes = (node.get_json('/routez?subs=1') or {}).get('routes') or ()
    return any(subject in (route.get('subscriptions_list') or ())
               for route in routes)


def _port(url):
    return parse.urlsplit(url).port


def _round(first, neutron, combined, controllers):
    """Topology from both publishers, port status from every compute
    node; every event where it belongs, each port-status update handled
    once by one member of the queue group (which one is the server's
    choice: one on the publisher's node first).
    """
    topology = []
    for publisher in (neutron, combined):
        assert publisher.call('topology', 'sent', n=TOPOLOGY,
                              first=first)['sent']
        topology += ['%s-%d' % (publisher.host, i)
                     for i in range(first, first + TOPOLOGY)]
    port_status = []
    for node in controllers + [combined]:
        assert node.call('port-status', 'sent', n=PORT_STATUS, first=first,
                         topics=LISTENER_TOPICS)['sent']
        port_status += ['%s-p%d' % (node.host, i)
                        for i in range(first, first + PORT_STATUS)]
    receivers = controllers + [combined]

    def received():
        got = _handled(receivers, 'topology', 'k')
        return all(set(topology) <= set(keys) for keys in got.values())
    _wait(received, 'the topology at every controller')
    members = [neutron, combined]

    def handled():
        got = _handled(members, 'handled', 'h')
        return set(port_status) <= set(sum(got.values(), []))
    _wait(handled, 'the port status at neutron-server')
    got = _handled(members, 'handled', 'h')
    every = sum(got.values(), [])
    # Exactly once: no update handled twice, by one member or by both.
    assert len(every) == len(set(every)), got
    # neutron-server receives no topology (its user may not), and the
    # compute nodes no port status.
    assert not _handled([neutron], 'topology', 'k')[neutron]
    for node in controllers:
        assert not _handled([node], 'handled', 'h')[node]
    return topology, port_status


def test_every_role_at_work_and_failover(cluster, hosts, start, tmp_path):
    before = set(cluster.violations())
    given = cluster.urls[:1]   # one server: the others are announced
    configs = {role: _write_config(cluster, tmp_path, role, given)
               for role in ('publisher', 'controller', 'combined',
                            'inspector')}
    neutron = start('eventlet', configs['publisher'], 'neutron-server',
                    HOSTS['neutron'])
    controllers = [start('eventlet', configs['controller'],
                         'df-local-controller', 'cmp-1'),
                   start('native', configs['controller'],
                         'df-local-controller', 'cmp-2')]
    combined = start('native', configs['combined'], 'combined',
                     HOSTS['combined'])
    workers = [neutron, combined] + controllers
    for process in workers:
        process.host = process.expect('ready', timeout=90)['ready']

    # df-nats tail sees every event of the two rounds: the topology on
    # the topics, the port status on the listeners' subject (a copy).
    topology_n = 2 * TOPOLOGY
    port_status_n = 3 * PORT_STATUS
    tail, tail_log = _tail(hosts, configs['inspector'],
                           2 * (topology_n + port_status_n),
                           str(tmp_path / 'tail.log'))
    try:
        topology, port_status = _round(0, neutron, combined, controllers)

        records = json.loads(_cli(hosts, configs['inspector'], 'stats',
                                  '--json', '--wait', '2'))
        by_pid = {int(r['pid']): r for r in records}
        assert set(by_pid) == {p.pid for p in workers}, records
        # Each reply verified against its connection, as the servers
        # see it (the inspector may ask for the account's connections).
        assert {r['trust'] for r in records} == {'verified'}, records
        assert {r['verified_user'] for r in records} <= {
            'df-publisher', 'df-controller', 'df-combined'}, records
        # And df-nats check, under the inspector: all well.
        report = json.loads(_cli(hosts, configs['inspector'], 'check',
                                 '--role', 'tools', '--json',
                                 '--timeout', '20'))
        assert report['exit'] == 0, report
        for node in controllers:
            record = by_pid[node.pid]
            assert record['subscriber']['received'] >= topology_n, record
            assert record['connection']['published'] == PORT_STATUS
        registered = json.loads(_cli(hosts, configs['inspector'], 'publishers',
                                     '--json'))
        # Compute nodes do not register (publisher_registry = false).
        assert {int(r['pid']) for r in registered} == {
            neutron.pid, combined.pid}, registered

        # -- failover to an announced server, by name, TLS verified ------
        first = cluster.nodes[0]
        others = {node.client_port for node in cluster.nodes[1:]}
        first.kill()

        def moved():
            stats = [_stats(p) for p in workers]
            return all(s['connected'] and _port(s['server']) in others
                       for s in stats)
        _wait(moved, 'every process on an announced server')
        for process in workers:
            server = parse.urlsplit(_stats(process)['server'])
            # By the name the node announced, which its certificate
            # covers (the name the process was given is another's).
            assert server.hostname == hosts.names[
                cluster.nodes.index(cluster.node_for(server.geturl()))]
        # The queue group's members subscribed again on their new
        # servers: wait until the routes carried that interest to both,
        # or port status sent meanwhile would find no member.
        _wait(lambda: all(_interest(node, 'dragonflow.listeners')
                          for node in cluster.nodes[1:]),
              'the queue group\'s interest on the surviving nodes')
        more_topology, more_port_status = _round(
            TOPOLOGY, neutron, combined, controllers)

        out, err = tail.communicate(timeout=60)
        tail_log.seek(0)
        tail_err = tail_log.read()
        assert tail.returncode == 0, tail_err[-3000:]
        events = [json.loads(line) for line in out.splitlines()]
        keys = {e['key'] for e in events}
        assert set(topology + more_topology) <= keys
        assert set(port_status + more_port_status) <= keys
        assert {e['subject'] for e in events if e['table'] == 'lport'} == {
            'dragonflow.listeners'}
        assert not _refused(tail_err), tail_err

        # The registry's bucket (3 replicas) elects a leader again if it
        # was on the lost node: JetStream is healthy on both survivors
        # before the registry is read.
        _wait(lambda: all(node.http_get('/healthz')[0] == 200
                          for node in cluster.nodes[1:]),
              'JetStream healthy on the surviving nodes')
        survivor = cluster.nodes[1].tls_url
        records = json.loads(_cli(hosts, configs['inspector'], 'stats',
                                  '--json', '--wait', '2', '--servers',
                                  survivor))
        assert {int(r['pid']) for r in records} == {p.pid for p in workers}
        # A record may have expired meanwhile (publisher_ttl) if no
        # heartbeat could be written while the bucket had no leader: it is
        # back at the next heartbeat.
        expected = {neutron.pid, combined.pid}
        registered = json.loads(_cli(
            hosts, configs['inspector'], 'publishers', '--json', '--servers',
            survivor, retry_for=30, until=lambda out: {
                int(r['pid']) for r in json.loads(out)} == expected))
        assert {int(r['pid']) for r in registered} == expected, registered
    finally:
        if tail.poll() is None:
            tail.kill()
        tail_log.close()
        cluster.heal()

    for process in workers:
        process.send('quit')
        stats = process.expect('closed', timeout=60)['stats']
        assert stats['connection'].get('permission_denied', 0) == 0, stats
        assert stats['connection'].get('reconnects', 0) >= 1, stats
        assert process.wait(30) == 0
        log = process.stderr_text(None)
        assert not _refused(log), log[-3000:]
        for password in cluster.passwords.values():
            assert password not in log
    assert [line for line in cluster.violations()
            if line not in before] == []


def test_names_are_verified(cluster, hosts):
    """Every node announces names, and each certificate covers its own
    node's name only, which TLS checks: a client that failed over to an
    announced server verified it by its announced name.
    """
    node = cluster.nodes[1]
    # The recipe's certificates: the node's name only, server and client.
    for name in hosts.names:
        with open(cluster.tls_files['cert:' + name], 'rb') as pem:
            cert = x509.load_pem_x509_certificate(pem.read())
        sans = cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value
        assert list(sans) == [x509.DNSName(name)]
        usages = cert.extensions.get_extension_for_class(
            x509.ExtendedKeyUsage).value
        assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH,
                               ExtendedKeyUsageOID.CLIENT_AUTH}
    context = ssl.create_default_context(cafile=cluster.tls_files['ca'])

    async def connect(name):
        # This process has no private /etc/hosts: reach the node by
        # address, check its certificate against ``name``.
        nc = await nats.connect(
            'tls://127.0.0.1:%d' % node.client_port, tls=context,
            tls_hostname=name, user='df-inspector',
            password=cluster.passwords['inspector'], allow_reconnect=False,
            connect_timeout=2)
        info = nc._server_info
        await nc.close()
        return info

    info = asyncio.run(connect(hosts.names[1]))
    assert sorted(info['connect_urls']) == sorted(
        '%s:%d' % (n.host_name, n.client_port) for n in cluster.nodes)
    for name in (hosts.names[0], '127.0.0.1'):
        with pytest.raises(Exception) as refused:
            asyncio.run(connect(name))
        assert 'certificate' in repr(refused.value).lower() or (
            isinstance(refused.value, nats.errors.NoServersError)), (
            refused.value)
