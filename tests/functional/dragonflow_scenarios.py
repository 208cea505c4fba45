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

"""Dragonflow 4.0.0's own NbApi over df-nats, run by world_runner
(``--module=dragonflow_scenarios``) in an eventlet or a native process.

A neutron-side ``NbApi`` (``is_neutron_server=True``) and a controller-side
one share an in-memory NB database (tests/functional/memory_nb_driver.py)
and talk through df-nats on a real nats-server, loaded by Dragonflow's own
``load_driver`` from ``[df] pub_sub_driver = nats``. The controller's
updates go through ``NbApi.db_change_callback``, its queue and
``process_changes`` to a stand-in of ``DfLocalController`` that decodes
them with Dragonflow's model framework into Dragonflow's ``db_store`` and
resyncs with Dragonflow's own ``sync.Sync``.

Worker mode, as a worker of df_nats/testing/worker.py (``python -m
df_nats.testing.worker --world=W tests.functional.dragonflow_scenarios
neutron-worker URL N``): a neutron-server API worker with
``pub_sub_use_multiproc = True`` and ``pub_sub_multiproc_driver = nats``
creating N logical switches; ``gap-publisher URL N``: events 1 and N of
one publisher's stream, with plain nats-py, the others lost;
``neutron-listener URL HOST``: a neutron-server whose Dragonflow neutron
notifier registered its ``Listener`` (topic ``listener_HOST``), saying
``status`` for each port status its core plugin is given.
"""

import logging as std_logging
import os
import sys
import time

from dragonflow.common import utils as df_utils
from dragonflow.db import api_nb
from dragonflow.db import db_common
from dragonflow.db import db_store
from dragonflow.db import model_framework
from dragonflow.db.models import core
from dragonflow.db.models import l2
from dragonflow.db.models import ovs
from dragonflow.db import sync
from eventlet import queue as eventlet_queue
from oslo_config import cfg

from df_nats.pubsub import process_context
from df_nats.pubsub import publisher as df_publisher
from df_nats.pubsub import subscriber as df_subscriber
from df_nats.testing import worker
from df_nats.testing import worker_process
from tests.functional import memory_nb_driver

MEMORY_DRIVER = 'tests.functional.memory_nb_driver.MemoryNbDriver'
OTHER_PUBSUB = 'tests.functional.memory_nb_driver.RecordingPubSub'
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _configure(selective=False, use_multiproc=False,
               multiproc_driver='nats'):
    """Dragonflow's [df] options as a deployment using df-nats sets them."""
    for name, value in [
            ('enable_df_pub_sub', True),
            ('pub_sub_driver', 'nats'),
            ('nb_db_class', MEMORY_DRIVER),
            ('enable_selective_topology_distribution', selective),
            ('pub_sub_use_multiproc', use_multiproc),
            ('pub_sub_multiproc_driver', multiproc_driver)]:
        cfg.CONF.set_override(name, value, group='df')


class Controller:
    """What DfLocalController does with NbApi's updates, minus OpenFlow:
    model events decoded by Dragonflow's model framework into its db_store,
    ``sync`` answered by Dragonflow's ``sync.Sync`` from the NB database,
    ``dbrestart`` by ``NbApi.db_recover_callback``.
    """

    def __init__(self, nb_api, selective=False):
        self.nb_api = nb_api
        self.store = db_store.get_instance()
        self.updates = []   # every DbUpdate taken from NbApi's queue
        self.syncs = 0
        self.errors = []
        self._sync = sync.Sync(nb_api=nb_api, update_cb=self.store.update,
                               delete_cb=self.store.delete,
                               selective=selective)
        for model in model_framework.iter_models_by_dependency_order():
            self._sync.add_model(model)
        nb_api.controller = self  # 4.0.0 db_recover_callback() syncs it
        nb_api.register_notification_callback(self.handle_update)

    def handle_update(self, update):
        self.updates.append(update)
        try:
            self._apply(update)
        except Exception as exc:  # the real controller resyncs; we report
            self.errors.append('%s: %r' % (update, exc))

    def _apply(self, update):
        if update.action == 'sync':
            self.sync()
        elif update.action == 'dbrestart':
            self.nb_api.db_recover_callback()
        elif update.action == 'delete':
            model = model_framework.get_model(update.table)
            self.store.delete(model(id=update.key))
        elif update.action in ('create', 'set'):
            model = model_framework.get_model(update.table)
            self.store.update(model.from_json(update.value))
        else:
            raise ValueError('unexpected action %r' % update.action)

    def sync(self):
        self.syncs += 1
        self._sync.sync()

    def register_topic(self, topic):
        self.nb_api.subscriber.register_topic(topic)
        self._sync.add_topic(topic)

    def unregister_topic(self, topic):
        self.nb_api.subscriber.unregister_topic(topic)
        self._sync.remove_topic(topic)

    def get(self, model, key):
        return self.store.get_one(model(id=key))

    def keys(self, action=None):
        return [u.key for u in self.updates
                if action is None or u.action == action]


