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

"""Port status through the listeners' queue group, on a real nats-server.

Neutron listeners and the port-status publisher are real processes
(tests/functional/listener_worker.py), in both worlds. One listener is
killed with SIGKILL while the publisher streams updates addressed to every
listener topic, the killed one's included. Every listener reports each
update its callback handled, so the updates lost with the killed process
(routed to it by the server, never handled) can be counted exactly. The
figures are printed (``pytest -s``). Also: after a server restart no
reconnect mark nor resent message goes to the listeners' subject, and with
``listener_queue_group = false`` each listener gets its own topic only.
"""

import asyncio
import time

import nats
import pytest

from df_nats.wire import sequence

from df_nats.testing.worker_process import WorkerProcess
from tests.functional.test_driver import ROOT
from tests.functional.test_registry import write_config

UPDATES = 3000
RATE = 300.0       # updates per second, steady
D_EVERY = 100      # a send-all event after every 100 updates
KILL_AFTER = 1000  # updates sent before the kill
# An update routed to the killed listener this long before the kill was
# handled by it: only those routed just before its death may be lost.
IN_FLIGHT_WINDOW = 2.0


def _other(world):
    return 'native' if world == 'eventlet' else 'eventlet'


def _config(tmp_path, url, name, **extra):
    return write_config(tmp_path, servers=url, client_name=name, **extra)


@pytest.fixture
def start():
    started = []

    def start(world, config, *args):
        process = WorkerProcess(
            'tests.functional.listener_worker', ['--config', config]
            + list(args), world=world, paths=[ROOT], cwd=ROOT,
            new_session=True)
        started.append(process)
        return process
    yield start
    for process in started:
        process.kill()


def _ready(process):
    line = process.next(lambda line: 'ready' in line, timeout=60)[1]
    return line


def _lines(process):
    """Every line the process printed so far, in order."""
    return process.received()


def _stats(process):
    process.send('stats')
    return process.next(lambda line: 'stats' in line)[1]['stats']


def _wait_connection_gone(server, name, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        connz = server.get_json('/connz?limit=1024') or {}
        names = [c.get('name') for c in connz.get('connections') or []]
        if connz and name not in names:
            return time.monotonic()
        assert time.monotonic() < deadline, 'the server kept %s' % name
        time.sleep(0.005)


def _settle(processes, key, quiet=1.5, timeout=30.0):
    """Wait until no process printed a ``key`` line for ``quiet`` s."""
    deadline = time.monotonic() + timeout
    counts, since = None, time.monotonic()
    while time.monotonic() < deadline:
        now = [sum(1 for line in _lines(p) if key in line)
               for p in processes]
        if now != counts:
            counts, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.1)


