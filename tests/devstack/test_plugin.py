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

"""df-nats' devstack plugin, run phase by phase next to Dragonflow's.

run_stack.sh runs the plugins' settings and phases as stack.sh,
unstack.sh and clean.sh do, with devstack's functions replaced by
devstack_stubs.sh and systemctl by fake_systemctl (which runs the real
nats-server the plugin starts, on loopback, and records what df-controller
and neutron-server would read at their start, probe.py). Dragonflow's
plugin is simulated (dragonflow_sim/) with the behaviour of its last
commit on master and of 4.0.0, in both plugin orders.
"""

import asyncio
import os
import signal
import socket
import sys
import time

import nats
import pytest

from df_nats.testing.embedded_server import NatsServer
from tests.devstack import harness


@pytest.mark.parametrize('order', sorted(harness.ORDERS))
@pytest.mark.parametrize('dragonflow', harness.DRAGONFLOW_VERSIONS)
def test_controller_reads_nats_at_start(make_node, dragonflow, order):
    port = harness.free_port()
    node = make_node(dragonflow=dragonflow, order=order,
                     localrc=harness.controller_localrc(port))
    node.run('stack')

    # The plugins ran in the order local.conf gave.
    phases = [c.split()[1] for c in node.calls()
              if c.startswith('PHASE:') and c.endswith('post-config')]
    assert phases == harness.ORDERS[order]

    url = 'nats://127.0.0.1:%d' % port
    for service in ('df-controller', 'q-svc'):
        snapshot = node.snapshot(service)
        harness.assert_selects_nats(snapshot, dragonflow)
        harness.assert_reachable(snapshot, [url])
        assert snapshot['df_nats']['kv_replicas'] == 1

    log = node.systemctl()
    assert (log.index('start devstack@df-nats-server.service')
            < log.index('start devstack@df-controller.service'))
    assert not any('df-publisher-service' in line for line in log)
    assert 'setup_develop %s/opt/stack/df-nats extras=server' % node.root \
        in node.calls()
    assert 'define_plugin df-nats' in node.calls()
    assert 'plugin_requires df-nats dragonflow' in node.calls()

    pid = node.server_pid()
    assert harness.alive(pid)
    node.run('unstack')
    assert not harness.alive(pid)
    with pytest.raises(OSError):
        socket.create_connection(('127.0.0.1', port), timeout=2).close()
    assert os.path.isdir(node.path('data', 'nats', 'jetstream'))
    node.run('clean')
    assert not os.path.exists(node.path('data', 'nats'))


@pytest.mark.parametrize('dragonflow', harness.DRAGONFLOW_VERSIONS)
def test_redis_database_keeps_nats_pub_sub(make_node, dragonflow):
    # With the Redis database Dragonflow would select Redis pub/sub and
    # define its own configure_pubsub_service_plugin.
    port = harness.free_port()
    node = make_node(dragonflow=dragonflow, order='df-nats-first',
                     localrc=harness.controller_localrc(port) + [
                         'ENABLED_SERVICES+=,df-redis'])
    node.run('stack')
    snapshot = node.snapshot('df-controller')
    harness.assert_selects_nats(snapshot, dragonflow)
    harness.assert_reachable(snapshot, ['nats://127.0.0.1:%d' % port])


def test_local_conf_pub_sub_false_is_overridden(make_node):
    port = harness.free_port()
    node = make_node(localrc=harness.controller_localrc(
        port, 'DF_PUB_SUB=False', 'PUB_SUB_DRIVER=zmq_pubsub_driver'))
    node.run('stack')
    harness.assert_selects_nats(node.snapshot('df-controller'), 'master')


@pytest.mark.parametrize('dragonflow', harness.DRAGONFLOW_VERSIONS)
def test_publisher_service_is_disabled(make_node, dragonflow):
    port = harness.free_port()
    node = make_node(dragonflow=dragonflow, localrc=harness.controller_localrc(
        port, 'ENABLED_SERVICES+=,df-publisher-service'))
    proc = node.run('stack')
    # The whole warning: devstack's warn prints one argument only.
    assert ('df-nats: df-publisher-service disabled (NATS needs no relay)'
            in proc.stdout), proc.stdout[-3000:]
    assert not os.path.exists(
        node.path('systemd', 'devstack@df-publisher-service.service'))
    harness.assert_selects_nats(node.snapshot('df-controller'), dragonflow)


@pytest.mark.parametrize('service', ['df-zmq-publisher-service',
                                     'df-etcd-pubsub-service'])
def test_other_pub_sub_service_fails_clearly(make_node, service):
    node = make_node(localrc=harness.controller_localrc(
        harness.free_port(), 'ENABLED_SERVICES+=,%s' % service))
    proc = node.run('stack', check=False)
    assert proc.returncode != 0
    assert service in proc.stderr
    assert not os.path.exists(node.path('systemctl.log'))


