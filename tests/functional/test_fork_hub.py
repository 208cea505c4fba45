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

"""A process forked under eventlet that keeps its parent's hub.

The hub's epoll is then shared by parent and children, so each gets the
others' wake-ups. oslo.service replaces the hub in its workers; a program
that does not gets a warning naming the fix, and df-nats still works,
because a doorbell woken with nothing to read waits again.
"""

import pytest

from tests.functional import test_driver


@pytest.mark.parametrize('use_hub', [True, False])
def test_forked_children_under_eventlet(nats_server, use_hub, tmp_path):
    proc = test_driver._start(
        'eventlet', 'forked_children_%s_hub' % ('use' if use_hub else 'keep'),
        [nats_server.url], tmp_path, module='process_scenarios')
    test_driver._finish(proc)
    stderr = proc.stderr_text(None)
    warnings = stderr.count("still runs its parent's hub")
    assert warnings == (0 if use_hub else 2), stderr[-3000:]
