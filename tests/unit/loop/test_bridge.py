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

"""The bridge in a native process: loop thread, hand-offs, time-outs.

The eventlet side is exercised by the functional tests, in subprocesses,
and here for the dispatcher's doorbell, in a monkey-patched subprocess.
"""

import asyncio
import os
import subprocess
import sys
import threading
import time

import pytest

from df_nats import errors
from df_nats.loop import bridge as bridge_module
from df_nats.loop import natives
from df_nats.pubsub import process_context


@pytest.fixture(scope='module')
def bridge():
    return process_context.current().bridge


def test_one_bridge_per_process(bridge):
    assert process_context.current().bridge is bridge
    assert process_context.renew().bridge is bridge
    assert bridge.pid == os.getpid() and not bridge.green


def test_loop_runs_on_its_own_thread(bridge):
    async def where():
        return threading.get_ident()
    assert bridge.run(where(), timeout=5) != threading.get_ident()


def test_run_returns_and_raises(bridge):
    async def fail():
        raise KeyError('boom')
    with pytest.raises(KeyError, match='boom'):
        bridge.run(fail(), timeout=5)


def test_run_times_out_and_cancels(bridge):
    cancelled = threading.Event()

    async def slow():
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
    start = time.monotonic()
    with pytest.raises(errors.BridgeTimeout):
        bridge.run(slow(), timeout=0.2)
    assert time.monotonic() - start < 2
    assert cancelled.wait(5)


def test_posted_calls_run_in_order_off_the_loop(bridge):
    seen = []
    done = threading.Event()
    loop_thread = bridge.run(_ident(), timeout=5)

    def record(i):
        seen.append((i, threading.get_ident()))
        if i == 999:
            done.set()

    def post_all():
        for i in range(1000):
            bridge.world.post(record, i)
    bridge.call_soon(post_all)
    assert done.wait(5)
    assert [i for i, _ in seen] == list(range(1000))
    assert all(ident != loop_thread for _, ident in seen)


def test_a_failing_posted_call_does_not_stop_the_next(bridge):
    done = threading.Event()

    def boom():
        raise RuntimeError('expected')
    bridge.call_soon(lambda: (bridge.world.post(boom),
                              bridge.world.post(done.set)))
    assert done.wait(5)


def test_lock_bell_wakes_once_per_ring_however_often_rung():
    bell = bridge_module._LockBell(natives.Natives())
    bell.ring()
    bell.ring()   # rung already: the same single wake-up
    assert bell.wait()
    woken = threading.Event()

    def waiter():
        bell.wait()
        woken.set()
    threading.Thread(target=waiter, daemon=True).start()
    # Nobody rang since the last wait: the waiter stays parked.
    assert not woken.wait(0.2)
    threading.Thread(target=bell.ring).start()
    assert woken.wait(5)


def test_name_resolution_on_a_native_thread(bridge):
    async def resolve():
        loop = asyncio.get_running_loop()
        return await loop.getaddrinfo('localhost', 4222)
    infos = bridge.run(resolve(), timeout=10)
    assert any(info[4][0] in ('127.0.0.1', '::1') for info in infos)


async def _ident():
    return threading.get_ident()


_HUB_DOORBELL = r"""
import eventlet
eventlet.monkey_patch()
import time
from eventlet import hubs
from df_nats.loop import bridge
from df_nats.loop import natives

originals = natives.Natives()
bell = bridge._HubDoorbell(originals)
hub = hubs.get_hub()
woken = []
resume = eventlet.Event()


def waiter():
    bell.wait()
    woken.append('parked')
    resume.wait()  # busy elsewhere: not waiting on the bell
    bell.wait()
    woken.append('flag')


def wait_for(predicate):
    deadline = time.monotonic() + 5
    while not predicate():
        assert time.monotonic() < deadline, woken
        eventlet.sleep(0.001)


eventlet.spawn(waiter)
eventlet.sleep(0.01)
assert bell._waiter is not None
# Rung from a native thread while the greenthread is parked.
originals.thread.start_new_thread(bell.ring, ())
wait_for(lambda: woken == ['parked'])
# Rung while nobody waits: the hub empties the pipe (it would spin on
# it otherwise) and the next wait returns at once.
bell.ring()
wait_for(lambda: bell._rung)
try:
    originals.os.read(bell._rfd, 16)
    raise AssertionError('the pipe was left full')
except BlockingIOError:
    pass
resume.send()
wait_for(lambda: woken == ['parked', 'flag'])
# Registered once, for good; removed on close.
assert bell._rfd in hub.listeners[hub.READ]
bell.close()
assert bell._rfd not in hub.listeners[hub.READ]
print('HUB-DOORBELL-OK')
"""


def test_hub_doorbell_under_eventlet():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep
               + os.environ.get('PYTHONPATH', ''))
    out = subprocess.run([sys.executable, '-c', _HUB_DOORBELL], cwd=root,
                         env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith('HUB-DOORBELL-OK'), out.stderr
