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

"""What runs on the loop thread says so: ``async``, or a name ending in
``_on_loop`` whose first statement asserts it (gone under ``python -O``).
"""

import importlib
import inspect
import pkgutil
import re
import types

import pytest

import df_nats
from df_nats.pubsub import process_context
from df_nats.pubsub import publisher
from df_nats.transport import connection
from df_nats.wire import sequence
from tests.unit import fakes


def _on_loop_functions():
    for info in pkgutil.walk_packages(df_nats.__path__, 'df_nats.'):
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__:
                continue
            for name, fn in vars(cls).items():
                if name.endswith('_on_loop') and inspect.isfunction(fn):
                    yield '%s.%s' % (cls.__qualname__, name), fn


ON_LOOP = dict(_on_loop_functions())
_ASSERT = re.compile(r'^\s+assert .*on_loop.*\(\)$', re.MULTILINE)


def test_the_convention_is_in_use():
    assert {'Sender.request_drain_on_loop', 'Sender.queue_mark_on_loop',
            'Sender._send_now_on_loop',
            'NatsPublisher._reconnected_on_loop'} <= set(ON_LOOP)


@pytest.mark.parametrize('name', sorted(ON_LOOP))
def test_every_on_loop_method_asserts_the_loop_thread(name):
    fn = ON_LOOP[name]
    assert not inspect.iscoroutinefunction(fn), (
        '%s: a coroutine needs no suffix' % name)
    assert _ASSERT.search(inspect.getsource(fn)), (
        '%s does not assert that it runs on the loop' % name)


@pytest.fixture
def real_conn(conf):
    """A Connection on the process's real bridge (never connected)."""
    return connection.Connection(conf.conf,
                                 process_context.current().bridge)


def _stream():
    return sequence.Stream('s', 'p', 'i')


_CALLS = {
    'request_drain': lambda conn: conn.sender.request_drain_on_loop(),
    'queue_mark': lambda conn: conn.sender.queue_mark_on_loop(_stream()),
    'send_now': lambda conn: conn.sender._send_now_on_loop(),
    'outbox take': lambda conn: conn.sender._outbox.take_on_loop(1, 1),
    'refusal': lambda conn: conn.refusals.note_on_loop('publish', 's'),
    'service stop': lambda conn: conn.service.stop_on_loop(),
}


@pytest.mark.parametrize('call', sorted(_CALLS))
def test_called_from_the_callers_thread_the_assertion_fires(real_conn,
                                                            call):
    with pytest.raises(AssertionError):
        _CALLS[call](real_conn)


@pytest.mark.parametrize('call', sorted(_CALLS))
def test_called_on_the_loop_thread_it_runs(real_conn, call):
    async def on_loop():
        _CALLS[call](real_conn)
    real_conn.bridge.run(on_loop(), timeout=10)


def test_publisher_reconnect_listener_asserts_too():
    bridge = process_context.current().bridge
    conf = types.SimpleNamespace(subject_prefix='p',
                                 listener_queue_group=False,
                                 close_timeout=1.0, replay_stream='')
    conn = fakes.Connection(conf)
    conn.bridge.on_loop_thread = bridge.on_loop_thread
    registration = types.SimpleNamespace(publisher_id='pub-1',
                                         acquire=lambda: 'pub-1')
    pub = publisher.NatsPublisher(context=process_context.ProcessContext(
        bridge=bridge, connection=conn, registration=registration))
    pub.initialize()
    pub._send_event(b'x', 'T')
    conn.sender.queued[0][0].n = 1
    with pytest.raises(AssertionError):
        pub._reconnected_on_loop()
    assert conn.sender.marks == []

    async def on_loop():
        pub._reconnected_on_loop()
    bridge.run(on_loop(), timeout=10)
    assert [s.subject for s in conn.sender.marks] == ['p.topic.T']
