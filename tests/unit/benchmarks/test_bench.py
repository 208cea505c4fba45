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

"""The bench's command line (benchmarks/bench.py): options checked before
anything runs."""

import pytest

from benchmarks import bench


def test_bench_phases_are_parsed_in_the_given_order():
    args = bench._parser().parse_args(['--phases',
                                      'latency, one-process'])
    assert args.phases == ['latency', 'one-process']


def test_bench_runs_every_phase_by_default():
    args = bench._parser().parse_args([])
    assert args.phases is None
    assert bench.PHASES == ('one-process', 'across', 'latency', 'fanout')


@pytest.mark.parametrize('text', ['latncy', 'latency,bogus', ','])
def test_bench_unknown_phase_is_named(text, capsys):
    with pytest.raises(SystemExit):
        bench._parser().parse_args(['--phases', text])
    err = capsys.readouterr().err
    assert '--phases' in err and repr(text) in err
    assert 'one-process,across,latency,fanout' in err
