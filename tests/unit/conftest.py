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

"""Unit test fixtures."""

from oslo_config import cfg
from oslo_config import fixture as cfg_fixture
import pytest

from df_nats.conf import options


@pytest.fixture
def conf():
    """A private ConfigOpts with the [df_nats] options, all defaults."""
    fixture = cfg_fixture.Config(cfg.ConfigOpts())
    fixture.setUp()
    fixture.conf.register_opts(options.ALL_OPTS, group=options.GROUP)
    fixture.conf([])
    yield fixture
    fixture.cleanUp()