def _neutron():
    """neutron-server's NbApi (4.0.0 initialize(), neutron branch)."""
    nb_api = api_nb.NbApi(memory_nb_driver.MemoryNbDriver(),
                          use_pubsub=True, is_neutron_server=True)
    nb_api.initialize(db_ip='127.0.0.1', db_port=0)
    assert isinstance(nb_api.publisher, df_publisher.NatsPublisher)
    assert nb_api.driver.is_neutron_server is True
    return nb_api


def _controller(ctx, selective=False):
    """A local controller's NbApi with its df-nats subscriber started and
    ``process_changes`` draining its queue into a ``Controller``.
    """
    nb_api = api_nb.NbApi(memory_nb_driver.MemoryNbDriver(),
                          use_pubsub=True, is_neutron_server=False)
    # initialize() starts the subscriber, then calls its failover hooks.
    nb_api.initialize(db_ip='127.0.0.1', db_port=0)
    sub = nb_api.subscriber
    assert isinstance(sub, df_subscriber.NatsSubscriber)
    assert sub.is_running and sub.is_daemonize()
    controller = Controller(nb_api, selective=selective)
    if ctx.world == 'eventlet':
        ctx.spawn(nb_api.process_changes)
    else:
        ctx.spawn(_take_updates, nb_api)
    return nb_api, controller


def _take_updates(nb_api):
    """process_changes for a process without eventlet: NbApi's queue is an
    eventlet queue, and a put from another native thread does not wake a
    native thread blocked in its get (each thread has its own hub), so
    poll it. Dragonflow's controller always runs eventlet-patched.
    """
    while True:
        try:
            update = nb_api._queue.get_nowait()
        except eventlet_queue.Empty:
            time.sleep(0.005)
            continue
        nb_api._notification_cb(update)
        nb_api._queue.task_done()


def _switch(key, topic, name=None, **fields):
    return l2.LogicalSwitch(id=key, topic=topic, name=name or key,
                            version=1, **fields)


def _port(key, topic, lswitch, ip, mac):
    return l2.LogicalPort(id=key, topic=topic, name=key, version=1,
                          lswitch=lswitch, ips=[ip], macs=[mac],
                          enabled=True)


def _probe(ctx, neutron, controller, key):
    """Send a 'D' event and wait for it: what was sent before it on the
    same publisher has been delivered (NATS keeps a publisher's order).
    """
    neutron.create(core.Chassis(id=key, ip='192.0.2.1',
                                tunnel_types=['vxlan']))
    ctx.wait_until(lambda: controller.get(core.Chassis, key) is not None,
                   what='probe %s' % key)


def _no_errors(controller):
    assert controller.errors == [], controller.errors


