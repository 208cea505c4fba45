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

"""Least privilege, shipped: df-nats under the users of the sample server
configuration (etc/nats-server/df-nats-cluster.conf, a 3-node TLS cluster)
in both worlds. Each role does its job with no refusal, and a role used
for what it may not do fails loudly: an ERROR naming the subject and
saying "permission", and a refused subscription fails the call. Only
neutron-server joins the listeners' queue group; every role's process
answers its df-nats service without allow_responses; the inspector and
the system account's monitor get what the NATS CLI asks, and no more.
"""

import asyncio
import json
import os
import re
import ssl
import time
import types

import nats
import pytest

from df_nats.registry import records
from df_nats.testing.worker_process import WorkerProcess
from df_nats.transport import capture_stream
from tests.functional.test_driver import _start
from tests.functional.test_driver import ROOT
from tests.functional.test_driver import WORLDS
from tests.functional.test_security import answer
from tests.functional.test_security import finish
from tests.functional.test_security import run_scenario

_MODULE = 'security_scenarios'


def _error_lines(err, *needles):
    """Log lines at ERROR holding every needle."""
    return [line for line in err.splitlines()
            if re.search(r'\bERROR\b', line)
            and all(needle in line for needle in needles)]


def _settings(tmp_path, name, settings):
    directory = os.path.join(str(tmp_path), name)
    os.makedirs(directory)
    with open(os.path.join(directory, 'settings.json'), 'w') as out:
        json.dump(settings, out)
    return directory


@pytest.mark.parametrize('world', WORLDS)
def test_sample_roles_do_their_jobs(world, sample_cluster, tmp_path):
    """publisher makes the capture stream, publishes and registers
    (twice); controller receives, then fetches it all back from the
    stream; watcher the same, and sees the registry; not one permission
    refusal, by the processes' count and the servers' logs.
    """
    urls = sample_cluster.urls
    before = set(sample_cluster.violations())
    # A topic of this test's own: the stream outlives it (the cluster
    # serves the module), and the readers fetch this topic back.
    topic = 'replay-%s' % world
    readers = []
    for role, extra in (('controller', {}),
                        ('watcher', {'publisher_events': True})):
        options = dict(sample_cluster.options(role), **extra)
        directory = _settings(tmp_path, role,
                              {'role': role, 'options': options,
                               'publisher_runs': 2, 'topic': topic})
        proc = _start(world, 'role_at_work', urls, directory,
                      module=_MODULE)
        answer(proc, 'ready', lambda: None)
        readers.append(proc)
    outputs = []
    # Twice: the second process takes over the registry slot the first
    # left (reading its record first).
    for run in range(2):
        directory = _settings(tmp_path, 'publisher%d' % run, {
            'role': 'publisher', 'topic': topic,
            'options': sample_cluster.options('publisher')})
        pub = _start(world, 'role_at_work', urls, directory,
                     module=_MODULE)
        answer(pub, 'published', lambda: None)
        outputs.append(finish(pub))
    outputs += [finish(proc) for proc in readers]
    for out, err in outputs:
        assert 'permission' not in err.lower(), err[-3000:]
        for password in sample_cluster.passwords.values():
            assert password not in out + err
    # The first publisher created the stream (or found it made by its
    # own start), the second found it as wanted.
    first, second = (out for out, _ in outputs[:2])
    assert re.search(r'capture stream: (created|unchanged)\n*$', first), (
        first)
    assert re.search(r'^capture stream: unchanged$', second, re.M), second
    for out, _ in outputs[2:]:
        assert re.search(r'^replay: ok \(\), \d+ message\(s\), (50|100)'
                         r' event\(s\)$', out, re.M), out
    assert set(sample_cluster.violations()) == before


def _capture_conf():
    """The [df_nats] replay settings of the sample's clients (defaults)."""
    return types.SimpleNamespace(
        subject_prefix='dragonflow', replay_stream='DF_NATS_EVENTS',
        replay_max_age=600, replay_max_bytes=1024 ** 3)