@pytest.mark.parametrize('killed_world', ['eventlet', 'native'])
def test_queue_group_survives_a_killed_listener(killed_world, nats_server,
                                                start, tmp_path):
    # Three neutron listeners, both worlds among the survivors too.
    hosts = ['net-0', 'net-1', 'net-2']
    worlds = [killed_world, _other(killed_world), killed_world]
    listeners = {}
    for host, world in zip(hosts, worlds):
        listeners[host] = start(world, _config(tmp_path, nats_server.url,
                                               'df-test-%s' % host),
                                'listener', host)
    for process in listeners.values():
        _ready(process)
    publisher = start(_other(killed_world),
                      _config(tmp_path, nats_server.url, 'df-test-pub'),
                      'publisher')
    _ready(publisher)
    victim, live = hosts[0], hosts[1:]
    topics = ['listener_%s' % host for host in hosts]
    publisher.send('stream', n=UPDATES, rate=RATE, every=D_EVERY,
                   topics=topics)
    publisher.next(lambda line: line.get('sent') == 'port-%05d'
                   % (KILL_AFTER - 1), timeout=60)
    killed_at = time.monotonic()
    listeners[victim].kill()
    noticed_at = _wait_connection_gone(nats_server, 'df-test-%s' % victim)
    publisher.next(lambda line: 'done' in line,
                   timeout=UPDATES / RATE + 60)
    _settle([listeners[h] for h in live], 'h')

    sent = {}     # key -> (topic, CLOCK_MONOTONIC when queued)
    sent_d = {}
    for line in _lines(publisher):
        if 'sent' in line:
            sent[line['sent']] = (line['t'], line['at'])
        elif 'sent_d' in line:
            sent_d[line['sent_d']] = line['at']
    assert len(sent) == UPDATES and len(sent_d) == UPDATES // D_EVERY
    handled = {}  # host -> keys its callback handled, in order
    d_events = {}
    for host, process in listeners.items():
        lines = _lines(process)
        handled[host] = [line['h'] for line in lines if 'h' in line]
        d_events[host] = [line['d'] for line in lines if 'd' in line]
        assert not [line for line in lines if 'other' in line]
        # The callback got the topic the publisher addressed, whichever
        # listener handled the update.
        for line in lines:
            if 'h' in line:
                assert line['t'] == sent[line['h']][0], line

    # At most once, across every listener.
    everything = [key for keys in handled.values() for key in keys]
    assert len(everything) == len(set(everything)), 'duplicates'
    once = set(everything)
    assert once <= set(sent)
    lost = set(sent) - once
    # Lost: only updates in flight to the killed listener, sent before the
    # server noticed its death and at most IN_FLIGHT_WINDOW before it.
    for key in lost:
        assert killed_at - IN_FLIGHT_WINDOW <= sent[key][1] <= noticed_at, (
            key, sent[key][1] - killed_at, noticed_at - killed_at)
    assert all(sent[key][1] <= noticed_at for key in handled[victim])
    after = [key for key, (_, at) in sent.items() if at > noticed_at]
    assert after and set(after) <= set(handled[live[0]] + handled[live[1]])
    to_victim_after = [key for key in after
                       if sent[key][0] == topics[0]]
    for host in hosts:
        assert handled[host], 'the group never used %s' % host
    for host in live:  # both live listeners, both worlds, after the kill
        assert set(handled[host]) & set(after), host

    # The send-all topic still reaches every live subscriber, in full.
    for host in live:
        assert sorted(d_events[host]) == sorted(sent_d), host
    # No false gap, sync, duplicate or malformed message on the shared
    # subject (and the D stream stays gap-free).
    for host in live:
        stats = _stats(listeners[host])
        for counter in ('gaps', 'syncs', 'duplicates', 'malformed',
                        'callback_errors'):
            assert stats.get(counter, 0) == 0, (host, stats)
        assert stats['received'] == len(handled[host]) + len(sent_d)

    lost_at = sorted((sent[key][1] - killed_at) * 1000 for key in lost)
    print('\nlistener queue group (killed: %s listener, SIGKILL after %d'
          ' updates; server noticed in %.0f ms): updates sent %d, handled'
          ' once %d (%s), handled twice 0, in flight to the killed process'
          ' and lost %d (sent %s ms from the kill); %d sent after the kill'
          ' was noticed, %d of them addressed to the killed listener, all'
          ' handled by live ones; %d send-all events reached both live'
          ' listeners' % (
              killed_world, KILL_AFTER, (noticed_at - killed_at) * 1000,
              len(sent), len(once),
              ', '.join('%s %s %d' % (h, w, len(handled[h]))
                        for h, w in zip(hosts, worlds)),
              len(lost), ' '.join('%+.0f' % ms for ms in lost_at) or '-',
              len(after), len(to_victim_after), len(sent_d)))


def test_without_the_option_each_listener_gets_its_own(
        nats_server, start, tmp_path):
    hosts = ['own-0', 'own-1']
    listeners = {}
    for host, world in zip(hosts, ['eventlet', 'native']):
        listeners[host] = start(world, _config(
            tmp_path, nats_server.url, 'df-test-%s' % host,
            listener_queue_group='false'), 'listener', host)
        _ready(listeners[host])
    publisher = start('native', _config(tmp_path, nats_server.url,
                                        'df-test-own-pub',
                                        listener_queue_group='false'),
                      'publisher')
    _ready(publisher)
    topics = ['listener_%s' % host for host in hosts]
    publisher.send('stream', n=40, rate=200.0, every=0, topics=topics)
    publisher.next(lambda line: 'done' in line, timeout=30)
    _settle(list(listeners.values()), 'h', quiet=0.5)
    sent = {line['sent']: line['t'] for line in _lines(publisher)
            if 'sent' in line}
    for host, topic in zip(hosts, topics):
        got = [line['h'] for line in _lines(listeners[host]) if 'h' in line]
        assert sorted(got) == sorted(k for k, t in sent.items()
                                     if t == topic), host