def scenario_nb_create_update_delete(ctx):
    _configure()
    controller_nb, controller = _controller(ctx)
    neutron = _neutron()
    neutron.create(_switch('ls1', 'tenant1', mtu=1450, segmentation_id=7,
                           network_type='vxlan'))
    neutron.create(_port('lp1', 'tenant1', 'ls1', '10.0.0.5',
                         'fa:16:3e:00:00:01'))
    ctx.wait_until(lambda: controller.get(l2.LogicalPort, 'lp1'),
                   what='the port')
    switch = controller.get(l2.LogicalSwitch, 'ls1')
    assert isinstance(switch, l2.LogicalSwitch)
    assert (switch.mtu, switch.segmentation_id, switch.topic) == (
        1450, 7, 'tenant1')
    port = controller.get(l2.LogicalPort, 'lp1')
    assert isinstance(port, l2.LogicalPort)
    assert [str(ip) for ip in port.ips] == ['10.0.0.5']
    assert port.lswitch.id == 'ls1'
    # The controller decoded what neutron stored.
    assert port.to_struct() == neutron.get(l2.LogicalPort(id='lp1')
                                           ).to_struct()

    neutron.update(l2.LogicalSwitch(id='ls1', topic='tenant1',
                                    name='renamed', version=2))
    ctx.wait_until(lambda: controller.get(l2.LogicalSwitch, 'ls1').name
                   == 'renamed', what='the update')
    neutron.delete(l2.LogicalPort(id='lp1', topic='tenant1'))
    neutron.delete(l2.LogicalSwitch(id='ls1', topic='tenant1'))
    ctx.wait_until(lambda: controller.get(l2.LogicalSwitch, 'ls1') is None,
                   what='the deletes')
    assert controller.get(l2.LogicalPort, 'lp1') is None
    assert [(u.action, u.table, u.key, u.topic)
            for u in controller.updates] == [
        ('create', 'lswitch', 'ls1', 'D'),
        ('create', 'lport', 'lp1', 'D'),
        ('set', 'lswitch', 'ls1', 'D'),
        ('delete', 'lport', 'lp1', 'D'),
        ('delete', 'lswitch', 'ls1', 'D')], controller.updates
    assert isinstance(controller.updates[0], db_common.DbUpdate)
    _no_errors(controller)


def scenario_nb_selective_topology(ctx):
    _configure(selective=True)
    controller_nb, controller = _controller(ctx, selective=True)
    neutron = _neutron()
    # Before the topic is registered, even tenant-a's events do not come;
    # registering pulls the NB database's tenant-a objects (Sync.add_topic).
    neutron.create(_switch('ls-a0', 'tenant-a'))
    _probe(ctx, neutron, controller, 'probe0')
    assert 'ls-a0' not in controller.keys()
    controller.register_topic('tenant-a')
    assert controller.get(l2.LogicalSwitch, 'ls-a0') is not None
    neutron.create(_switch('ls-a1', 'tenant-a'))
    neutron.create(_switch('ls-b1', 'tenant-b'))
    neutron.create(_port('lp-b1', 'tenant-b', 'ls-b1', '10.1.0.5',
                         'fa:16:3e:00:00:02'))
    neutron.create(_port('lp-a1', 'tenant-a', 'ls-a1', '10.0.0.5',
                         'fa:16:3e:00:00:03'))
    ctx.wait_until(lambda: controller.get(l2.LogicalPort, 'lp-a1'),
                   what="tenant-a's port")
    _probe(ctx, neutron, controller, 'probe1')
    # NbApi published each on its tenant's topic; only tenant-a came.
    assert [(u.key, u.topic) for u in controller.updates
            if u.table == 'lswitch' or u.table == 'lport'] == [
        ('ls-a1', 'tenant-a'), ('lp-a1', 'tenant-a')], controller.updates
    assert controller.get(l2.LogicalSwitch, 'ls-b1') is None
    controller.unregister_topic('tenant-a')
    neutron.create(_switch('ls-a2', 'tenant-a'))
    _probe(ctx, neutron, controller, 'probe2')
    assert 'ls-a2' not in controller.keys()
    assert controller.get(l2.LogicalSwitch, 'ls-a1') is None  # dropped
    _no_errors(controller)


def scenario_nb_recover_callback(ctx):
    _configure()
    controller_nb, controller = _controller(ctx)
    neutron = _neutron()
    neutron.create(_switch('ls1', 'tenant1'), skip_send_event=True)
    # 4.0.0: the driver's, the publisher's and the subscriber's process_ha,
    # then the controller's sync, which finds ls1 in the NB database.
    controller_nb.db_recover_callback()
    assert controller_nb.driver.calls['process_ha'] == 1
    assert controller.syncs == 1
    assert controller.get(l2.LogicalSwitch, 'ls1') is not None
    neutron.db_recover_callback()  # neutron side: no controller to sync
    assert neutron.driver.calls['process_ha'] == 1
    # 'dbrestart' through the queue ends in the same callback.
    controller_nb.db_change_callback(None, None, 'dbrestart', None)
    ctx.wait_until(lambda: controller.syncs == 2, what='the second sync')
    assert controller_nb.driver.calls['process_ha'] == 2
    _no_errors(controller)


