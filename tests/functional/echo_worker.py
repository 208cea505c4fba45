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

"""A worker of df_nats/testing/worker.py for the harness's own tests.

It says ``ready`` (its world, pid), then obeys: ``echo`` prints a line
and says the command back; ``burst`` (``n``) says n messages and ends the
process; ``fail`` raises; ``ticks`` says how often a concurrent
greenthread or thread woke up meanwhile; ``hang`` forks while a thread
holds a lock, and both processes block on it for good (each says
``hung``, its pid, first); ``quit`` ends.
"""

import os
import threading
import time

from df_nats.testing import worker


class _Ticker:
    """Counts its wake-ups every 10 ms: a blocked hub would stop it."""

    def __init__(self):
        self.ticks = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            time.sleep(0.01)
            self.ticks += 1


def _hang_in_the_worker(lock):
    worker.say('hung', pid=os.getpid())
    lock.acquire()


def _hang_in_the_forked_child(lock):
    # Its copy of the lock is held by a thread it does not have.
    worker.say('hung', pid=os.getpid())
    lock.acquire()


def _hang():
    lock = threading.Lock()
    held = threading.Event()

    def hold():
        with lock:
            held.set()
            threading.Event().wait()

    threading.Thread(target=hold, daemon=True).start()
    held.wait()
    if os.fork() == 0:
        _hang_in_the_forked_child(lock)
    _hang_in_the_worker(lock)


def main(argv):
    ticker = _Ticker()
    worker.say('ready', world=worker.world(), pid=os.getpid(), argv=argv)
    for command in worker.commands():
        kind = command.pop('type')
        if kind == 'echo':
            print('printed before the echo')  # buffered: a pipe
            worker.say('echo', **command)
        elif kind == 'burst':
            for n in range(command['n']):
                worker.say('n', n=n)
            return 0
        elif kind == 'fail':
            raise ValueError('asked to fail')
        elif kind == 'hang':
            _hang()
        elif kind == 'ticks':
            worker.say('ticks', ticks=ticker.ticks)
        elif kind == 'quit':
            break
    return 0
