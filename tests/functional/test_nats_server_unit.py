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

"""etc/nats-server/nats-server.service: what systemd reads, and what the
server does with the signals the unit sends.

systemd does not run here; ``systemd-analyze verify`` checks the unit as
systemd would load it (when the command is there), and the signals of
``systemctl reload`` (ExecReload) and ``systemctl stop`` (KillSignal) are
sent to a node of the sample cluster, which must reload, and enter lame
duck mode and hand its clients to the other nodes.
"""

import asyncio
import configparser
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time

import nats
import pytest

from df_nats.testing import embedded_server
from tests.functional import sample_cluster as sample

UNIT = os.path.join(sample.SAMPLE_DIR, 'nats-server.service')


def _unit():
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read(UNIT)
    return parser


def _seconds(name):
    """A duration of df-nats-cluster.conf, in seconds."""
    with open(sample.SAMPLE) as conf:
        found = re.search(r'^%s: "(\d+)s"$' % name, conf.read(), re.M)
    assert found, name
    return int(found.group(1))


def _wait(predicate, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, 'timed out waiting for ' + what
        time.sleep(0.05)


def test_unit_says_what_the_server_needs():
    service = _unit()['Service']
    assert service['Type'] == 'simple'
    assert service['ExecStart'].split()[1:] == [
        '--config', '/etc/nats/df-nats-cluster.conf']
    assert service['EnvironmentFile'] == '/etc/nats/nats-server.env'
    assert service['ExecReload'] == '/bin/kill -s HUP $MAINPID'
    assert service['KillSignal'] == 'SIGUSR2'
    # systemd waits for the lame duck to end before it kills the server.
    assert int(service['TimeoutStopSec']) > (
        _seconds('lame_duck_duration') + _seconds('lame_duck_grace_period'))
    assert int(service['LimitNOFILE']) >= 65536
    # The store lives in the unit's state directory.
    with open(sample.SAMPLE) as conf:
        assert 'store_dir: "/var/lib/%s/jetstream"' % (
            service['StateDirectory']) in conf.read()


@pytest.mark.skipif(not shutil.which('systemd-analyze'),
                    reason='systemd-analyze is not installed')
def test_systemd_loads_the_unit(tmp_path):
    """No unknown key, no bad value: systemd-analyze prints nothing."""
    with open(UNIT) as unit:
        text = unit.read()
    # ExecStart must name an executable that exists here.
    text = text.replace('/usr/local/bin/nats-server',
                        embedded_server.find_nats_server())
    path = tmp_path / 'nats-server.service'
    path.write_text(text)
    proc = subprocess.run(['systemd-analyze', 'verify', str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


def _signal(value):
    name = value if value.startswith('SIG') else 'SIG' + value
    return getattr(signal, name)


def test_reload_and_stop_signals(sample_cluster):
    """ExecReload's signal reloads the configuration; KillSignal puts the
    node in lame duck mode: it takes no new client, and after the grace
    period hands its client to another node.
    """
    service = _unit()['Service']
    node = sample_cluster.nodes[2]
    others = {n.client_port for n in sample_cluster.nodes[:2]}
    moved = []

    async def client():
        context = ssl.create_default_context(
            cafile=sample_cluster.tls_files['ca'])

        async def reconnected():
            moved.append(nc.connected_url.port)
        nc = await nats.connect(
            node.tls_url, tls=context, user='df-inspector',
            password=sample_cluster.passwords['inspector'],
            reconnected_cb=reconnected, reconnect_time_wait=0.2,
            connect_timeout=2)
        return nc

    try:
        reload_signal = _signal(service['ExecReload'].split()[2])
        os.kill(node.pid, reload_signal)
        _wait(lambda: 'Reloaded server configuration' in node.log_text(),
              'the reload')
        assert node.is_running()

        async def lame_duck():
            nc = await client()
            os.kill(node.pid, _signal(service['KillSignal']))
            deadline = time.monotonic() + 5
            while 'Entering lame duck mode' not in node.log_text():
                assert time.monotonic() < deadline, node.log_tail()
                await asyncio.sleep(0.05)
            # No new client, and the server is still running.
            await asyncio.sleep(0.5)
            with pytest.raises(OSError):
                socket.create_connection(
                    (embedded_server.LOOPBACK, node.client_port),
                    timeout=2).close()
            assert node.is_running()
            # After the grace period, its client goes to another node.
            deadline = time.monotonic() + _seconds(
                'lame_duck_grace_period') + 20
            while not moved:
                assert time.monotonic() < deadline, node.log_tail()
                await asyncio.sleep(0.1)
            await nc.close()

        asyncio.run(lame_duck())
        assert moved[0] in others
    finally:
        node.kill()
        sample_cluster.heal()
