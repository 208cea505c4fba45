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

"""One context per process: built once, stand-ins injected, and a fork."""

import os

from df_nats.conf import options
from df_nats.loop import log
from df_nats.pubsub import process_context


def test_the_process_has_one_context_until_renewed():
    context = process_context.current()
    assert process_context.current() is context
    renewed = process_context.renew()
    assert process_context.current() is renewed is not context
    # One loop thread per process, whatever the number of connections.
    assert renewed.bridge is context.bridge


def test_parts_given_are_used_and_nothing_else_is_built():
    bridge, conn, registration = object(), object(), object()
    context = process_context.ProcessContext(
        bridge=bridge, connection=conn, registration=registration)
    assert context.bridge is bridge
    assert context.connection is conn
    assert context.registration is registration
    assert not context.inherited


def test_connection_and_registration_built_once_on_the_bridge(conf):
    conf.config(group=options.GROUP, subject_prefix='ctx')
    bridge = process_context.current().bridge
    context = process_context.ProcessContext(conf.conf, bridge=bridge)
    conn = context.connection
    assert context.connection is conn and conn.bridge is bridge
    assert conn.conf.subject_prefix == 'ctx'
    registration = context.registration
    assert context.registration is registration
    assert registration.conn is conn and registration.pid == os.getpid()


def test_a_forked_child_gets_its_own_context():
    parent = process_context.current()
    parent_bridge = parent.bridge
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        problems = []
        try:
            if not parent.inherited:
                problems.append('parent context not marked inherited')
            if parent not in process_context._inherited:
                problems.append('parent context not kept referenced')
            if log._diverter.bridge is not None:
                problems.append('loop records still go to the parent')
            child = process_context.current()
            if child is parent or child.inherited:
                problems.append('child context is the parent\'s')
            if child.bridge is parent_bridge:
                problems.append('child uses the parent\'s bridge')
            elif child.bridge.pid != os.getpid():
                problems.append('child bridge has pid %s'
                                % child.bridge.pid)
            elif log._diverter.bridge is not child.bridge:
                problems.append('loop records not diverted to the child')
        except BaseException as exc:
            problems.append(repr(exc))
        finally:
            os.write(write_fd, '; '.join(problems).encode() or b'ok')
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, 'rb') as answer:
        said = answer.read().decode()
    os.waitpid(pid, 0)
    assert said == 'ok'
    # The parent's own state is untouched.
    assert process_context.current() is parent and not parent.inherited
    assert log._diverter.bridge is parent_bridge
