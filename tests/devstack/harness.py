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

"""Helpers of the devstack harness tests: a node, its runs, checks."""

import json
import os
import signal
import socket
import subprocess
import sys

from df_nats.testing import embedded_server

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
RUN_STACK = os.path.join(HERE, 'run_stack.sh')
DRAGONFLOW_SIM = os.path.join(HERE, 'dragonflow_sim')

DRAGONFLOW_VERSIONS = ['master', '4.0.0']
ORDERS = {
    'dragonflow-first': ['dragonflow', 'df-nats'],
    'df-nats-first': ['df-nats', 'dragonflow'],
}


class Node(object):
    """One devstack node: its directory, local.conf, and stack runs."""

    def __init__(self, root, dragonflow, plugins, localrc, extra_dirs=None,
                 dragonflow_dir=DRAGONFLOW_SIM):
        self.root = str(root)
        self.dragonflow = dragonflow
        self.dragonflow_dir = dragonflow_dir
        self.plugins = plugins
        self.extra_dirs = extra_dirs or {}
        os.makedirs(self.root, exist_ok=True)
        # Nothing is cloned: run_stack.sh maps each name to a directory
        # (HARNESS_PLUGIN_DIR_<name>); the URL only says which.
        dirs = dict(self.extra_dirs)
        dirs.update({'dragonflow': dragonflow_dir, 'df-nats': REPO})
        lines = ['enable_plugin %s file://%s' % (p, dirs[p])
                 for p in plugins]
        with open(os.path.join(self.root, 'localrc'), 'w') as f:
            f.write('\n'.join(lines + list(localrc)) + '\n')

    def run(self, action, check=True, timeout=120):
        env = dict(os.environ)
        env.update({
            'HARNESS_PYTHON': sys.executable,
            'HARNESS_PYTHON_BIN_DIR': os.path.dirname(
                embedded_server.find_nats_server()),
            'HARNESS_DRAGONFLOW': self.dragonflow,
            'HARNESS_PLUGIN_DIR_dragonflow': self.dragonflow_dir,
            'HARNESS_PLUGIN_DIR_df_nats': REPO,
        })
        for name, path in self.extra_dirs.items():
            env['HARNESS_PLUGIN_DIR_%s' % name.replace('-', '_')] = path
        proc = subprocess.run(['bash', RUN_STACK, self.root, action],
                              env=env, capture_output=True, text=True,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError('%s failed (%s):\n%s' % (
                action, proc.returncode, proc.stderr[-4000:]))
        return proc

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def snapshot(self, service):
        """What the service would read at its start (probe.py)."""
        with open(self.path('snapshots', service + '.json')) as f:
            return json.load(f)

    def systemctl(self):
        with open(self.path('systemctl.log')) as f:
            return f.read().splitlines()

    def calls(self):
        with open(self.path('calls.log')) as f:
            return f.read().splitlines()

    def server_pid(self):
        pidfile = self.path('systemd-state',
                            'devstack@df-nats-server.service.pid')
        if not os.path.exists(pidfile):
            return None
        with open(pidfile) as f:
            return int(f.read())

    def kill_leftovers(self):
        pid = self.server_pid()
        if pid:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass


def alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def free_port(hosts=('127.0.0.1',)):
    """A port free on every host given (all loopback)."""
    for _ in range(50):
        port = embedded_server.free_port()
        try:
            for host in hosts:
                with socket.socket() as sock:
                    sock.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError('no port free on %s' % (hosts,))


def controller_localrc(port, *more):
    return ['ENABLED_SERVICES=q-svc,df-controller',
            'DF_NATS_PORT=%d' % port] + list(more)


def assert_selects_nats(snapshot, dragonflow):
    """The [df] options of a snapshot select df-nats."""
    assert snapshot['df']['enable_df_pub_sub'] is True, snapshot['df']
    assert snapshot['df']['pub_sub_driver'] == 'nats', snapshot['df']
    if dragonflow == '4.0.0':
        # neutron-server publishes through the multiproc driver when
        # pub_sub_use_multiproc is True: it must be df-nats then.
        df = snapshot['df']
        assert (df['pub_sub_multiproc_driver'] == 'nats'
                or df['pub_sub_use_multiproc'] is False), df


def assert_reachable(snapshot, urls):
    """The snapshot's servers are these URLs and NATS answers on each."""
    assert 'df_nats_error' not in snapshot, snapshot['df_nats_error']
    assert snapshot['df_nats']['servers'] == urls
    for url in urls:
        info = snapshot['greetings'][url]
        assert isinstance(info, dict), '%s: %s' % (url, info)
        assert info['jetstream'] is True
