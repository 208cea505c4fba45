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

"""Fixture of the devstack harness tests: nodes, stopped afterwards."""

import pytest

from tests.devstack import harness


@pytest.fixture
def make_node(tmp_path):
    """Node factory; every server a node started is stopped afterwards."""
    nodes = []

    def make(name='node', dragonflow='master', order='dragonflow-first',
             localrc=(), plugins=None, extra_dirs=None,
             dragonflow_dir=harness.DRAGONFLOW_SIM):
        node = harness.Node(tmp_path / name, dragonflow,
                            plugins or harness.ORDERS[order], localrc,
                            extra_dirs, dragonflow_dir)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        if node.server_pid():
            node.run('unstack', check=False)
        node.kill_leftovers()
