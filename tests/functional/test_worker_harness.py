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

"""The worker harness (df_nats/testing/worker.py, worker_process.py) with real
child processes in both worlds (tests/functional/echo_worker.py).
"""

import sys
import time

import pytest

from df_nats.testing.worker_process import WorkerError
from df_nats.testing.worker_process import WorkerProcess
from tests.functional.test_driver import ROOT
from tests.functional.test_driver import WORLDS


def _start(world, *args, **kwargs):
    return WorkerProcess('tests.functional.echo_worker', args, world=world,
                         paths=[ROOT], cwd=ROOT, **kwargs)


def _hung(world):
    """A worker and its fork, both blocked for good (``hang``); the pid of
    the fork.

    In a session of their own: ``kill`` ends both.
    """
    proc = _start(world, new_session=True)
    proc.expect('ready')
    proc.send('hang')
    pids = {proc.expect('hung')['pid'] for _ in range(2)}
    assert proc.pid in pids and len(pids) == 2
    return proc, (pids - {proc.pid}).pop()


def _stacks(error):
    """Each process's stacks in ``error``'s text, by pid."""
    sections = str(error).split('--- the stacks of pid ')[1:]
    return {int(section.split(' ', 1)[0]): section for section in sections}


@pytest.mark.parametrize('world', WORLDS)
def test_round_trip_in_its_world(world):
    proc = _start(world, 'a', 'b c')
    try:
        ready = proc.expect('ready')
        assert ready['world'] == world and ready['argv'] == ['a', 'b c']
        assert ready['pid'] == proc.pid
        text = 'caf\u00e9 "quoted"\\n and a\nnewline'
        assert proc.call('echo', 'echo', text=text, n=[1, 2])['text'] == text
    finally:
        proc.stop()
    assert proc.proc.returncode == 0
    # What the worker printed came before what it said next.
    kinds = [message['type'] for message in proc.received()]
    assert kinds == ['ready', 'text', 'echo', 'eof'], kinds


@pytest.mark.parametrize('world', WORLDS)
def test_wait_returns_after_every_message_was_read(world):
    # What a worker said just before it exited is there once wait() has
    # returned: no sleep needed to let the reader catch up.
    proc = _start(world)
    proc.expect('ready')
    proc.send('burst', n=5000)
    assert proc.wait(60) == 0
    messages = proc.received()
    assert [m['n'] for m in messages if m['type'] == 'n'] == list(
        range(5000))
    assert messages[-1] == {'type': 'eof'}


def test_a_worker_error_is_raised_with_its_reason():
    proc = _start('native')
    proc.expect('ready')
    proc.send('fail')
    with pytest.raises(WorkerError, match='ValueError: asked to fail'):
        proc.expect('never')
    assert proc.wait(30) == 1
    assert 'Traceback' in proc.stderr_text()


def test_messages_are_matched_out_of_order_and_eof_ends_the_wait():
    proc = _start('native')
    proc.expect('ready')
    for text in ('first', 'second'):
        proc.send('echo', text=text)
    assert proc.next(lambda m: m.get('text') == 'second')[1]['text'] == (
        'second')
    assert proc.next(lambda m: m.get('text') == 'first')[1]['text'] == (
        'first')
    proc.send('quit')
    started = time.monotonic()
    with pytest.raises(WorkerError, match='ended'):
        proc.expect('never', timeout=30)
    assert time.monotonic() - started < 10


def test_reading_commands_does_not_block_the_eventlet_hub():
    proc = _start('eventlet')
    try:
        proc.expect('ready')
        first = proc.call('ticks', 'ticks')['ticks']
        time.sleep(0.5)  # the worker waits for a command meanwhile
        assert proc.call('ticks', 'ticks')['ticks'] - first >= 20
    finally:
        proc.stop()


def test_a_wrong_world_is_refused():
    proc = WorkerProcess(None, argv=[
        sys.executable, '-m', 'df_nats.testing.worker', '--world=green',
        'tests.functional.echo_worker'], paths=[ROOT], cwd=ROOT)
    assert proc.wait(30) != 0
    assert "not in the 'green' world" in proc.stderr_text()


def test_a_worker_that_does_not_answer_shows_every_stack_of_its_forks():
    # The error shows where the worker and its forked child were stuck,
    # each with all its threads.
    proc, child = _hung('native')
    try:
        with pytest.raises(WorkerError, match='no message awaited') as info:
            proc.expect('never', timeout=1)
    finally:
        proc.kill()
    stacks = _stacks(info.value)
    assert set(stacks) == {proc.pid, child}, str(info.value)
    for name in ('_hang_in_the_worker', 'in hold', 'in _run'):
        assert name in stacks[proc.pid], stacks[proc.pid]
    assert '_hang_in_the_forked_child' in stacks[child], stacks[child]
    assert 'most recent call first' in stacks[child], stacks[child]


@pytest.mark.parametrize('world', WORLDS)
def test_a_hung_worker_shows_its_stacks_and_its_forks_before_the_kill(world):
    proc, child = _hung(world)
    try:
        with pytest.raises(WorkerError, match='hung for 1s') as info:
            proc.wait(1)
    finally:
        proc.kill()
    stacks = _stacks(info.value)
    assert set(stacks) == {proc.pid, child}, str(info.value)
    for pid in stacks:
        assert 'most recent call first' in stacks[pid], str(info.value)


def test_only_the_workers_own_processes_are_asked_for_their_stacks():
    # A process without a SIGUSR1 handler would die of it; nor is an
    # exited worker asked (its pid may not be its own any more).
    proc = WorkerProcess(None, argv=[
        sys.executable, '-c', 'import sys; sys.stdin.read()'])
    try:
        assert proc.dump_stacks() == []
        assert proc.proc.poll() is None
    finally:
        proc.stop()
    assert proc.dump_stacks() == []
