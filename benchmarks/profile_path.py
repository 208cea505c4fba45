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

Runs the publisher and subscriber processes of ``df-nats bench`` under
``py-spy record`` (all threads, the loop thread included), sends a burst
of events, and prints the functions that cost most, in each process,
counting only the samples of the sending loop, the loop thread and the
dispatcher. Run::

    python benchmarks/profile_path.py --world eventlet --events 60000

py-spy comes with the bench extra (``pip install 'df-nats[bench]'``).
"""

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from df_nats.cmd import bench
from df_nats import embedded_server

_PATH_FRAMES = ('_burst', '_run_loop', '_CallerWorld')
_SHORTEN = re.compile(r' \(/[^)]*/(site-packages|lib/python3\.\d+)/')


def _summarise(path, top):
    own = collections.Counter()
    total = 0
    with open(path) as samples:
        for line in samples:
            stack, _, count = line.rstrip().rpartition(' ')
            if not stack or not any(f in stack for f in _PATH_FRAMES):
                continue
            leaf = _SHORTEN.sub(' (', stack.split(';')[-1])
            own[re.sub(r':\d+\)$', ')', leaf)] += int(count)
            total += int(count)
    print('%s: %d samples on the path; own time:' % (
        os.path.basename(path), total))
    for frame, count in own.most_common(top):
        print('  %5.1f%%  %s' % (100.0 * count / max(total, 1), frame))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--world', choices=('eventlet', 'native'),
                        default='native')
    parser.add_argument('--events', type=int, default=60000)
    parser.add_argument('--top', type=int, default=15)
    args = parser.parse_args()
    py_spy = shutil.which('py-spy') or os.path.join(
        os.path.dirname(sys.executable), 'py-spy')
    out_dir = tempfile.mkdtemp(prefix='df-nats-profile-')
    popen = subprocess.Popen

    def under_py_spy(cmd, **kwargs):
        if '--role' not in cmd:  # nats-server itself
            return popen(cmd, **kwargs)
        role = cmd[cmd.index('--role') + 1]
        out = os.path.join(out_dir, '%s-%s.txt' % (args.world, role))
        return popen([py_spy, 'record', '-r', '1000', '-f', 'raw', '-o',
                      out, '--'] + cmd, **kwargs)
    bench.subprocess.Popen = under_py_spy
    with embedded_server.NatsServer(jetstream=False) as server:
        pub = bench.Worker('pub', 'df-nats', args.world, server.url,
                           out_dir)
        pub.expect('ready')
        sub = bench.Worker('sub', 'df-nats', args.world, server.url,
                           out_dir)
        sub.expect('ready')
        sub.call('open', 'opened', conns=1)
        time.sleep(0.5)
        sent, total, last = bench._burst(pub, [sub], args.events, 1, 3.0)
        print('%s: %d of %d events, %.0f events/s end to end' % (
            args.world, total, args.events, total / (last - sent['start'])))
        pub.stop()
        sub.stop()
    time.sleep(1)  # py-spy writes its file when the process is gone
    for role in ('pub', 'sub'):
        _summarise(os.path.join(out_dir, '%s-%s.txt' % (args.world, role)),
                   args.top)


if __name__ == '__main__':
    main()
