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

from df_nats.cmd import bench
from df_nats.cmd import main


def test_bench_phases_are_parsed_in_the_given_order():
    args = main._parser().parse_args(['bench', '--phases',
                                      'latency, one-process'])
    assert args.phases == ['latency', 'one-process']


def test_bench_runs_every_phase_by_default():
    args = main._parser().parse_args(['bench'])
    assert args.phases is None
    assert bench.PHASES == ('one-process', 'across', 'latency', 'fanout')


@pytest.mark.parametrize('text', ['latncy', 'latency,bogus', ','])
def test_bench_unknown_phase_is_named(text, capsys):
    with pytest.raises(SystemExit):
        main._parser().parse_args(['bench', '--phases', text])
    err = capsys.readouterr().err
    assert '--phases' in err and repr(text) in err
    assert 'one-process,across,latency,fanout' in err


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