_RECORD = 'LISTENERS_RECORD'


async def _record(url, subjects):
    """A JetStream stream that records every message on ``subjects``.

    The server itself keeps the copy, on disk, across its restart: no
    subscriber that might reconnect too late to see a mark.
    """
    nc = await nats.connect(url)
    try:
        await nc.jetstream().add_stream(name=_RECORD, subjects=subjects)
    finally:
        await nc.close()


async def _recorded(url):
    """(subject, headers) of every recorded message, in order."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(_RECORD)
        messages = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(_RECORD, seq)
            messages.append((msg.subject, msg.headers or {}))
        return messages
    finally:
        await nc.close()


def _recorded_marks(url, subject):
    """The marks recorded on ``subject``; none while the server restarts."""
    try:
        return _marks(asyncio.run(_recorded(url)), subject)
    except Exception:
        return []


def _marks(messages, subject):
    return [h for s, h in messages
            if s == subject and sequence.HEADER_MARK in h]


def _resent(messages, subject):
    return [h for s, h in messages
            if s == subject and sequence.HEADER_RESENT in h]


@pytest.mark.parametrize('world', ['eventlet', 'native'])
def test_no_marks_on_the_listeners_subject_after_a_reconnect(
        world, fresh_nats_server, start, tmp_path):
    url = fresh_nats_server.url
    # No capture stream: the test's own records the topic subject.
    listener = start(world, _config(tmp_path, url, 'df-test-rl',
                                    replay_stream=''),
                     'listener', 'rl')
    _ready(listener)
    publisher = start(world, _config(tmp_path, url, 'df-test-rpub',
                                     replay_stream=''),
                      'publisher')
    _ready(publisher)
    asyncio.run(_record(url, ['dragonflow.listeners',
                              'dragonflow.topic.D']))
    _restart_mid_stream(fresh_nats_server, listener, publisher)


def _restart_mid_stream(server, listener, publisher):
    def handled():
        return [line['h'] for line in _lines(listener) if 'h' in line]
    publisher.send('stream', n=10, rate=100.0, every=5,
                   topics=['listener_rl', 'listener_other'])
    publisher.next(lambda line: line.get('done') == 10, timeout=30)
    _wait(lambda: len(handled()) == 10, 'the first 10 updates')
    server.restart()
    # Updates sent while no member is subscribed are dropped by the
    # server: wait for the listener's reconnect (its sync) first.
    _wait(lambda: [line for line in _lines(listener)
                   if (line.get('other') or [None] * 3)[2] == 'sync'],
          'the listener to reconnect')
    # And for the publisher's: its marks follow at once.
    _wait(lambda: _recorded_marks(server.url, 'dragonflow.topic.D'),
          'the mark on D')
    publisher.send('stream', n=10, rate=100.0, every=5,
                   topics=['listener_other', 'listener_rl'])
    publisher.next(lambda line: line.get('done') == 10, timeout=30)
    # The queue subscription came back with the connection.
    _wait(lambda: len(handled()) == 20, 'the next 10 updates')
    time.sleep(0.5)
    assert sorted(handled()) == ['port-%05d' % i for i in range(20)]
    recorded = asyncio.run(_recorded(server.url))
    # A mark on D, where the publisher had sent; none on the listeners'
    # subject, which carried the updates.
    assert _marks(recorded, 'dragonflow.topic.D')
    assert [s for s, _ in recorded].count('dragonflow.listeners') >= 2
    assert _marks(recorded, 'dragonflow.listeners') == []
    # What the publisher had sent just before the restart went again on
    # D (what the server may not have routed), never on the listeners'
    # subject: each update there goes to one member, which cannot tell a
    # copy from a new update.
    assert _resent(recorded, 'dragonflow.topic.D')
    assert _resent(recorded, 'dragonflow.listeners') == []
    stats = _stats(listener)
    assert stats.get('malformed', 0) == 0 and stats.get('gaps', 0) == 0


def _wait(predicate, what, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, 'timed out waiting for ' + what
        time.sleep(0.05)
