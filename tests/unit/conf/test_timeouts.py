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

"""The worst-case blocking time of initialize(), as the docs state it."""

import pathlib
import types

from df_nats.conf import options
from df_nats.conf import timeouts
from df_nats.registry import registration

# The page that states it ("How long a call may block").
PAGE = pathlib.Path(__file__).parents[3] / 'doc' / 'source' / 'design.rst'


class _RecordingBridge:
    """Notes the bound of every call into the loop; runs nothing."""

    def __init__(self):
        self.bounds = []

    def run(self, coro, timeout=None):
        coro.close()
        self.bounds.append(timeout)


def test_registration_waits_at_most_the_named_bound(conf):
    bridge = _RecordingBridge()
    conn = types.SimpleNamespace(conf=options.validate(conf.conf),
                                 bridge=bridge, pid=1)
    registration.Registration(conn).acquire()
    assert bridge.bounds == [timeouts.REGISTER_WAIT
                             + timeouts.REGISTER_GRACE]


def test_the_docs_state_the_worst_case(conf):
    conf_values = options.validate(conf.conf)
    register = timeouts.REGISTER_WAIT + timeouts.REGISTER_GRACE
    worst = conf_values.initial_connect_wait + register
    text = ' '.join(PAGE.read_text().split())
    assert '%g s with the defaults' % worst in text
    assert '%g s when the process is connected already' % register in (
        text)
    assert 'plus %g s for the registration' % register in text
