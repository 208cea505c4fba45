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

"""Batches on a real nats-server, in an eventlet and a native process.

The scenarios are in tests/functional/batching_scenarios.py.
"""

import pytest

from df_nats.testing.embedded_server import NatsServer
from tests.functional.test_driver import _finish
from tests.functional.test_driver import _start
from tests.functional.test_driver import WORLDS

_MODULE = 'batching_scenarios'


@pytest.fixture(scope='module')
def small_payload_server():
    """A server that accepts messages of at most 8 KiB."""
    with NatsServer(jetstream=True, extra_config='max_payload: 8192') as srv:
        yield srv


@pytest.mark.parametrize('world', WORLDS)
@pytest.mark.parametrize('scenario', ['burst_in_order',
                                      'malformed_in_batch',
                                      'oversized_event_refused',
                                      'linger_gathers_what_trickles_in'])
def test_batching(world, scenario, nats_server, tmp_path):
    _finish(_start(world, scenario, [nats_server.url], tmp_path,
                   module=_MODULE))


@pytest.mark.parametrize('world', WORLDS)
def test_max_payload_respected(world, small_payload_server, tmp_path):
    _finish(_start(world, 'small_max_payload',
                   [small_payload_server.url], tmp_path, module=_MODULE))


@pytest.mark.parametrize('world', WORLDS)
def test_burst_of_200000_not_cut_as_slow_consumer(
        world, nats_server, tmp_path):
    _finish(_start(world, 'burst_no_slow_consumer',
                   [nats_server.url], tmp_path, module=_MODULE), timeout=400)
