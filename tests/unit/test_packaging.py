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

"""setup.cfg promises the Python versions the tests run on, no others."""

import configparser
import pathlib
import re

SETUP_CFG = pathlib.Path(__file__).parents[2] / 'setup.cfg'


def test_python_requires_is_the_oldest_tested_version():
    metadata = configparser.ConfigParser()
    metadata.read(SETUP_CFG)
    requires = metadata['metadata']['python_requires'].strip()
    tested = re.findall(r'Programming Language :: Python :: (3\.\d+)$',
                        metadata['metadata']['classifier'], re.M)
    assert tested == ['3.11']
    assert requires == '>=%s' % min(tested, key=lambda v: int(v[2:]))
