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

"""Test doubles for the parts of Dragonflow that are not pub/sub.

``MemoryNbDriver`` is a northbound database on Dragonflow 4.0.0's
``db_api.DbApi``, in memory and shared by every instance in one process,
so that a neutron-side and a controller-side ``NbApi`` see the same data.
``RecordingPubSub`` is another pub/sub driver (Dragonflow's own agent base
classes, recording instead of sending), for a neutron-server whose
``pub_sub_multiproc_driver`` is not df-nats. Dragonflow loads both by class
path. ``install_neutron_doubles`` stands in for the neutron-server pieces
that Dragonflow's neutron notifier reaches outside pub/sub (its SQL lock,
the admin context, the core plugin). Importing this module needs
Dragonflow.
"""

import collections
import sys
import threading
import types

from dragonflow.common import exceptions as df_exceptions
from dragonflow.db import db_api
from dragonflow.db import pub_sub_api

# table -> key -> (value, topic), shared by the process's drivers.
_TABLES = collections.defaultdict(dict)
_UNIQUE_KEYS = collections.Counter()
_LOCK = threading.Lock()
# (packed data, topic) of every event a RecordingPubSub publisher sent.
SENT = []


class MemoryNbDriver(db_api.DbApi):
    """An in-memory NB database; ``calls`` counts the HA hooks."""

    def __init__(self):
        super().__init__()
        self.calls = collections.Counter()
        self.is_neutron_server = None

    def initialize(self, db_ip, db_port, **args):
        self.calls['initialize'] += 1

    def create_table(self, table):
        with _LOCK:
            _TABLES.setdefault(table, {})

    def delete_table(self, table):
        with _LOCK:
            _TABLES.pop(table, None)

    def get_key(self, table, key, topic=None):
        with _LOCK:
            try:
                return _TABLES[table][key][0]
            except KeyError:
                raise df_exceptions.DBKeyNotFound(key=key)

    def set_key(self, table, key, value, topic=None):
        with _LOCK:
            _TABLES[table][key] = (value, topic)

    def create_key(self, table, key, value, topic=None):
        with _LOCK:
            _TABLES[table][key] = (value, topic)

    def delete_key(self, table, key, topic=None):
        with _LOCK:
            if key not in _TABLES[table]:
                raise df_exceptions.DBKeyNotFound(key=key)
            del _TABLES[table][key]

    def _rows(self, table, topic):
        with _LOCK:
            return [(key, value) for key, (value, t)
                    in _TABLES[table].items()
                    if topic is None or t == topic]

    def get_all_entries(self, table, topic=None):
        return [value for _, value in self._rows(table, topic)]

    def get_all_keys(self, table, topic=None):
        return [key for key, _ in self._rows(table, topic)]

    def allocate_unique_key(self, table):
        with _LOCK:
            _UNIQUE_KEYS[table] += 1
            return _UNIQUE_KEYS[table]

    def process_ha(self):
        self.calls['process_ha'] += 1

    def set_neutron_server(self, is_neutron_server):
        self.is_neutron_server = is_neutron_server


class _RecordingPublisher(pub_sub_api.PublisherAgentBase):

    def initialize(self):
        pass

    def _send_event(self, data, topic):
        SENT.append((data, topic))

    def close(self):
        pass


class RecordingPubSub(pub_sub_api.PubSubApi):
    """Another pub/sub driver: its publisher records, never sends."""

    def get_publisher(self):
        return _RecordingPublisher()

    def get_subscriber(self):
        raise AssertionError('NbApi takes its subscriber from'
                             ' pub_sub_driver')


class RecordingCorePlugin:
    """neutron-server's core plugin as Dragonflow's listener callback calls
    it: ``on_status(port_id, status)`` for each port status it is given.
    """

    def __init__(self, on_status):
        self._on_status = on_status

    def update_port_status(self, context, port_id, status):
        assert context is _ADMIN_CONTEXT, context
        self._on_status(port_id, status)


_ADMIN_CONTEXT = object()


def install_neutron_doubles(core_plugin):
    """Let ``dragonflow.db.pubsub_drivers.nb_api_neutron_notifier`` (4.0.0)
    be imported and run without neutron and its SQL database.

    Three modules it imports are replaced, before it is imported: Dragonflow's
    ``lockedobjects_db`` (a row lock in neutron's SQL database, around the
    listener's registration: one process per host here, nothing to lock),
    neutron-lib's ``context`` (its admin context needs oslo.db and
    oslo.policy) and ``plugins.directory`` (it returns ``core_plugin``).
    neutron-server's ``host`` option, which the notifier reads, is
    registered as neutron does.
    """
    from oslo_config import cfg

    import dragonflow.db.neutron
    import neutron_lib.plugins

    lock_db = types.ModuleType('dragonflow.db.neutron.lockedobjects_db')
    lock_db.RESOURCE_NEUTRON_LISTENER = 10
    lock_db.wrap_db_lock = lambda resource: (lambda function: function)
    context = types.ModuleType('neutron_lib.context')
    context.get_admin_context = lambda: _ADMIN_CONTEXT
    directory = types.ModuleType('neutron_lib.plugins.directory')
    directory.get_plugin = lambda alias='CORE': core_plugin
    for parent, name, module in [
            (dragonflow.db.neutron, 'lockedobjects_db', lock_db),
            (sys.modules['neutron_lib'], 'context', context),
            (neutron_lib.plugins, 'directory', directory)]:
        assert name not in vars(parent), 'imported already: %s' % name
        sys.modules[module.__name__] = module
        setattr(parent, name, module)
    cfg.CONF.register_opt(cfg.StrOpt('host'))
