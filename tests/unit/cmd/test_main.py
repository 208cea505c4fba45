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
    args = main._parser().parse_args(['stats', '--kind', 'subscriber',
                                      '--json', '--wait', '0.5',
                                      '--servers', 'nats://127.0.0.1:1'])
    assert (args.kind, args.json, args.wait) == ('subscriber', True, 0.5)
    assert args.servers == ['nats://127.0.0.1:1']
    assert main._parser().parse_args(['stats']).wait == 1.0
    assert main._parser().parse_args(['stats']).timeout == 5.0


def test_role_is_the_dragonflow_role_everywhere(capsys):
    for command in ('check', 'exporter', 'publishers', 'stats'):
        args = main.parse_args([command, '--role', 'neutron-server'])
        assert args.role == 'neutron-server'
    # What stats --role meant before --kind: moved, with a note.
    args = main.parse_args(['stats', '--role', 'subscriber'])
    assert (args.role, args.kind) == (None, 'subscriber')
    assert '--kind subscriber' in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main.main(['--version'])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith('df-nats ')


def test_common_flags_on_every_command_that_connects():
    for command in ('check', 'exporter', 'publishers', 'stats', 'tail'):
        args = main._parser().parse_args([
            command, '--servers', 'nats://h:1', '--config-file', 'f',
            '--timeout', '2', '-v', '--debug'])
        assert (args.servers, args.config_file, args.timeout, args.verbose,
                args.debug) == (['nats://h:1'], ['f'], 2.0, True, True)


def test_tail_count_zero_follows_until_interrupted(capsys):
    assert main._parser().parse_args(['tail']).count == 0
    with pytest.raises(SystemExit):
        main._parser().parse_args(['tail', '--count', '-1'])
    with pytest.raises(SystemExit):
        main._parser().parse_args(['tail', '--help'])
    assert '0 (the default) follows until interrupted' in ' '.join(
        capsys.readouterr().out.split())


@pytest.mark.parametrize('argv', [['--wait', '0'], ['--wait', 'soon'],
                                  ['--kind', 'controller'],
                                  ['--timeout', '0']])
def test_stats_bad_options_are_named(argv, capsys):
    with pytest.raises(SystemExit):
        main._parser().parse_args(['stats'] + argv)
    assert argv[0] in capsys.readouterr().err