@pytest.mark.parametrize('world', WORLDS)
def test_replay_refused_without_read_permissions(
        world, sample_cluster, tmp_path):
    """The publisher's user makes the stream (3 replicas of 1 GiB: the
    account holds them) and the inspector's may look at it; neither may
    read events back from it: the inspector's catch-up fetch is refused,
    never answered.
    """
    async def make():
        errors = []
        nc = await _client(sample_cluster, 'publisher', errors)
        outcomes = []
        for _ in range(2):
            outcomes.append(await capture_stream.ensure_on_loop(
                nc, _capture_conf(), 3, 10.0))
        await nc.publish('dragonflow.topic.D', b'\x80')
        await nc.flush()
        # Stored: the servers route it to the stream's leader.
        info = await capture_stream.api_request_on_loop(
            nc, 'INFO', 'DF_NATS_EVENTS', None, 5.0)
        await nc.close()
        return outcomes, info, errors
    before = set(sample_cluster.violations())
    outcomes, info, errors = asyncio.run(make())
    # Created here, or by the roles' test before.
    assert outcomes[0] in ('created', 'unchanged'), errors
    assert outcomes[1] == 'unchanged', errors
    assert info['config']['num_replicas'] == 3
    assert errors == []
    # As its shipped section: the tools serve no df-nats service.
    options = dict(sample_cluster.options('inspector'),
                   service_endpoint=False)
    out, err = run_scenario(world, 'replay_refused', sample_cluster.urls,
                            tmp_path, {'options': options,
                                       'expect': ['JetStream silent']})
    assert _error_lines(err, 'permission denied', 'publish to',
                        '$JS.API.DIRECT.GET.DF_NATS_EVENTS'), err
    violations = set(sample_cluster.violations()) - before
    assert violations and all(
        'df-inspector' in line and '$JS.API.DIRECT.GET.DF_NATS_EVENTS'
        in line for line in violations), violations


@pytest.mark.parametrize('world', WORLDS)
def test_subscribe_refused_fails_daemonize(world, sample_cluster, tmp_path):
    """The publisher's user may not subscribe to topics."""
    settings = {'options': sample_cluster.options('publisher'),
                'expect': ['permission denied', 'subscribe to',
                           'dragonflow.topic.D']}
    out, err = run_scenario(world, 'subscribe_refused', sample_cluster.urls,
                            tmp_path, settings)
    assert _error_lines(err, 'permission denied', 'dragonflow.topic.D'), err


@pytest.mark.parametrize('world', WORLDS)
def test_subscribe_refused_fails_register_topic(
        world, sample_cluster, tmp_path):
    """The controller's user may receive topics, not the subject neutron
    listeners share (port status goes to neutron-server).
    """
    settings = {'options': sample_cluster.options('controller'),
                'refused_topic': 'listener_compute-1',
                'expect': ['permission denied', 'dragonflow.listeners']}
    out, err = run_scenario(world, 'register_topic_refused',
                            sample_cluster.urls, tmp_path, settings)
    assert _error_lines(err, 'permission denied', 'dragonflow.listeners'), (
        err)


@pytest.mark.parametrize('world', WORLDS)
def test_publish_refused_is_an_error(world, sample_cluster, tmp_path):
    """The controller's user may not publish topics (port status only):
    an ERROR names the subject (in its own letter case), however many
    events are refused.
    """
    options = dict(sample_cluster.options('controller'),
                   publisher_registry=False)
    out, err = run_scenario(world, 'publish_refused', sample_cluster.urls,
                            tmp_path, {'options': options})
    lines = _error_lines(err, 'permission denied', 'publish to',
                         'dragonflow.topic.D')
    # Rate-limited: one ERROR for the 20 refusals, not one each.
    assert len(lines) == 1, err


@pytest.mark.parametrize('world', WORLDS)
def test_registry_refused_is_named_at_once(world, sample_cluster, tmp_path):
    """Without the registry's permissions a publisher starts at once and
    says which subject was refused (not "JetStream did not answer").
    """
    options = dict(sample_cluster.options('controller'))
    out, err = run_scenario(world, 'registry_refused', sample_cluster.urls,
                            tmp_path, {'options': options})
    assert _error_lines(err, 'publisher registry unavailable',
                        'permission denied'), err
    assert _error_lines(err, 'permission denied',
                        '$JS.API.STREAM.INFO.KV_df_publishers'), err
    assert 'did not answer' not in err


# -- The listeners' queue group belongs to neutron-server -----------------

def _context(cluster):
    return ssl.create_default_context(cafile=cluster.tls_files['ca'])