def scenario_nb_sync_after_reconnect(ctx):
    _configure()
    controller_nb, controller = _controller(ctx)
    neutron = _neutron()
    neutron.create(_switch('ls1', 'tenant1'))
    ctx.wait_until(lambda: controller.get(l2.LogicalSwitch, 'ls1'),
                   what='ls1')
    # In the NB database, never announced: what a controller misses while
    # it is cut off. Only a resync brings it.
    neutron.create(_switch('ls-missed', 'tenant1'), skip_send_event=True)
    assert ctx.ask_parent('restart-server') == 'done'
    ctx.wait_until(lambda: controller.syncs >= 1, timeout=30,
                   what='the sync df-nats sends after the reconnect')
    syncs = [u for u in controller.updates if u.action == 'sync']
    assert len(syncs) == 1 and isinstance(syncs[0], db_common.DbUpdate)
    assert (syncs[0].table, syncs[0].key, syncs[0].value) == (
        None, None, None)
    assert controller.get(l2.LogicalSwitch, 'ls-missed') is not None
    neutron.create(_switch('ls2', 'tenant1'))
    ctx.wait_until(lambda: controller.get(l2.LogicalSwitch, 'ls2'),
                   what='ls2 after the reconnect')
    assert controller_nb.subscriber.stats['syncs'] == 1
    _no_errors(controller)


def scenario_nb_sync_after_gap(ctx):
    """A publisher's sequence gap (its event 2 never arrives) ends in the
    same resync through NbApi's queue.
    """
    _configure()
    controller_nb, controller = _controller(ctx)
    neutron = _neutron()
    neutron.create(_switch('ls-missed', 'tenant1'), skip_send_event=True)
    gap = _worker('native', 'gap-publisher', ctx.url, '3')
    assert gap.wait(60) == 0, gap.stderr_text(4000)
    ctx.wait_until(lambda: controller.syncs >= 1, timeout=20,
                   what='the sync after the gap')
    assert [(u.action, u.key) for u in controller.updates] == [
        ('create', 'gap1'), ('create', 'gap3'), ('sync', None)], (
            controller.updates)
    # The resync made the controller's store the NB database's content:
    # the switch never announced is there, the chassis only announced (the
    # gap publisher wrote no NB row) are gone.
    assert controller.get(l2.LogicalSwitch, 'ls-missed') is not None
    assert controller.get(core.Chassis, 'gap1') is None
    assert controller.get(core.Chassis, 'gap3') is None
    stats = controller_nb.subscriber.stats
    assert (stats['gaps'], stats['missed'], stats['syncs']) == (1, 1, 1)
    _no_errors(controller)


def _gap_publisher(url, last):
    """Events 1 and ``last`` of one publisher stream on topic 'D', as
    df-nats numbers them, sent with plain nats-py: those between are lost.
    """
    import asyncio

    import msgpack
    import nats

    from df_nats.wire import sequence
    from df_nats.wire import subjects

    subject = subjects.SubjectMap('dragonflow').subject('D')
    incarnation = sequence.new_incarnation()

    async def send():
        nc = await nats.connect(url)
        for n in (1, last):
            chassis = core.Chassis(id='gap%d' % n, ip='192.0.2.%d' % n,
                                   tunnel_types=['vxlan'])
            body = msgpack.packb({'table': 'chassis', 'key': chassis.id,
                                  'action': 'create',
                                  'value': chassis.to_json(), 'topic': 'D'})
            await nc.publish(subject, body, headers={
                sequence.HEADER_SEQ: sequence.seq_header(incarnation, n,
                                                         'gap-test')})
        await nc.flush()
        await nc.close()

    asyncio.run(send())


