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

"""Profile df-nats' send-to-callback path with py-spy, in one world.

Runs the publisher and subscriber processes of the bench (or,
with ``--one-process``, its process that does both) under ``py-spy
record`` (all threads, the loop thread included) through the workers'
``prefix`` hook, sends a burst of events, and prints the functions that
cost most, in each process. It counts the samples whose stack holds the
bench's sending loop or a df-nats frame, so that idle threads of other
libraries stay out; ``--all`` counts every sample. Run from the
repository root::

    python -m benchmarks.profile_path --world eventlet --events 60000

py-spy comes with the benchmarks' requirements
(``pip install -r benchmarks/requirements.txt``).
"""

import argparse
import collections
import os
import re
import shutil
import sys
import tempfile
import time

from benchmarks import bench
from df_nats.testing import embedded_server

# A sample is on the path if its stack holds the bench worker's sending
# loop, or any frame of df-nats' runtime (whatever its functions are
# called); the worker harness's command loop, waiting on stdin, is not.
# py-spy names files relative to their sys.path entry: "(df_nats/...)".
_SEND_LOOP = '_burst ('
_RUNTIME = '(df_nats/'
_BENCH = '(df_nats/cmd/'
_SHORTEN = re.compile(r' \(/[^)]*/(site-packages|lib/python3\.\d+)/')


def _summarise(path, top, every):
    own = collections.Counter()
    total = 0
    with open(path) as samples:
        for line in samples:
            stack, _, count = line.rstrip().rpartition(' ')
            if not stack or not (every or _on_path(stack)):
                continue
            leaf = _SHORTEN.sub(' (', stack.split(';')[-1])
            own[re.sub(r':\d+\)$', ')', leaf)] += int(count)
            total += int(count)
    print('%s: %d samples on the path; own time:' % (
        os.path.basename(path), total))
    for frame, count in own.most_common(top):
        print('  %5.1f%%  %s' % (100.0 * count / max(total, 1), frame))


def _on_path(stack):
    if '(<frozen importlib._bootstrap>' in stack:
        return False  # importing modules at start
    return any(_SEND_LOOP in frame
               or (_RUNTIME in frame and _BENCH not in frame)
               for frame in stack.split(';'))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--world', choices=('eventlet', 'native'),
                        default='native')
    parser.add_argument('--events', type=int, default=60000)
    parser.add_argument('--top', type=int, default=15)
    parser.add_argument('--one-process', action='store_true',
                        help='publisher and subscriber in one process')
    parser.add_argument('--all', action='store_true',
                        help='count every sample, idle threads included')
    args = parser.parse_args()
    py_spy = shutil.which('py-spy') or os.path.join(
        os.path.dirname(sys.executable), 'py-spy')
    out_dir = tempfile.mkdtemp(prefix='df-nats-profile-')

    def under_py_spy(role):
        out = os.path.join(out_dir, '%s-%s.txt' % (args.world, role))
        return [py_spy, 'record', '-r', '1000', '-f', 'raw', '-o', out,
                '--']
    roles = ('local',) if args.one_process else ('pub', 'sub')
    with embedded_server.NatsServer(jetstream=False) as server:
        workers = {role: bench.Worker(role, 'df-nats', args.world,
                                      server.url, out_dir,
                                      prefix=under_py_spy(role))
                   for role in roles}
        for worker in workers.values():
            worker.expect('ready')
        if args.one_process:
            local = workers['local']
            local.call('open', 'opened', conns=1)
            time.sleep(0.5)
            sent = local.call('burst', 'sent', timeout=600, n=args.events,
                              idle=3.0)
            total, last = sent['count'], sent['last']
        else:
            workers['sub'].call('open', 'opened', conns=1)
            time.sleep(0.5)
            sent, total, last = bench.burst(workers['pub'], [workers['sub']],
                                            args.events, 1, 3.0)
        print('%s: %d of %d events, %.0f events/s end to end' % (
            args.world, total, args.events,
            total / (last - sent['start']) if total else 0.0))
        for worker in workers.values():
            worker.stop()
    time.sleep(1)  # py-spy writes its file when the process is gone
    for role in roles:
        _summarise(os.path.join(out_dir, '%s-%s.txt' % (args.world, role)),
                   args.top, args.all)


if __name__ == '__main__':
    main()