async def _client(cluster, role, errors):
    async def on_error(exc):
        errors.append(str(exc))
    return await nats.connect(
        cluster.urls[0], tls=_context(cluster), user='df-' + role,
        password=cluster.passwords[role], error_cb=on_error,
        allow_reconnect=False, connect_timeout=5)


async def _refused(errors, needle, timeout=5.0):
    """Whether an error holding ``needle`` came within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(needle in error for error in errors):
            return True
        await asyncio.sleep(0.05)
    return False


# (role, queue group): may that user subscribe to the listeners' subject?
# '' is a plain subscription. Only neutron-server (and a host running it,
# combined) may join df-listeners, and never take a plain copy; the
# inspector may take a copy ("df-nats tail"), never join a queue group.
_LISTENERS_SUBSCRIPTIONS = [
    ('publisher', 'df-listeners', True), ('publisher', '', False),
    ('combined', 'df-listeners', True), ('combined', '', False),
    ('controller', 'df-listeners', False), ('controller', '', False),
    ('watcher', 'df-listeners', False), ('watcher', '', False),
    ('inspector', 'df-listeners', False), ('inspector', 'rogue', False),
    ('inspector', '', True),
]


def test_only_neutron_server_joins_the_listeners_queue_group(
        sample_cluster):
    """Every other user is refused the queue group (plain subscriptions
    too, but the inspector's copy); a controller sends 1,000 port-status
    updates and neutron-server's member gets every one: no rogue member
    takes a share.
    """
    subject = 'dragonflow.listeners'
    n = 1000

    async def scenario():
        outcome = {}
        clients = []
        received = {}
        for role, queue, _ in _LISTENERS_SUBSCRIPTIONS:
            errors = []
            nc = await _client(sample_cluster, role, errors)
            clients.append(nc)
            got = received[(role, queue)] = []

            async def on_message(msg, got=got):
                got.append(msg.data)
            await nc.subscribe(subject, queue=queue, cb=on_message)
            await nc.flush()
            needle = 'permissions violation for subscription to "%s"' % (
                subject)
            outcome[(role, queue)] = not await _refused(
                errors, needle, timeout=1.0)
        errors = []
        controller = await _client(sample_cluster, 'controller', errors)
        clients.append(controller)
        for i in range(n):
            await controller.publish(subject, b'port-status %d' % i)
        # Its user may send port status, and no topology.
        await controller.publish('dragonflow.topic.D', b'forged')
        await controller.flush()
        assert await _refused(
            errors, 'permissions violation for publish to'
            ' "dragonflow.topic.d"'), errors
        assert not [e for e in errors if subject in e], errors
        deadline = time.monotonic() + 20
        while (len(received[('publisher', 'df-listeners')])
               + len(received[('combined', 'df-listeners')]) < n
               and time.monotonic() < deadline):
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        for nc in clients:
            await nc.close()
        return outcome, {key: len(got) for key, got in received.items()}

    outcome, counts = asyncio.run(scenario())
    assert outcome == {(role, queue): allowed for role, queue, allowed
                       in _LISTENERS_SUBSCRIPTIONS}
    members = [key for key, allowed in outcome.items()
               if allowed and key[1]]
    # Every update went to one member of df-listeners, none elsewhere but
    # the inspector's copy.
    assert sum(counts[key] for key in members) == n, counts
    assert counts[('inspector', '')] == n, counts
    for key, allowed in outcome.items():
        if not allowed:
            assert counts[key] == 0, (key, counts)


# -- Monitoring and inspection with the NATS CLI's requests ------------------

async def _collect(nc, subject, payload=b'', wait=2.0):
    """Every reply to one request within ``wait`` seconds (as the NATS CLI
    collects the answers of many servers or service instances).
    """
    inbox = nc.new_inbox()
    replies = []
    sub = await nc.subscribe(inbox)
    await nc.publish(subject, payload, reply=inbox)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            msg = await sub.next_msg(timeout=deadline - time.monotonic())
        except nats.errors.TimeoutError:
            break
        replies.append(json.loads(msg.data))
    await sub.unsubscribe()
    return replies


def test_every_role_answers_monitoring_as_shipped(sample_cluster, tmp_path):
    """Every role's process serves its df-nats service (replies on
    inboxes only, no allow_responses); the inspector asks what "nats
    micro" and "nats kv" ask, the system account's monitor what "nats
    server report" asks, and is refused what would act on a server. No
    permission refused but those.
    """
    cluster = sample_cluster
    before = set(cluster.violations())
    roles = [('publisher', 'neutron-server', 'eventlet'),
             ('controller', 'df-local-controller', 'native'),
             ('watcher', 'df-local-controller', 'eventlet'),
             ('combined', 'combined', 'native')]
    workers = []
    try:
        for role, service, world in roles:
            config = tmp_path / ('%s.conf' % role)
            config.write_text(cluster.client_config(role, cluster.urls[:1]))
            workers.append(WorkerProcess(
                'tests.functional.node_worker',
                ['--config', str(config), service, role], world=world,
                label=role, paths=[ROOT], cwd=ROOT, new_session=True,
                log_path=str(tmp_path / ('%s.log' % role))))
        pids = {w.expect('ready', timeout=90)['pid'] for w in workers}

        async def inspect():
            errors = []
            nc = await _client(cluster, 'inspector', errors)
            # nats micro ls / stats df-nats
            pings = await _collect(nc, '$SRV.PING.df-nats')
            stats = await _collect(nc, '$SRV.STATS.df-nats')
            # nats kv ls / info / get / keys / watch
            names = await nc.request('$JS.API.STREAM.NAMES', b'{}',
                                     timeout=5)
            kv = await nc.jetstream().key_value('df_publishers')
            status = await kv.status()
            keys = await kv.keys()
            record = json.loads((await kv.get(keys[0])).value)
            watcher = await kv.watchall()
            first = await watcher.updates(timeout=5)
            await watcher.stop()
            # Read only: it may not write the registry.
            try:
                await kv.put('forged', b'{}')
            except Exception:
                pass
            refused = await _refused(
                errors, 'permissions violation for publish to'
                ' "$kv.df_publishers.forged"')
            await nc.close()
            return (pings, stats, json.loads(names.data), status, keys,
                    record, first, refused)

        (pings, stats, names, status, keys, record, first,
         put_refused) = asyncio.run(inspect())
        assert {int(p['metadata']['pid']) for p in pings} == pids, pings
        assert {int(s['metadata']['pid']) for s in stats} == pids
        assert 'KV_df_publishers' in names['streams'], names
        # kv_replicas = 3 in the shipped sections.
        assert status.stream_info.config.num_replicas == 3
        # Keys are <host token>.<id> (df_nats.registry.records).
        assert records.key(record['host'], record['id']) in keys
        assert first is not None
        assert put_refused

        async def monitor():
            errors = []
            nc = await _client(cluster, 'monitor', errors)
            servers = await _collect(nc, '$SYS.REQ.SERVER.PING')
            jsz = await _collect(nc, '$SYS.REQ.SERVER.PING.JSZ')
            connz = await _collect(
                nc, '$SYS.REQ.SERVER.PING.CONNZ', b'{"limit": 1024}')
            one = servers[0]['server']['id']
            health = await nc.request('$SYS.REQ.SERVER.%s.HEALTHZ' % one,
                                      b'', timeout=5)
            # Acting on a server is not monitoring.
            acting = []
            for verb in ('RELOAD', 'KICK', 'LDM', 'PROFILEZ'):
                subject = '$SYS.REQ.SERVER.%s.%s' % (one, verb)
                await nc.publish(subject, b'{}')
                acting.append(await _refused(
                    errors, 'permissions violation for publish to "%s"'
                    % subject.lower()))
            await nc.close()
            return servers, jsz, connz, json.loads(health.data), acting

        servers, jsz, connz, health, acting = asyncio.run(monitor())
        assert sorted(s['server']['name'] for s in servers) == [
            'nats-1', 'nats-2', 'nats-3']
        assert len(jsz) == 3
        assert all(r['data']['streams'] >= 1 for r in jsz), jsz
        names = {c.get('name') for r in connz
                 for c in r['data'].get('connections') or ()}
        assert any(name and name.startswith('df-nats:') for name in names)
        assert health['data']['status'] == 'ok', health
        assert acting == [True] * 4
    finally:
        for worker in workers:
            worker.stop(10)
    for worker in workers:
        log = worker.stderr_text(None)
        assert 'permission' not in log.lower(), log[-3000:]
    violations = [line for line in cluster.violations()
                  if line not in before]
    # Only what the test was refused on purpose.
    assert violations and all(
        'df-inspector' in line and '$KV.df_publishers.forged' in line
        or 'df-monitor' in line for line in violations), violations
