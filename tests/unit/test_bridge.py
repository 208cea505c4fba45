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

The eventlet side is exercised by the functional tests, in subprocesses.
"""

import asyncio
import os
import threading
import time

import pytest

from df_nats import bridge as df_bridge
from df_nats import process_context


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
    with pytest.raises(df_bridge.BridgeTimeout):
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


def test_name_resolution_on_a_native_thread(bridge):
    async def resolve():
        loop = asyncio.get_running_loop()
        return await loop.getaddrinfo('localhost', 4222)
    infos = bridge.run(resolve(), timeout=10)
    assert any(info[4][0] in ('127.0.0.1', '::1') for info in infos)


async def _ident():
    return threading.get_ident()
