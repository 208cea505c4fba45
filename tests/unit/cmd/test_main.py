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

"""The ``df-nats`` command line: options checked before anything runs."""

import pytest

from df_nats.cmd import main


def test_stats_options():
    args = main._parser().parse_args(['stats', '--role', 'subscriber',
                                      '--json', '--wait', '0.5',
                                      '--servers', 'nats://127.0.0.1:1'])
    assert (args.role, args.json, args.wait) == ('subscriber', True, 0.5)
    assert args.servers == ['nats://127.0.0.1:1']
    assert main._parser().parse_args(['stats']).wait == 1.0


@pytest.mark.parametrize('argv', [['--wait', '0'], ['--wait', 'soon'],
                                  ['--role', 'controller']])
def test_stats_bad_options_are_named(argv, capsys):
    with pytest.raises(SystemExit):
        main._parser().parse_args(['stats'] + argv)
    assert argv[0] in capsys.readouterr().err
