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

"""Set-up shared by the df-nats commands and their worker processes."""

import sys

from oslo_config import cfg
from oslo_log import log as logging
from stevedore import driver as stevedore_driver

from df_nats.conf import options
from df_nats import errors

DRIVER_NAMESPACE = 'dragonflow.pubsub_driver'
DRIVER_NAME = 'nats'


def setup_process(servers=None, debug=False, config_files=None):
    """Parse configuration and set up oslo.log as a Dragonflow service does.

    ``servers`` overrides ``[df_nats] servers``.
    """
    logging.register_options(cfg.CONF)
    cfg.CONF([], project='df-nats',
             default_config_files=config_files or [])
    cfg.CONF.set_override('debug', debug)
    # stdout carries the commands' own output; logs go to stderr.
    cfg.CONF.set_override('use_stderr', True)
    logging.setup(cfg.CONF, 'df-nats')
    if servers:
        cfg.CONF.set_override('servers', servers, group=options.GROUP)


def connect(args, command, err=None, service_endpoint=True):
    """Set up a command's process from its connection options, connect.

    ``args`` has the options of ``--servers``, ``--config-file`` and
    ``--debug``. Returns this process's connection, acquired (release it
    when done), or None once the reason it failed is written to ``err``.
    ``service_endpoint=False``: this process is not listed as an instance
    of the NATS service df-nats.
    """
    from df_nats.pubsub import process_context
    setup_process(args.servers, args.debug, args.config_file)
    if not service_endpoint:
        cfg.CONF.set_override('service_endpoint', False,
                              group=options.GROUP)
    conn = process_context.current().connection
    try:
        conn.acquire()
    except errors.ConnectError as exc:
        (err or sys.stderr).write('df-nats %s: %s\n' % (command, exc))
        return None
    return conn


def load_driver(name=DRIVER_NAME):
    """Load the pub/sub driver through stevedore, as Dragonflow does."""
    manager = stevedore_driver.DriverManager(
        namespace=DRIVER_NAMESPACE, name=name, invoke_on_load=True)
    return manager.driver
