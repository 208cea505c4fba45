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

"""df-nats' devstack plugin next to Dragonflow's real devstack plugin.

The same harness as test_plugin.py, with Dragonflow's own devstack/ tree
instead of the simulation: DF_NATS_DRAGONFLOW_SRC names one or more
Dragonflow source trees (directories, or sdists such as
dragonflow-4.0.0.tar.gz from PyPI; ``tox -e dragonflow`` downloads that
one), separated by ':'. Dragonflow's plugin.sh, settings, override-defaults,
etcd driver and tools/generate_config_file_samples.sh run as they are
(the sample needs Dragonflow installed, as in ``tox -e dragonflow``). Only
what is not under test is replaced: its ovs_setup.sh (Open vSwitch) by
functions that record their calls, and the df-db, ovs-vsctl and aa-status
commands by scripts that do the same. /etc/neutron paths are moved into
the node's directory.
"""

import os
import shutil
import socket
import tarfile

import pytest

from tests.devstack import harness

SOURCES = [p for p in os.environ.get('DF_NATS_DRAGONFLOW_SRC', '').split(
    os.pathsep) if p]
REQUIRED = os.environ.get('DF_NATS_REQUIRE_DRAGONFLOW') == '1'

_OVS_FUNCTIONS = ('install_ovs', 'init_ovs', 'start_ovs', 'configure_ovs',
                  'cleanup_ovs', 'stop_ovs', 'uninstall_ovs')
_FAKE_COMMANDS = {'df-db': 0, 'ovs-vsctl': 0, 'aa-status': 1}


def _install_dragonflow(source, dest):
    """Dragonflow's source tree at dest (DevStack's $DEST/dragonflow)."""
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    if os.path.isdir(source):
        shutil.copytree(source, dest, symlinks=True)
    else:
        with tarfile.open(source) as tar:
            top = tar.getnames()[0].split('/')[0]
            tar.extractall(os.path.dirname(dest), filter='data')
        os.rename(os.path.join(os.path.dirname(dest), top), dest)
    with open(os.path.join(dest, 'devstack', 'ovs_setup.sh'), 'w') as f:
        f.write('# Replaced by the df-nats harness: OVS is not under test.\n')
        for name in _OVS_FUNCTIONS:
            f.write('function %s {\n    echo "%s" >> $HARNESS_ROOT/calls.log'
                    '\n}\n' % (name, name))
    with open(os.path.join(dest, 'devstack', 'plugin.sh')) as f:
        return '4.0.0' if 'pub_sub_use_multiproc' in f.read() else 'master'


def _prepare(node, source):
    version = _install_dragonflow(source, node.dragonflow_dir)
    bindir = node.path('bin')
    os.makedirs(bindir)
    for command, status in _FAKE_COMMANDS.items():
        path = os.path.join(bindir, command)
        with open(path, 'w') as f:
            f.write('#!/bin/bash\necho "%s $*" >> $HARNESS_ROOT/calls.log\n'
                    'exit %d\n' % (command, status))
        os.chmod(path, 0o755)
    with open(node.path('after-override-defaults'), 'w') as f:
        f.write('DRAGONFLOW_CONF=$NEUTRON_CONF_DIR/dragonflow.ini\n'
                'DRAGONFLOW_PUBLISHER_CONF=$NEUTRON_CONF_DIR/'
                'dragonflow_publisher.ini\n'
                'DRAGONFLOW_DATAPATH=$NEUTRON_CONF_DIR/'
                'dragonflow_datapath_layout.yaml\n'
                'Q_PLUGIN_EXTRA_CONF_PATH=$NEUTRON_CONF_DIR\n')
    return version


@pytest.mark.parametrize('order', sorted(harness.ORDERS))
@pytest.mark.parametrize('source', SOURCES or [None], ids=lambda source: (
    os.path.basename(source.rstrip('/')) if source else 'none'))
def test_real_dragonflow_plugin_starts_controller_on_nats(make_node, tmp_path,
                                                          source, order):
    if source is None:
        if REQUIRED:
            pytest.fail('DF_NATS_DRAGONFLOW_SRC is not set')
        pytest.skip('DF_NATS_DRAGONFLOW_SRC is not set (tox -e dragonflow'
                    ' sets it)')
    port = harness.free_port()
    root = tmp_path / 'node'
    node = make_node(order=order, dragonflow_dir=str(
        root / 'opt' / 'stack' / 'dragonflow'), localrc=[
            # Dragonflow would install neutron, OVS and its database.
            'OFFLINE=True',
            'ENABLED_SERVICES=q-svc,df-controller,df-etcd',
            'DF_NATS_PORT=%d' % port])
    version = _prepare(node, source)
    node.run('stack')

    calls = node.calls()
    assert 'df-db init' in calls, calls
    assert 'configure_ovs' in calls, calls
    url = 'nats://127.0.0.1:%d' % port
    for service in ('df-controller', 'q-svc'):
        snapshot = node.snapshot(service)
        harness.assert_selects_nats(snapshot, version)
        harness.assert_reachable(snapshot, [url])
        # Dragonflow's own configuration is there too: the sample it
        # generated, and what its post-config wrote.
        text = snapshot['text'][node.path('etc', 'neutron',
                                          'dragonflow.ini')]
        assert 'nb_db_class = etcd_nb_db_driver' in text
        assert '#pub_sub_driver = ' in text
    log = node.systemctl()
    assert (log.index('start devstack@df-nats-server.service')
            < log.index('start devstack@df-controller.service'))
    assert not any('df-publisher-service' in line for line in log)

    node.run('unstack')
    assert 'df-db clean' in node.calls()
    with pytest.raises(OSError):
        socket.create_connection(('127.0.0.1', port), timeout=2).close()
