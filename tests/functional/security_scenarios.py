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

"""Security scenarios: TLS enforced, credentials and permissions, in one
world each (see world_runner and test_security).

The test writes ``settings.json`` into ``$DF_NATS_TEST_TMP``: ``options``
are ``[df_nats]`` values set before the driver is loaded, ``expect`` and
``forbid`` are texts an error must and must not hold.
"""

import json
import os
import time

from oslo_config import cfg

from df_nats.conf import options
from df_nats import errors
from df_nats.pubsub import process_context
from df_nats.transport import capture_stream
from df_nats.transport import client
from df_nats.transport import replay_fetch
from df_nats.wire import codec
from df_nats.wire import subjects
from tests.functional import scenarios


def _settings():
    path = os.path.join(os.environ['DF_NATS_TEST_TMP'], 'settings.json')
    with open(path) as settings:
        values = json.load(settings)
    for name, value in values.get('options', {}).items():
        cfg.CONF.set_override(name, value, group=options.GROUP)
    return values


def _check_text(text, settings):
    for needle in settings.get('expect', ()):
        assert needle in text, (needle, text)
    for needle in settings.get('forbid', ()):
        assert needle not in text, (needle, text)


def scenario_connect_refused_clearly(ctx):
    """Starting a publisher fails at once, with the reason in the error."""
    settings = _settings()
    try:
        ctx.driver().get_publisher().initialize()
    except (errors.ConnectError, errors.ConfigError) as exc:
        print('refused: %s: %s' % (type(exc).__name__, exc))
        _check_text('%s: %s' % (type(exc).__name__, exc), settings)
    else:
        raise AssertionError('the publisher started')


def scenario_tls_kept_across_reconnects(ctx):
    """Connected over TLS; a plaintext server in its place is refused on
    every reconnect attempt; the TLS server back, events flow again.
    """
    _settings()
    pub, sub, got = scenarios._pubsub(ctx)
    pub.send_event(scenarios.event('before'))
    ctx.wait_until(lambda: got.keys() == ['before'], what='first event')
    conn = process_context.current().connection
    assert ctx.ask_parent('swap-to-plaintext') == 'done'
    ctx.wait_until(lambda: conn.stats['errors'] and isinstance(
        conn._last_error, client.PlaintextRefused), timeout=30,
        what='a refused plaintext reconnect')
    assert not conn.connected
    assert ctx.ask_parent('restore-tls') == 'done'
    ctx.wait_until(lambda: conn.connected, timeout=30, what='reconnect')
    pub.send_event(scenarios.event('after'))
    ctx.wait_until(lambda: 'after' in got.keys(), timeout=20,
                   what='event after the reconnect')
    pub.close()
    sub.close()


def scenario_subscribe_refused(ctx):
    """A subscriber whose user may not subscribe fails daemonize()."""
    settings = _settings()
    sub = ctx.driver().get_subscriber()
    sub.initialize(scenarios.Collector())
    sub.register_topic('D')
    started = time.monotonic()
    try:
        sub.daemonize()
    except errors.SubscribePermissionDenied as exc:
        _check_text(str(exc), settings)
    else:
        raise AssertionError('daemonize() succeeded without permission')
    assert time.monotonic() - started < 5
    assert not sub.is_running
    sub.close()


def scenario_register_topic_refused(ctx):
    """After daemonize(), a topic the user may not receive is refused by
    register_topic() and stays unregistered; the others keep working.
    """
    settings = _settings()
    got = scenarios.Collector()
    sub = ctx.driver().get_subscriber()
    sub.initialize(got)
    sub.register_topic('D')
    sub.daemonize()
    try:
        sub.register_topic(settings['refused_topic'])
    except errors.SubscribePermissionDenied as exc:
        _check_text(str(exc), settings)
    else:
        raise AssertionError('register_topic() succeeded without'
                             ' permission')
    # Not registered: asking again asks the server again.
    try:
        sub.register_topic(settings['refused_topic'])
    except errors.SubscribePermissionDenied:
        pass
    else:
        raise AssertionError('the refused topic stayed registered')
    assert sub.is_running
    sub.close()


def scenario_publish_refused(ctx):
    """A publisher whose user may not publish: every refusal counted, an
    ERROR naming the subject (checked by the test in the log).
    """
    _settings()
    pub = ctx.driver().get_publisher()
    pub.initialize()
    conn = process_context.current().connection
    for i in range(20):
        pub.send_event(scenarios.event('k%d' % i))
    pub.flush(5)
    # The server's -ERR reached the error callback.
    ctx.wait_until(lambda: conn.stats['errors'] >= 1, what='the refusal')
    pub.close()


def scenario_registry_refused(ctx):
    """A publisher whose user lacks the registry's permissions starts at
    once, and says why the registry is off.
    """
    _settings()
    started = time.monotonic()
    pub = ctx.driver().get_publisher()
    pub.initialize()
    took = time.monotonic() - started
    print('initialize took %.2f s' % took)
    assert took < 3, took
    pub.close()