def _log_records(logger_name):
    records = []

    class Recorder(std_logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    std_logging.getLogger(logger_name).addHandler(Recorder())
    return records


def scenario_nb_multiproc_workers(ctx):
    """4.0.0 neutron-server with pub_sub_use_multiproc = True and
    pub_sub_multiproc_driver = nats: two API workers, each its own process
    and NATS connection, publish without df-publisher-service.
    """
    warnings = _log_records('df_nats.pubsub.multiproc')
    _configure(use_multiproc=True)
    controller_nb, controller = _controller(ctx)
    n = 20
    workers = [_worker(ctx.world, 'neutron-worker', ctx.url, str(n))
               for _ in range(2)]
    pids = []
    for proc in workers:
        assert proc.wait(120) == 0, proc.stderr_text(4000)
        pids.append(proc.expect('worker-ok', timeout=0)['pid'])
        err = proc.stderr_text(None)
        assert 'pub_sub_multiproc_driver' not in err, err[-4000:]
    expected = {'w%d-%d' % (pid, i) for pid in pids for i in range(n)}
    ctx.wait_until(lambda: expected <= set(controller.keys('create')),
                   timeout=30, what='both workers\' switches')
    for key in expected:
        switch = controller.get(l2.LogicalSwitch, key)
        assert switch.topic == 'tenant1' and switch.mtu == 1500, switch
    assert warnings == [], warnings
    _no_errors(controller)


def _neutron_worker(n):
    """One API worker: NbApi.get_instance(True) as 4.0.0's mech driver
    calls it after the fork, with the multiproc publisher set to df-nats.
    """
    _configure(use_multiproc=True)
    nb_api = api_nb.NbApi.get_instance(True)
    assert nb_api.pub_sub_use_multiproc is True
    pub = nb_api.publisher
    assert isinstance(pub, df_publisher.NatsPublisher), pub
    # This process's own connection, created here (no relay, no sharing).
    assert pub._conn is process_context.current().connection
    for i in range(n):
        nb_api.create(_switch('w%d-%d' % (os.getpid(), i), 'tenant1',
                              mtu=1500))
    pub.flush()
    pub.close()
    worker.say('worker-ok', pid=os.getpid())


def scenario_nb_multiproc_other_driver_warns(ctx):
    """4.0.0's default pub_sub_use_multiproc = True with another
    pub_sub_multiproc_driver: df-nats warns once, naming the options.
    """
    warnings = _log_records('df_nats.pubsub.multiproc')
    _configure(use_multiproc=True, multiproc_driver=OTHER_PUBSUB)
    neutron = api_nb.NbApi(memory_nb_driver.MemoryNbDriver(),
                           use_pubsub=True, is_neutron_server=True)
    neutron.initialize(db_ip='127.0.0.1', db_port=0)
    assert not isinstance(neutron.publisher, df_publisher.NatsPublisher)
    assert isinstance(neutron.subscriber, df_subscriber.NatsSubscriber)
    neutron.create(_switch('ls1', 'tenant1'))
    assert len(memory_nb_driver.SENT) == 1, memory_nb_driver.SENT
    again = api_nb.NbApi(memory_nb_driver.MemoryNbDriver(),
                         use_pubsub=True, is_neutron_server=True)
    again.initialize(db_ip='127.0.0.1', db_port=0)
    assert len(warnings) == 1, warnings
    for text in ('pub_sub_multiproc_driver = %s' % OTHER_PUBSUB,
                 'pub_sub_use_multiproc = True', 'df-publisher-service'):
        assert text in warnings[0], warnings[0]


PORT_UPDATES = 40  # port-status updates sent before and after the kill


def _load_neutron_notifier():
    """Dragonflow's neutron notifier, loaded as 4.0.0's ML2 mechanism
    driver and local controller load it.
    """
    return df_utils.load_driver(cfg.CONF.df.neutron_notifier,
                                df_utils.DF_NEUTRON_NOTIFIER_DRIVER_NAMESPACE)


def _neutron_listener(host):
    """A neutron-server as 4.0.0's mechanism driver sets it up after the
    fork (``enable_neutron_notifier``): its notifier registers the
    ``Listener`` of ``host`` and, through ``register_listener_callback``,
    subscribes to its topic with the notifier's ``notify_neutron_server``
    as callback, which hands port statuses to the core plugin.
    """
    _configure()
    cfg.CONF.set_override('enable_neutron_notifier', True, group='df')
    memory_nb_driver.install_neutron_doubles(
        memory_nb_driver.RecordingCorePlugin(
            lambda port, status: worker.say('status', status=port,
                                            value=status)))
    cfg.CONF.set_override('host', host)
    cfg.CONF.set_override('client_name', 'df-%s' % host, group='df_nats')
    nb_api = _neutron()
    notifier = _load_neutron_notifier()
    notifier.initialize(nb_api, is_neutron_server=True)
    listener = nb_api.get(core.Listener(id=host))
    assert listener.ppid == os.getppid() and listener.timestamp, listener
    assert isinstance(nb_api.subscriber, df_subscriber.NatsSubscriber)
    assert nb_api.subscriber.is_running
    worker.say('ready', pid=os.getpid(), topic=listener.topic,
               listener=listener.to_json())
    for command in worker.commands():
        if command['type'] in ('exit', 'quit'):
            break
    notifier.heart_beat_reporter.stop()
    nb_api.subscriber.close()


def _worker(world, *args, label=None):
    """A worker process of this module (see "Worker mode" above)."""
    log_dir = os.environ.get('DF_NATS_TEST_TMP')
    label = label or '%s-%s' % (args[0], world)
    return worker_process.WorkerProcess(
        'tests.functional.dragonflow_scenarios', args, world=world,
        label=label, paths=[ROOT], cwd=ROOT,
        log_path=os.path.join(log_dir, label + '.log') if log_dir else None)


class _NeutronServer:
    """A ``neutron-listener`` process in one world, and the port statuses
    its core plugin was given (its ``status`` messages, as they come).
    """

    def __init__(self, ctx, world, queue_group):
        self.host = 'neutron-%s' % world
        self.world = world
        args = ['neutron-listener', ctx.url, self.host]
        if not queue_group:
            args.append('--no-listener-queue-group')
        self.proc = _worker(world, *args, label=self.host)
        ready = self.proc.expect('ready', timeout=60)
        self.topic = ready['topic']
        self.listener = ready['listener']

    def failure(self):
        return '%s: %s\n%s' % (self.host, self.proc.received(),
                               self.proc.stderr_text(4000))

    def statuses(self):
        """The ports whose status the core plugin was given, in order."""
        return [line['status'] for line in self.proc.received()
                if line.get('type') == 'status']

    def kill(self):
        """SIGKILL, as a neutron-server dies."""
        self.proc.kill()

    def stop(self):
        if self.proc.proc.poll() is None:
            self.proc.send('exit')
            assert self.proc.wait(30) == 0, self.failure()


def _port_status_to_listeners(ctx, queue_group):
    """4.0.0's port-status path from a compute node (this process) to two
    neutron-servers, one per world; the one of this world is killed.
    """
    _configure()
    cfg.CONF.set_override('enable_neutron_notifier', True, group='df')
    cfg.CONF.set_override('listener_queue_group', queue_group,
                          group='df_nats')
    memory_nb_driver.install_neutron_doubles(core_plugin=None)
    other = 'native' if ctx.world == 'eventlet' else 'eventlet'
    servers = [_NeutronServer(ctx, world, queue_group)
               for world in (other, ctx.world)]
    try:
        _port_status_rounds(ctx, queue_group, *servers)
        servers[0].stop()
    except BaseException:
        for server in servers:
            sys.stderr.write(server.failure() + '\n')
        raise
    finally:
        for server in servers:
            server.kill()


def _port_status_rounds(ctx, queue_group, survivor, victim):
    # A local controller's NbApi and notifier (4.0.0 DfLocalController):
    # the notifier initialises the NbApi's publisher.
    compute = api_nb.NbApi(memory_nb_driver.MemoryNbDriver(),
                           use_pubsub=True, is_neutron_server=False)
    compute.initialize(db_ip='127.0.0.1', db_port=0)
    notifier = _load_neutron_notifier()
    notifier.initialize(nb_api=compute, is_neutron_server=False)
    assert isinstance(compute.publisher, df_publisher.NatsPublisher)
    sent = {}  # port -> the listener topic it was addressed to

    def share(server):
        # The NB database the neutron-servers wrote their Listener to.
        compute.driver.create_key(core.Listener.table_name, server.host,
                                  server.listener, server.topic)

    def handled():
        return survivor.statuses() + victim.statuses()

    # One listener in the NB database: 4.0.0's whole compute path picks it
    # and publishes to its topic.
    share(survivor)
    notifier.notify_port_status(ovs.OvsPort(id='ovs-0', lport='port-solo'),
                                'ACTIVE')
    sent['port-solo'] = survivor.topic
    ctx.wait_until(lambda: 'port-solo' in handled(), what='port-solo')
    # Two: 4.0.0's pick (listeners[:len(listeners) / 2]) raises TypeError
    # on Python 3 before anything is sent.
    share(victim)
    try:
        notifier.notify_port_status(
            ovs.OvsPort(id='ovs-1', lport='port-unpicked'), 'ACTIVE')
    except TypeError:
        pass
    else:
        raise AssertionError('4.0.0 picked one of two listeners')

    def publish(first, topics):
        for i in range(first, first + PORT_UPDATES):
            port = 'port-%03d' % i
            topic = topics[i % len(topics)]
            # What 4.0.0's notifier sends once it has picked a listener
            # (the pick itself fails, above): the port's 'update' in table
            # lport, its status as value, on that listener's topic.
            compute.publisher.send_event(db_common.DbUpdate(
                l2.LogicalPort.table_name, port, 'update', 'ACTIVE',
                topic=topic))
            # Each update a message of its own, as at a compute node's
            # rate: a burst would go out as one batch, to one member.
            compute.publisher.flush()
            sent[port] = topic

    publish(0, [victim.topic, survivor.topic])
    before = set(sent)
    ctx.wait_until(lambda: set(handled()) == before, what='round 1')

    victim.kill()
    assert ctx.ask_parent('connection-gone df-%s' % victim.host) == 'done'
    publish(100, [victim.topic, survivor.topic])
    after = set(sent) - before
    to_dead = {p for p in after if sent[p] == victim.topic}
    if queue_group:
        ctx.wait_until(lambda: set(handled()) == set(sent),
                       what='round 2 by the live neutron-server')
    else:
        ctx.wait_until(lambda: after - to_dead <= set(handled()),
                       what='round 2 to the live listener')
    ctx.settle(0.5)
    everything = handled()
    assert len(everything) == len(set(everything)), 'handled twice'
    assert 'port-unpicked' not in everything
    if queue_group:
        # Exactly once across the two, whichever topic was addressed;
        # the dead one's included, by the live one.
        assert set(everything) == set(sent)
        assert survivor.statuses() and victim.statuses()  # both worlds
        assert after <= set(survivor.statuses())
    else:
        # Each got what was addressed to it while it lived, and no more.
        for server in (survivor, victim):
            assert set(server.statuses()) == {
                p for p, t in sent.items() if t == server.topic
                and (server is survivor or p in before)}, server.host
        assert not to_dead & set(everything)
    print('figures: listener_queue_group=%s, compute %s, killed %s: sent'
          ' %d, handled once %d (%s %d, %s %d), twice 0, not handled %d;'
          ' after the kill %d sent, %d to the dead listener\'s topic, %d'
          ' of those handled' % (
              queue_group, ctx.world, victim.host, len(sent),
              len(everything), survivor.host, len(survivor.statuses()),
              victim.host, len(victim.statuses()),
              len(set(sent) - set(everything)), len(after), len(to_dead),
              len(to_dead & set(everything))))


def scenario_nb_listener_port_status(ctx):
    """Through df-nats' listeners' queue group: every update handled
    once, the ones addressed to a killed neutron-server too.
    """
    _port_status_to_listeners(ctx, queue_group=True)


def scenario_nb_listener_port_status_without_queue_group(ctx):
    """listener_queue_group = False: each listener gets only its own
    topic, and what is addressed to a dead one is lost.
    """
    _port_status_to_listeners(ctx, queue_group=False)


def main(argv):
    import argparse
    from df_nats.cmd import common
    parser = argparse.ArgumentParser(prog='dragonflow_scenarios')
    parser.add_argument('--no-listener-queue-group', action='store_true')
    parser.add_argument('role', choices=('neutron-worker', 'gap-publisher',
                                         'neutron-listener'))
    parser.add_argument('url')
    parser.add_argument('arg', help='the number of events, or the host'
                        ' of a neutron-listener')
    args = parser.parse_args(argv)
    common.setup_process(servers=[args.url])
    if args.no_listener_queue_group:
        cfg.CONF.set_override('listener_queue_group', False,
                              group='df_nats')
    assert df_utils.DF_PUBSUB_DRIVER_NAMESPACE == common.DRIVER_NAMESPACE
    if args.role == 'gap-publisher':
        _gap_publisher(args.url, int(args.arg))
    elif args.role == 'neutron-listener':
        _neutron_listener(args.arg)
    else:
        _neutron_worker(int(args.arg))
    return 0
