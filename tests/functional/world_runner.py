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

"""Run one driver scenario in a process of its own, in one world.

A worker of df_nats/testing/worker.py: ``python -m df_nats.testing.worker
--world=eventlet tests.functional.world_runner NAME URL`` patches with
eventlet before anything else is imported, as Dragonflow services do;
``--world=native`` does not. Monkey-patching is process-global, hence a
process per scenario. Exit status 0 and a last message ``scenario-ok`` mean
the scenario's assertions held. ``--module=dragonflow_scenarios`` runs one
of that module's scenarios instead of ``scenarios``'.
"""

import argparse
import importlib
import os
import threading
import time

from df_nats.cmd import common
from df_nats.pubsub import api
from df_nats.testing import worker


def wait_until(predicate, timeout=10.0, what='condition'):
    """Poll ``predicate`` (green under eventlet) until true or timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError('timed out after %ss waiting for %s'
                                 % (timeout, what))
        time.sleep(0.01)


class Context:
    """What a scenario may use: the server URL and world-neutral helpers."""

    def __init__(self, world, url, urls):
        self.world = world
        self.url = url
        self.urls = urls

    def driver(self):
        """A driver instance loaded through stevedore, as Dragonflow does."""
        return common.load_driver()

    def spawn(self, fn, *args):
        """Run ``fn`` concurrently: a greenthread or a native thread."""
        if self.world == 'eventlet':
            import eventlet
            return eventlet.spawn(fn, *args)
        thread = threading.Thread(target=fn, args=args, daemon=True)
        thread.start()
        return thread

    def join(self, handle):
        if self.world == 'eventlet':
            handle.wait()
        else:
            handle.join()

    def wait_until(self, predicate, timeout=10.0, what='condition'):
        wait_until(predicate, timeout, what)

    def settle(self, seconds=0.3):
        """Give stray deliveries a chance to show up."""
        time.sleep(seconds)

    def ask_parent(self, request):
        """Tell the parent test ``request`` and wait for its answer."""
        worker.say('ask', request=request)
        return worker.next_command()['answer']


def main(argv):
    parser = argparse.ArgumentParser(prog='world_runner')
    parser.add_argument('--debug', action='store_true')
    parser.add_argument('--module', default='scenarios',
                        help='module of tests.functional holding it')
    parser.add_argument('scenario')
    parser.add_argument('urls', nargs='+')
    args = parser.parse_args(argv)
    common.setup_process(servers=args.urls, debug=args.debug)
    if (os.environ.get('DF_NATS_REQUIRE_DRAGONFLOW') == '1'
            and not api.DRAGONFLOW_PRESENT):
        # tox -e dragonflow: never run the scenarios on the stand-ins.
        raise AssertionError('Dragonflow required but not importable')
    module = importlib.import_module('tests.functional.' + args.module)
    scenario = getattr(module, 'scenario_' + args.scenario)
    scenario(Context(worker.world(), args.urls[0], args.urls))
    worker.say('scenario-ok')
    return 0
