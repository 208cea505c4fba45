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

"""The outbox: order, grouping, byte accounting, waiting for room."""

import threading

import pytest

from df_nats import errors
from df_nats.pubsub import process_context
from df_nats.transport import outbox


def _outbox(limit=1 << 20, connected=True):
    state = {'connected': connected}
    # The test's threads stand for the loop thread.
    box = outbox.Outbox(limit, process_context.current().bridge.doorbell(),
                        lambda: state['connected'], lambda: True)
    return box, state


def test_take_groups_consecutive_events_of_one_stream():
    box, _ = _outbox()
    a, b = object(), object()
    for stream, body in ((a, b'1'), (a, b'2'), (b, b'3'), (a, b'4'),
                         (a, b'5')):
        box.put(stream, body, 'lport')
    groups = []
    while True:
        group = box.take_on_loop(1000, 100)
        if group is None:
            break
        groups.append([body for _, body, _ in group])
    assert groups == [[b'1', b'2'], [b'3'], [b'4', b'5']]


def test_raw_bodies_always_go_alone():
    box, _ = _outbox()
    s = object()
    box.put(s, b'e1', 't')
    box.put(s, b'raw', outbox.RAW)
    box.put(s, b'e2', 't')
    box.put(s, b'e3', 't')
    assert [len(box.take_on_loop(1000, 100)) for _ in range(3)] == [1, 1, 2]


def test_take_respects_count_and_bytes_a_big_first_goes_alone():
    box, _ = _outbox()
    s = object()
    box.put(s, b'x' * 50, 't')       # larger than max_bytes: alone
    for _ in range(10):
        box.put(s, b'x' * 10, 't')
    assert len(box.take_on_loop(30, 100)) == 1
    assert len(box.take_on_loop(30, 100)) == 3      # 30 bytes
    assert len(box.take_on_loop(1000, 2)) == 2      # 2 at most
    assert len(box.take_on_loop(1000, 100)) == 5
    assert box.take_on_loop(1000, 100) is None


def test_put_back_keeps_the_order():
    box, _ = _outbox()
    s = object()
    for i in range(5):
        box.put(s, b'%d' % i, 't')
    group = box.take_on_loop(1000, 3)
    box.put_back_on_loop(group)
    assert [body for _, body, _ in box.take_on_loop(1000, 100)] == [
        b'0', b'1', b'2', b'3', b'4']


def test_bytes_never_drift_with_racing_callers():
    # Callers on several threads put while another releases, as the loop
    # thread does: what is waiting ends at exactly zero.
    box, _ = _outbox(limit=1 << 30)
    s = object()
    stop = threading.Event()
    taken = []

    def drain():
        while not stop.is_set() or box:
            group = box.take_on_loop(1 << 20, 1000)
            if group:
                taken.extend(group)
                box.release_on_loop(sum(len(b) for _, b, _ in group))

    def put(n):
        for i in range(n):
            box.put(s, b'x' * (1 + i % 7), 't')
    drainer = threading.Thread(target=drain)
    drainer.start()
    threads = [threading.Thread(target=put, args=(5000,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    drainer.join()
    assert len(taken) == 20000
    assert box.waiting_bytes == 0


def test_full_while_disconnected_raises_naming_the_option():
    box, state = _outbox(limit=100, connected=False)
    s = object()
    box.put(s, b'x' * 80, 't')
    with pytest.raises(errors.PublishBufferFull,
                       match=r'80 bytes .*reconnect_buffer_size = 100'):
        box.put(s, b'x' * 30, 't')
    assert len(box) == 1 and box.waiting_bytes == 80


def test_one_event_larger_than_the_limit_fits_an_empty_outbox():
    box, _ = _outbox(limit=10, connected=False)
    box.put(object(), b'x' * 50, 't')
    assert box.waiting_bytes == 50


def test_full_while_connected_waits_and_is_woken_by_release(monkeypatch):
    # No polling: with the recheck far away, only the doorbell the
    # releasing side rings can let the caller in.
    monkeypatch.setattr(outbox, '_RECHECK_SECONDS', 60)
    box, _ = _outbox(limit=100)
    s = object()
    box.put(s, b'x' * 80, 't')
    done = threading.Event()

    def caller():
        box.put(s, b'y' * 30, 't')
        done.set()
    thread = threading.Thread(target=caller, daemon=True)
    thread.start()
    assert not done.wait(0.2)          # waiting for room
    group = box.take_on_loop(1000, 100)
    box.release_on_loop(sum(len(b) for _, b, _ in group))
    assert done.wait(10)
    assert box.waiting_bytes == 30
    assert [b for _, b, _ in box.take_on_loop(1000, 100)] == [b'y' * 30]


def test_waiting_caller_refused_when_the_link_drops(monkeypatch):
    monkeypatch.setattr(outbox, '_RECHECK_SECONDS', 0.01)
    box, state = _outbox(limit=100)
    s = object()
    box.put(s, b'x' * 80, 't')
    result = []

    def caller():
        try:
            box.put(s, b'y' * 30, 't')
        except errors.PublishBufferFull as exc:
            result.append(exc)
    thread = threading.Thread(target=caller, daemon=True)
    thread.start()
    state['connected'] = False
    thread.join(10)
    assert result and 'reconnect_buffer_size' in str(result[0])
