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

"""Dragonflow 4.0.0's own NbApi over df-nats on a real nats-server, in an
eventlet and a native process (tests/functional/dragonflow_scenarios.py).

Skipped without Dragonflow; ``tox -e dragonflow`` installs it and sets
DF_NATS_REQUIRE_DRAGONFLOW=1, so there they fail instead.
"""

import pytest

from tests.functional import test_driver
from tests.functional import test_listeners

WORLDS = ['eventlet', 'native']
MODULE = 'dragonflow_scenarios'

SCENARIOS = [
    'nb_create_update_delete',
    'nb_selective_topology',
    'nb_recover_callback',
    'nb_sync_after_gap',
    'nb_multiproc_workers',
    'nb_multiproc_other_driver_warns',
]


@pytest.mark.parametrize('world', WORLDS)
@pytest.mark.parametrize('scenario', SCENARIOS)
def test_nb_api(dragonflow, world, scenario, nats_server, tmp_path):
    test_driver._finish(test_driver._start(
        world, scenario, [nats_server.url], tmp_path, module=MODULE))


@pytest.mark.parametrize('world', WORLDS)
def test_nb_api_resyncs_after_server_restart(dragonflow, world,
                                             fresh_nats_server, tmp_path):
    """The sync df-nats delivers after a reconnect reaches the controller
    through NbApi.db_change_callback and its queue, and Dragonflow's Sync
    then brings what the controller missed.
    """
    proc = test_driver._start(world, 'nb_sync_after_reconnect',
                              [fresh_nats_server.url], tmp_path,
                              module=MODULE)
    test_driver._restart_when_asked(proc, fresh_nats_server)


def _answer_connection_gone(proc, server):
    """When the scenario asks, wait until ``server`` no longer lists the
    named client connection (it noticed the process died), then answer.
    """
    name, = test_driver._answer(proc, 'connection-gone')
    test_listeners._wait_connection_gone(server, name)
    proc.send('answer', answer='done')


@pytest.mark.parametrize('world', WORLDS)
@pytest.mark.parametrize('scenario', [
    'nb_listener_port_status',
    'nb_listener_port_status_without_queue_group'])
def test_port_status_to_neutron_listeners(dragonflow, world, scenario,
                                          nats_server, tmp_path):
    """4.0.0's neutron notifier: two neutron-servers (eventlet, native)
    register their listeners; a compute node (``world``) sends port
    statuses to both listener topics, kills the neutron-server of its
    world and goes on. With the listeners' queue group every update is
    handled once, by a live one; without it those addressed to the dead
    one are lost. ``pytest -s`` prints the figures.
    """
    proc = test_driver._start(world, scenario, [nats_server.url], tmp_path,
                              module=MODULE)
    _answer_connection_gone(proc, nats_server)
    out = test_driver._finish(proc)
    figures = [line for line in out.splitlines()
               if line.startswith('figures:')]
    print('\n' + figures[-1])
