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

``python -m tests.functional.world_runner --world=eventlet NAME URL`` patches
with eventlet before anything else is imported, as Dragonflow services do;
``--world=native`` does not. Monkey-patching is process-global, hence a
process per scenario. Exit status 0 and a last line ``SCENARIO-OK`` mean the
scenario's assertions held.
"""

import sys

if __name__ == '__main__' and '--world=eventlet' in sys.argv:
    import eventlet
    eventlet.monkey_patch()

import argparse  # noqa: E402
import importlib  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

from df_nats import bridge  # noqa: E402
from df_nats.cmd import common  # noqa: E402
from tests.functional import scenarios  # noqa: E402


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
        """Tell the parent test ``request`` and wait until it answers."""
        sys.stdout.write('@@%s\n' % request)
        sys.stdout.flush()
        return sys.stdin.readline().strip()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--world', choices=('eventlet', 'native'))
    parser.add_argument('--debug', action='store_true')
    parser.add_argument('scenario')
    parser.add_argument('urls', nargs='+')
    args = parser.parse_args()
    common.setup_process(servers=args.urls, debug=args.debug)
    if bridge.is_green() != (args.world == 'eventlet'):
        raise AssertionError('not in the %s world' % args.world)
    # "module:name" runs a scenario of tests/functional/<module>_scenarios.
    module, _, name = args.scenario.rpartition(':')
    if module:
        module = importlib.import_module(
            'tests.functional.%s_scenarios' % module)
    scenario = getattr(module or scenarios, 'scenario_' + name)
    scenario(Context(args.world, args.urls[0], args.urls))
    sys.stdout.write('SCENARIO-OK\n')
    sys.stdout.flush()


if __name__ == '__main__':
    main()
