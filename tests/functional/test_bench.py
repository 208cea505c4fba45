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

"""Smoke test of ``python -m benchmarks.bench --quick``: it runs, and
reports figures.

The plain nats-py row (no headers) is there and is the baseline of the
ratios. A baseline whose server or library is missing (redis-server on a
fresh CI machine) must show up as a skipped row, not as a failure.
"""

import asyncio
import json
import os
import re
import subprocess
import sys

import msgpack

from df_nats.testing import worker_process

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BASELINE = 'plain nats-py'
NATS_ROWS = ('df-nats eventlet', 'df-nats native', BASELINE,
             'nats-py 4 headers')
FANOUT_ROWS = ('df-nats eventlet', 'df-nats native', BASELINE)
# "  df-nats native    publish      0.68x plain nats-py, 5.51x redis"
_RATIO = re.compile(r'^  (df-nats \w+) +(.+?) +\d+\.\d\dx ([^,]+)')


def test_bench_quick(tmp_path):
    env = worker_process.child_env([REPO])
    out = subprocess.run(
        [sys.executable, '-m', 'benchmarks.bench', '--quick',
         '--out', str(tmp_path), '--fanout', '2,4'], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    lines = out.stdout.splitlines()
    for row in NATS_ROWS:
        assert any(line.startswith(row + ' ') for line in lines), row
    for row in ('redis', 'zeromq'):
        assert any(line.startswith((row + ' ', row + ': skipped: '))
                   for line in lines), row
    assert 'Baseline of the ratios: %s' % BASELINE in lines
    ratios = lines[lines.index(next(
        line for line in lines
        if line.startswith('Ratios (df-nats / baseline, same run'))) + 1:]
    # Each df-nats figure's first ratio is to the baseline.
    first = {}
    for line in ratios:
        found = _RATIO.match(line)
        if found:
            first[found.group(1), found.group(2)] = found.group(3)
    for row in ('df-nats eventlet', 'df-nats native'):
        for figure in ('end to end, one process',
                       'end to end, across processes', 'publish',
                       'CPU/event, one process', 'fan-out N=4'):
            assert first.get((row, figure)) == BASELINE, (
                row, figure, ratios)

    with open(tmp_path / 'bench.png', 'rb') as png:
        assert png.read(8) == b'\x89PNG\r\n\x1a\n'
    with open(tmp_path / 'bench.json') as f:
        figures = json.load(f)
    assert figures['baseline'] == BASELINE
    assert 400 < figures['event_bytes'] < 550
    medians = figures['medians']
    for row in NATS_ROWS:
        fig = medians[row]
        for key in ('local_rate', 'local_cpu_us', 'pub_rate', 'e2e_rate',
                    'lat_p50', 'lat_p999', 'rss_sub'):
            assert fig[key] > 0, (row, key, fig)
        for key in ('local_lost', 'e2e_lost', 'lat_lost'):
            assert fig[key] == 0, (row, key, fig)
    for row in FANOUT_ROWS:
        assert medians[row]['fanout_4_rate'] > 0, (row, medians[row])
        assert medians[row]['fanout_4_lost'] == 0, (row, medians[row])
    for row in ('redis', 'zeromq'):
        assert (row in medians) != (row in figures['skipped']), row

    # The table and chart can be drawn again from the JSON alone.
    again = subprocess.run(
        [sys.executable, '-m', 'benchmarks.bench', '--from-json',
         str(tmp_path / 'bench.json'), '--out', str(tmp_path / 'again')],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.splitlines()[-1].startswith('chart: ')
    assert (tmp_path / 'again' / 'bench.png').stat().st_size > 1000


def test_baselines_carry_no_df_nats_code():
    # Importing the transports loads no df-nats module at all: the
    # driver's classes import it only when a df-nats row is built, so the
    # baselines run none of its code.
    out = subprocess.run(
        [sys.executable, '-c',
         'import json, sys; from benchmarks import bench_transports;'
         ' print(json.dumps(sorted(m for m in sys.modules'
         ' if m.split(".")[0] in ("df_nats", "benchmarks"))))'],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(out.stdout) == ['benchmarks',
                                      'benchmarks.bench_transports']


def test_plain_row_sends_msgpack_without_headers(nats_server):
    # What the baseline puts on the wire: the event packed by msgpack
    # alone, no header block; the comparison row adds df-nats' four.
    from benchmarks import bench_transports as transports
    event = transports.make_event(7)

    async def received(publisher_class):
        import nats
        nc = await nats.connect(nats_server.url)
        sub = await nc.subscribe(transports.RAW_SUBJECT)
        await nc.flush()
        publisher = publisher_class(nats_server.url)
        try:
            publisher.run(publisher.send(event))
            publisher.run(publisher.flush())
            return await sub.next_msg(timeout=5)
        finally:
            publisher.close()
            await nc.close()

    plain = asyncio.run(received(transports.NatsPyPublisher))
    assert plain.data == msgpack.packb(event)
    assert not plain.headers
    headed = asyncio.run(received(transports.NatsPyHeadersPublisher))
    assert headed.data == msgpack.packb(event)
    assert sorted(headed.headers) == ['Df-Action', 'Df-Publisher', 'Df-Seq',
                                      'Df-Table']
    assert headed.headers['Df-Table'] == event['table']
    assert headed.headers['Df-Seq'].endswith('.1')
