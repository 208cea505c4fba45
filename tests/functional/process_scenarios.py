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

"""A process's life with the driver: forks (objects made before
``os.fork()``, children keeping or replacing the eventlet hub) and its
exit, run by world_runner (``--module=process_scenarios``) in an eventlet
or a native process.
"""

import os
import sys
import traceback

from df_nats.pubsub import api
from df_nats.pubsub import process_context


def scenario_driver_made_before_fork(ctx):
    """Driver objects made before ``os.fork()`` work in the child.

    The parent initializes a publisher, starts one subscriber and creates
    (without starting) another, then forks, as neutron-server loads its
    plugins and then forks API workers. The child uses the inherited
    publisher, starts the second subscriber, and touches the running one;
    it must get a connection of its own. The parent's connection must be
    left alone: it keeps working, without a single reconnect.
    """
    def event(key):
        return api.DbUpdate('lport', key, 'create', None, topic='F')

    class Keys:
        def __init__(self):
            self.keys, self.syncs = [], 0

        def __call__(self, table, key, action, value, topic):
            if action == 'sync':
                self.syncs += 1
            else:
                self.keys.append(key)

    running_got, later_got = Keys(), Keys()
    pub = ctx.driver().get_publisher()
    pub.initialize()
    running = ctx.driver().get_subscriber()
    running.initialize(running_got)
    running.register_topic('F')
    running.daemonize()
    later = ctx.driver().get_subscriber()
    later.initialize(later_got)
    later.register_topic('F')
    pub.send_event(event('before-fork'))
    ctx.wait_until(lambda: 'before-fork' in running_got.keys, 10,
                   'before-fork')
    parent_context = process_context.current()
    parent_conn = parent_context.connection
    parent_bridge = parent_context.bridge
    parent_id = pub.publisher_id
    to_parent_r, to_parent_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            if ctx.world == 'eventlet':
                # As oslo.service does in a forked worker: a hub of its
                # own, not the parent's epoll.
                from eventlet import hubs
                hubs.use_hub()
            later.daemonize()
            pub.send_event(event('from-child'))
            child_conn = process_context.current().connection
            # The parent's state is marked, never reused.
            assert parent_context.inherited
            assert process_context.current() is not parent_context
            assert child_conn is not parent_conn
            assert pub._conn is child_conn and later._conn is child_conn
            assert process_context.current().bridge is not parent_bridge
            # The child registered itself, under an id of its own.
            child_registration = process_context.current().registration
            assert child_registration.pid == os.getpid()
            assert child_registration.registered
            assert pub.publisher_id == child_registration.publisher_id
            assert pub.publisher_id != parent_id
            ctx.wait_until(lambda: 'from-child' in later_got.keys, 20,
                           'from-child')
            # The subscriber that ran in the parent resumes here, on the
            # child's connection, with a sync for what went by unheard.
            assert running.register_topic('G') is True
            assert running._conn is child_conn
            ctx.wait_until(lambda: running_got.syncs == 1, 10, 'a sync')
            os.write(to_parent_w, b'r')
            ctx.wait_until(lambda: 'from-parent' in later_got.keys
                           and 'from-parent' in running_got.keys, 20,
                           'from-parent')
            assert child_conn.stats['reconnects'] == 0
            pub.close()
            later.close()
            running.close()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    # Parent.
    assert os.read(to_parent_r, 1) == b'r'
    pub.send_event(event('from-parent'))
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
    pub.send_event(event('parent-after'))
    ctx.wait_until(lambda: 'parent-after' in running_got.keys, 10,
                   'parent-after')
    assert process_context.current() is parent_context
    assert not parent_context.inherited
    assert process_context.current().connection is parent_conn
    assert pub.publisher_id == parent_id
    assert process_context.current().registration.registered
    assert pub._conn is parent_conn and parent_conn.connected
    assert parent_conn.stats['reconnects'] == 0, parent_conn.stats
    assert parent_conn.stats['disconnects'] == 0, parent_conn.stats
    assert running_got.syncs == 0
    # The parent heard the child's events as any other publisher's.
    assert running_got.keys == ['before-fork', 'from-child', 'from-parent',
                                'parent-after'], running_got.keys
    assert later_got.keys == []
    pub.close()
    running.close()


def _forked_children(ctx, use_hub):
    """Two children forked after the parent's publisher was initialized
    publish 200 events each; then the parent publishes again.
    """
    import eventlet.hubs
    parent = ctx.driver().get_publisher()
    parent.initialize()
    children = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                if use_hub:
                    eventlet.hubs.use_hub()
                pub = ctx.driver().get_publisher()
                pub.initialize()
                for n in range(200):
                    pub.send_event(api.DbUpdate('t', str(n), 'set',
                                                '{}'))
                assert pub.flush(10)
                pub.close()
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        children.append(pid)
    for pid in children:
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    parent.send_event(api.DbUpdate('t', 'p', 'set', '{}'))
    assert parent.flush(10)
    parent.close()


def scenario_forked_children_use_hub(ctx):
    """Children that replace the hub, as oslo.service's workers do."""
    _forked_children(ctx, use_hub=True)


def scenario_forked_children_keep_hub(ctx):
    """Children that keep their parent's hub (and its epoll)."""
    _forked_children(ctx, use_hub=False)


def scenario_events_queued_at_exit(ctx):
    """Events still queued when the interpreter exits are sent: enough
    that the drain is still going when the scenario ends (without the
    flush at exit, the eventlet run lost events). No flush, no close.
    """
    pub = ctx.driver().get_publisher()
    pub.initialize()
    for n in range(50000):
        pub.send_event(api.DbUpdate('t', str(n), 'set', '{}',
                                    topic='exit'))
    print('SENT')