def test_server_disabled_uses_given_servers(make_node, nats_server):
    node = make_node(localrc=harness.controller_localrc(
        harness.free_port(), 'disable_service df-nats-server',
        'DF_NATS_SERVERS=%s' % nats_server.url))
    started = time.monotonic()
    node.run('stack')
    assert time.monotonic() - started < 30
    assert not os.path.exists(
        node.path('systemd', 'devstack@df-nats-server.service'))
    assert 'setup_develop %s/opt/stack/df-nats extras=' % node.root \
        in node.calls()
    snapshot = node.snapshot('df-controller')
    harness.assert_selects_nats(snapshot, 'master')
    harness.assert_reachable(snapshot, [nats_server.url])
    node.run('unstack')


@pytest.mark.parametrize('dragonflow', harness.DRAGONFLOW_VERSIONS)
def test_compute_node_uses_the_controllers_server(make_node, nats_server,
                                                  dragonflow):
    # A compute node: no neutron-server, so no nats-server either; its
    # SERVICE_HOST is the controller (here the session's server).
    port = int(nats_server.url.rsplit(':', 1)[1])
    node = make_node(dragonflow=dragonflow, localrc=[
        'ENABLED_SERVICES=df-controller', 'HOST_IP=127.0.0.2',
        'SERVICE_HOST=127.0.0.1', 'DF_NATS_PORT=%d' % port])
    node.run('stack')
    assert not os.path.exists(
        node.path('systemd', 'devstack@df-nats-server.service'))
    snapshot = node.snapshot('df-controller')
    harness.assert_selects_nats(snapshot, dragonflow)
    harness.assert_reachable(snapshot, [nats_server.url])


def test_listen_host_sets_the_servers(make_node):
    port = harness.free_port(('127.0.0.2',))
    node = make_node(localrc=harness.controller_localrc(
        port, 'DF_NATS_LISTEN_HOST=127.0.0.2'))
    node.run('stack')
    harness.assert_reachable(node.snapshot('df-controller'),
                             ['nats://127.0.0.2:%d' % port])


@pytest.mark.parametrize('setting, message', [
    ('DF_NATS_KV_REPLICAS=3', 'DF_NATS_KV_REPLICAS=3 needs as many servers'),
    ('DF_NATS_KV_REPLICAS=9', 'DF_NATS_KV_REPLICAS=9: must be 1 to 5'),
    ('DF_NATS_START_SERVER=False', 'DF_NATS_START_SERVER is no longer read'),
    ('DF_NATS_CLUSTER_HOSTS=127.0.0.2,127.0.0.3',
     'DF_NATS_LISTEN_HOST=127.0.0.1 is not one of DF_NATS_CLUSTER_HOSTS'),
])
def test_unusable_settings_fail_clearly(make_node, setting, message):
    node = make_node(localrc=harness.controller_localrc(
        harness.free_port(), setting))
    proc = node.run('stack', check=False)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert node.server_pid() is None


def test_dragonflow_not_selecting_nats_fails_the_stack(make_node, tmp_path):
    # A plugin after df-nats that turns pub/sub off again: Dragonflow then
    # never calls the hook; "stack extra" says so instead of leaving a
    # df-controller without pub/sub.
    late = tmp_path / 'late-plugin'
    (late / 'devstack').mkdir(parents=True)
    (late / 'devstack' / 'settings').write_text('DF_PUB_SUB=False\n')
    node = make_node(plugins=['dragonflow', 'df-nats', 'late'],
                     extra_dirs={'late': str(late)},
                     localrc=harness.controller_localrc(harness.free_port()))
    proc = node.run('stack', check=False)
    assert proc.returncode != 0
    assert "[df] enable_df_pub_sub = 'False', not 'True'" in proc.stderr
    assert node.snapshot('df-controller')['df']['enable_df_pub_sub'] is False


async def _replicated_bucket(urls, deadline):
    """Create a KV bucket with 3 replicas; return its stream's cluster."""
    nc = await nats.connect(urls, connect_timeout=2)
    try:
        js = nc.jetstream(timeout=5)
        while True:
            try:
                await js.create_key_value(bucket='devstack_probe',
                                          replicas=3)
                info = await js.stream_info('KV_devstack_probe')
                return info
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
    finally:
        await nc.close()


def test_three_controllers_form_a_cluster(make_node, dragonflow='master'):
    hosts = ['127.0.0.1', '127.0.0.2', '127.0.0.3']
    port = harness.free_port(hosts)
    cluster_port = harness.free_port(hosts)
    urls = ['nats://%s:%d' % (h, port) for h in hosts]
    nodes = []
    for i, host in enumerate(hosts):
        node = make_node(name='controller%d' % i, dragonflow=dragonflow,
                         localrc=harness.controller_localrc(
                             port, 'HOST_IP=%s' % host,
                             'DF_NATS_SERVER_NAME=controller%d' % i,
                             'DF_NATS_CLUSTER_HOSTS=%s' % ','.join(hosts),
                             'DF_NATS_CLUSTER_PORT=%d' % cluster_port))
        node.run('stack')
        nodes.append(node)

    for node in nodes:
        snapshot = node.snapshot('df-controller')
        harness.assert_selects_nats(snapshot, dragonflow)
        assert snapshot['df_nats']['servers'] == urls
        assert snapshot['df_nats']['kv_replicas'] == 3
    # When the last controller started, all three servers answered, as
    # members of one cluster.
    last = nodes[-1].snapshot('df-controller')
    harness.assert_reachable(last, urls)
    assert {last['greetings'][u]['cluster'] for u in urls} == {'df-nats'}

    info = asyncio.run(_replicated_bucket(urls, time.monotonic() + 30))
    assert info.config.num_replicas == 3
    assert len(info.cluster.replicas) == 2


