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

"""The df-nats state of one process, and what becomes of it at a fork.

A process has one bridge (the loop thread), one NATS connection and one
publisher registration, shared by every driver instance in it. They live
in one ``ProcessContext``; publishers and subscribers ask ``current()``
for it (or are given one, in tests).

A fork copies the parent's context into the child, but not the parent's
loop thread, so nothing of it may be used there, nor even closed or
garbage-collected (a finalizer would act on the parent's sockets and
pipes, shared with the child). The one at-fork hook below marks the
copy ``inherited``, keeps it referenced, and lets the child's first
``current()`` build a context of its own. A publisher or subscriber that
holds an inherited context moves to the child's (see theirs).
"""

import atexit
import os
import threading
from typing import List, Optional

from oslo_config import cfg

# Three modules aliased: ProcessContext's properties are named bridge,
# connection and registration.
from df_nats.conf import timeouts
from df_nats.loop import bridge as df_bridge
from df_nats.loop import log
from df_nats.loop import natives
from df_nats.registry import registration as registry
from df_nats.transport import connection as df_connection

LOG = log.get_logger(__name__)


class ProcessContext:
    """This process's bridge, connection and registration.

    Each is built on first use; one given to the constructor is used
    instead (tests pass stand-ins). ``inherited`` is True in a forked
    child for its parent's context, which the child must not touch.
    """

    def __init__(self, conf=None, *, bridge=None, connection=None,
                 registration=None):
        self.inherited = False
        self._conf = conf
        self._parts = {'bridge': bridge, 'connection': connection,
                       'registration': registration}
        self._lock = threading.RLock()

    @property
    def bridge(self) -> df_bridge.Bridge:
        return self._part('bridge', self._new_bridge)

    @property
    def connection(self) -> df_connection.Connection:
        return self._part('connection', self._new_connection)

    @property
    def registration(self) -> registry.Registration:
        return self._part('registration', self._new_registration)

    def _part(self, name, new):
        part = self._parts[name]
        if part is not None:
            return part
        # Built once per context, by whichever thread asks first.
        with self._lock:
            part = self._parts[name]
            if part is None:
                part = self._parts[name] = new()
            return part

    def _new_bridge(self):
        bridge = df_bridge.Bridge()
        if bridge.green:
            _warn_if_hub_inherited()
        return bridge

    def _new_connection(self):
        # ``is None``: a ConfigOpts is a Mapping, false when empty.
        conf = cfg.CONF if self._conf is None else self._conf
        return df_connection.Connection(conf, self.bridge)

    def _new_registration(self):
        return registry.Registration(self.connection)


_current: Optional[ProcessContext] = None
_current_lock = threading.Lock()
# Contexts inherited from parent processes: kept referenced, never used.
_inherited: List[ProcessContext] = []
# The eventlet hub this process had when it was forked, if any.
_hub_at_fork = None


def current() -> ProcessContext:
    """This process's context, created on first use (anew after a fork)."""
    global _current
    context = _current
    if context is not None:
        return context
    with _current_lock:
        if _current is None:
            _current = ProcessContext()
        return _current


def renew() -> ProcessContext:
    """Give this process a new context sharing the current one's bridge.

    Driver instances made afterwards get a connection (and registration)
    of their own, with the options as they are now; those made before
    keep theirs. For tests and benchmarks that need that in one process.
    """
    global _current
    bridge = current().bridge
    with _current_lock:
        _current = ProcessContext(bridge=bridge)
        return _current


def _after_fork_in_child():
    global _current, _current_lock, _hub_at_fork
    # A parent thread may have held the lock at the moment of the fork.
    _current_lock = threading.Lock()
    if _current is not None:
        _current.inherited = True
        _inherited.append(_current)
        _current = None
    log.forget_bridge()
    if natives.is_green():
        from eventlet import hubs
        _hub_at_fork = getattr(hubs._threadlocal, 'hub', None)


os.register_at_fork(after_in_child=_after_fork_in_child)


def _warn_if_hub_inherited():
    from eventlet import hubs
    if _hub_at_fork is not None and hubs.get_hub() is _hub_at_fork:
        # Its epoll is shared with the parent and the other children:
        # their wake-ups reach us and ours reach them.
        LOG.warning('df-nats: this process was forked under eventlet and'
                    ' still runs its parent\'s hub; call'
                    ' eventlet.hubs.use_hub() in the child right after the'
                    ' fork, as oslo.service does')


@atexit.register
def _flush_at_exit():
    context = _current
    conn = context._parts['connection'] if context is not None else None
    if conn is not None and conn.connected:
        conn.sender.flush(min(conn.conf.close_timeout, timeouts.EXIT_FLUSH))
