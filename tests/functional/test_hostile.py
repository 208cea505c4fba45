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

"""Hostile publishers on a real nats-server, in both worlds (issues 11,
18 and 19).

The scenarios are in tests/functional/hostile_scenarios.py; the attacker
is a raw nats-py client process (tests/functional/forger.py). Figures are
printed with ``pytest -s``; the fuzz test's as one ``FUZZ {...}`` line.
"""

import json

import pytest

from tests.functional.test_driver import _finish
from tests.functional.test_driver import _start
from tests.functional.test_driver import WORLDS

_MODULE = 'hostile_scenarios'


def _figures(out, prefix):
    return [line for line in out.splitlines() if line.startswith(prefix)]


@pytest.mark.parametrize('world', WORLDS)
@pytest.mark.parametrize('scenario', [
    'forged_jump',             # defect 2
    'control_actions',         # defect 3, actions from the wire
    'forged_gaps_paced',       # defect 3, resyncs paced
    'tracker_blinding',        # defect 4
    'big_headers',             # defect 5, the tracker
    'slow_callback_queue_bounded',  # defect 5, the delivery queue
    'typed_events',            # defect 6
    'forged_next_number',      # issue 18: the duplicate rule
    'slow_batches',            # issue 19, item 4
    'slow_batches_of_events',  # issue 19, item 4
    'tiny_messages_memory',    # issue 19, item 5
])
def test_hostile(world, scenario, nats_server, tmp_path):
    out = _finish(_start(world, scenario, [nats_server.url], tmp_path,
                         module=_MODULE), timeout=400)
    for line in out.splitlines():
        print('%s/%s: %s' % (world, scenario, line))


@pytest.mark.parametrize('world', WORLDS)
def test_fuzz(world, nats_server, tmp_path):
    out = _finish(_start(world, 'fuzz', [nats_server.url], tmp_path,
                         module=_MODULE), timeout=300)
    [line] = _figures(out, 'FUZZ ')
    figures = json.loads(line[len('FUZZ '):])
    print('fuzz/%s: %s' % (world, json.dumps(figures, sort_keys=True)))
    assert figures['syncs'] <= figures['sync_bound']
    assert figures['delivered'] == (figures['valid_events']
                                    + figures['real_events'])