def scenario_role_at_work(ctx):
    """One of the sample's users doing its job: ``controller`` and
    ``watcher`` (publisher_events on) receive what ``publisher`` sends
    on ``topic`` (``publisher_runs`` processes one after the other, the
    second taking over the first's registry slot), the watcher the
    registrations too; each publisher makes sure of the capture stream,
    and the readers fetch back from it what was sent on ``topic``
    (``replay`` false: they do not); nothing is refused.
    """
    settings = _settings()
    role = settings['role']
    topic = settings.get('topic', 'D')
    conn = process_context.current().connection
    conf = cfg.CONF[options.GROUP]
    if role == 'publisher':
        pub = ctx.driver().get_publisher()
        pub.initialize()
        # As the publisher does at its start: the stream is there before
        # the events, so it holds them.
        for _ in range(3):
            outcome = conn.bridge.run(capture_stream.ensure_on_loop(
                conn.nc, conf, options.replay_replicas(conf), 5.0),
                timeout=15)
            print('capture stream: %s' % outcome)
            if outcome != capture_stream.FAILED:
                break
            # A cluster just formed may not place 3 replicas yet.
            time.sleep(1)
        reg = process_context.current().registration
        ctx.wait_until(lambda: reg.registered, what='registration')
        for i in range(50):
            pub.send_event(scenarios.event('k%d' % i, topic=topic))
        assert pub.flush(10)
        assert conn.stats['permission_denied'] == 0, conn.stats
        assert ctx.ask_parent('published') == 'done'
        pub.close()
        return
    got = scenarios.Collector()
    sub = ctx.driver().get_subscriber()
    sub.initialize(got)
    sub.register_topic(topic)
    sub.daemonize()
    assert ctx.ask_parent('ready') == 'done'
    lports = lambda: [e[1] for e in got.events if e[0] == 'lport']  # noqa
    runs = settings['publisher_runs']
    ctx.wait_until(lambda: len(lports()) >= 50 * runs, timeout=30,
                   what='the publishers\' events')
    assert lports() == ['k%d' % i for i in range(50)] * runs, got.events
    if role == 'watcher':
        ctx.wait_until(lambda: any(e[0] == 'publisher' for e in got.events),
                       timeout=15, what='the publisher\'s registration')
    if settings.get('replay', True):
        # A catch-up from the stream's first message (a time from before
        # the stream was created is a window passed): every event of
        # this topic again.
        wanted = ['k%d' % i for i in range(50)] * runs
        deadline = time.monotonic() + 10
        while True:
            fetched = conn.bridge.run(replay_fetch.fetch_on_loop(
                conn.nc, conf.replay_stream, conf.subject_prefix,
                [subjects.topic_subject(conf.subject_prefix, topic)],
                0, conf.replay_limit_events, conf.replay_limit_bytes, 10.0,
                start_seq=1), timeout=30)
            keys = [event['key'] for stored in fetched.messages
                    for event in codec.unpack_events(stored.data)[0]
                    if event['table'] == 'lport']
            # The stream's leader may store the last ones after this
            # subscriber received them.
            if keys == wanted or time.monotonic() > deadline:
                break
            print('replay: %s, %d event(s) so far' % (fetched.outcome,
                                                      len(keys)))
            time.sleep(0.2)
        print('replay: %s (%s), %d message(s), %d event(s)' % (
            fetched.outcome, fetched.detail, len(fetched.messages),
            len(keys)))
        assert fetched.outcome == replay_fetch.OK, fetched
        # What the last publisher sent at least (the stream existed
        # before it started); the first one's events may have reached a
        # node before the new stream's interest did.
        assert len(keys) >= 50 and keys == wanted[-len(keys):], keys
    assert conn.stats['permission_denied'] == 0, conn.stats
    sub.close()


def scenario_replay_refused(ctx):
    """A user without the capture stream's read permissions: the catch-up
    fetch is refused (an ERROR naming the subject), never an answer.
    """
    settings = _settings()
    conn = process_context.current().connection
    conn.acquire()
    conf = cfg.CONF[options.GROUP]
    topic = subjects.topic_subject(conf.subject_prefix, 'D')
    fetched = conn.bridge.run(replay_fetch.fetch_on_loop(
        conn.nc, conf.replay_stream, conf.subject_prefix, [topic], 0,
        conf.replay_limit_events, conf.replay_limit_bytes, 3.0,
        start_seq=1), timeout=30)
    print('replay: %s (%s)' % (fetched.outcome, fetched.detail))
    assert fetched.outcome != replay_fetch.OK, fetched
    ctx.wait_until(lambda: conn.stats['permission_denied'] > 0,
                   what='the refusal')
    _check_text(fetched.outcome, settings)
    conn.release()


def scenario_one_event_nkey(ctx):
    """Connects with the configured credentials and delivers."""
    _settings()
    scenarios.scenario_one_event_intact(ctx)