def test_server_that_cannot_start_fails_the_stack_at_once(make_node):
    # nats-server exits at once (here: a binary that only fails); stack
    # install says so without waiting for DF_NATS_START_TIMEOUT.
    node = make_node(localrc=harness.controller_localrc(
        harness.free_port(), 'DF_NATS_START_TIMEOUT=120',
        'DF_NATS_SERVER_BIN=/bin/false'))
    started = time.monotonic()
    proc = node.run('stack', check=False)
    assert proc.returncode != 0
    assert 'nats-server (devstack@df-nats-server) failed' in proc.stderr
    assert time.monotonic() - started < 60
    assert not os.path.exists(node.path('snapshots', 'df-controller.json'))


def test_foreign_server_on_the_port_fails_the_stack(make_node):
    # Another nats-server (without JetStream) already listens on the
    # port: stack install refuses it before starting ours, instead of
    # letting df-controller and neutron-server talk to it.
    with NatsServer(jetstream=False) as foreign:
        node = make_node(localrc=harness.controller_localrc(
            foreign.client_port))
        proc = node.run('stack', check=False)
        assert proc.returncode != 0
        assert ('port %d on 127.0.0.1 is already in use by a process that'
                ' is not devstack@df-nats-server' % foreign.client_port
                in proc.stderr), proc.stderr[-3000:]
        assert 'start devstack@df-nats-server.service' not in (
            node.systemctl() if os.path.exists(node.path('systemctl.log'))
            else [])
        assert not os.path.exists(node.path('snapshots',
                                            'df-controller.json'))
        assert foreign.is_running()


# A "nats-server" that dies at once while a process outside its unit keeps
# its port: it listens, forks, and the parent (the unit's process) exits.
_TAKEN_PORT = '''#!{python}
import os
import socket
import sys

sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(('127.0.0.1', {port}))
sock.listen(16)
if os.fork():
    sys.exit(1)
os.setsid()
with open({pidfile!r}, 'w') as out:
    out.write(str(os.getpid()))
while True:
    conn, _ = sock.accept()
    conn.close()
'''


def test_port_answering_without_our_unit_fails_the_stack(make_node,
                                                         tmp_path):
    # Once the port answers, the unit must be active: here the unit's
    # process died and another one answers on its port.
    port = harness.free_port()
    pidfile = str(tmp_path / 'listener.pid')
    binary = tmp_path / 'fake-nats-server'
    binary.write_text(_TAKEN_PORT.format(python=sys.executable, port=port,
                                         pidfile=pidfile))
    binary.chmod(0o755)
    node = make_node(localrc=harness.controller_localrc(
        port, 'DF_NATS_SERVER_BIN=%s' % binary))
    try:
        proc = node.run('stack', check=False)
    finally:
        if os.path.exists(pidfile):
            with open(pidfile) as f:
                os.kill(int(f.read()), signal.SIGKILL)
    assert proc.returncode != 0
    assert ('port %d on 127.0.0.1 answers, but nats-server'
            ' (devstack@df-nats-server) is not running' % port
            in proc.stderr), proc.stderr[-3000:]
    assert not os.path.exists(node.path('snapshots', 'df-controller.json'))


def test_cluster_hosts_with_spaces(make_node):
    # 'a, b, c' is the list 'a,b,c' for the membership check too, as for
    # the loops that write the routes and the servers.
    hosts = ['127.0.0.1', '127.0.0.2', '127.0.0.3']
    port = harness.free_port(hosts)
    cluster_port = harness.free_port(hosts)
    # This node is the second: after a space.
    node = make_node(localrc=harness.controller_localrc(
        port, 'HOST_IP=127.0.0.2',
        "DF_NATS_CLUSTER_HOSTS='%s'" % ', '.join(hosts),
        'DF_NATS_CLUSTER_PORT=%d' % cluster_port))
    node.run('stack')
    with open(node.path('data', 'nats', 'nats-server.conf')) as conf:
        text = conf.read()
    for host in hosts:
        assert '"nats-route://%s:%d"' % (host, cluster_port) in text
    snapshot = node.snapshot('df-controller')
    assert snapshot['df_nats']['servers'] == [
        'nats://%s:%d' % (host, port) for host in hosts]
    assert snapshot['df_nats']['kv_replicas'] == 3
