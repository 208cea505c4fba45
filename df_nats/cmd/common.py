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

"""Set-up shared by the df-nats commands and their worker processes.

The commands that talk to a deployment's NATS (check, exporter,
publishers, stats, tail) read its configuration as its services do:
``--config-file`` when given, else ``/etc/neutron/neutron.conf`` and
``/etc/neutron/dragonflow.ini`` when they exist. The servers come from
``--servers``, else from ``[df_nats] servers`` in those files, else from
the environment variable ``NATS_URL`` (the NATS tools' habit), else the
option's default. ``NATS_URL`` may carry credentials
(``nats://user:password@host:4222``): they become the user and password,
or the token, unless the configuration sets those; neither the variable
nor its credentials are ever printed.
"""

import os
import sys
from urllib import parse

from oslo_config import cfg
from oslo_log import log as logging
from stevedore import driver as stevedore_driver

from df_nats.conf import options
from df_nats import errors

DRIVER_NAMESPACE = 'dragonflow.pubsub_driver'
DRIVER_NAME = 'nats'

# Read when no --config-file is given, those that exist, in this order
# (as neutron-server and df-local-controller are usually started).
DEFAULT_CONFIG_FILES = ('/etc/neutron/neutron.conf',
                        '/etc/neutron/dragonflow.ini')
NATS_URL = 'NATS_URL'


def setup_process(servers=None, debug=False, config_files=None,
                  log_level=None):
    """Parse configuration and set up oslo.log as a Dragonflow service does.

    ``servers`` overrides ``[df_nats] servers``. ``log_level``: the
    level of df-nats' own loggers (a name such as ``ERROR``), for a
    command whose output says what went wrong better than log lines.
    """
    logging.register_options(cfg.CONF)
    cfg.CONF([], project='df-nats',
             default_config_files=config_files or [])
    cfg.CONF.set_override('debug', debug)
    # stdout carries the commands' own output; logs go to stderr.
    cfg.CONF.set_override('use_stderr', True)
    if log_level and not debug:
        cfg.CONF.set_override('default_log_levels', list(
            cfg.CONF.default_log_levels) + ['df_nats=%s' % log_level])
    logging.setup(cfg.CONF, 'df-nats')
    if servers:
        cfg.CONF.set_override('servers', servers, group=options.GROUP)


def config_files(given, err=None):
    """The configuration files a command reads.

    ``given`` (``--config-file``) if any, else those of
    ``DEFAULT_CONFIG_FILES`` that exist; one that exists but cannot be
    read is named on ``err`` and left out.
    """
    if given:
        return list(given)
    found = []
    for path in DEFAULT_CONFIG_FILES:
        if not os.path.exists(path):
            continue
        if os.access(path, os.R_OK):
            found.append(path)
        elif err is not None:
            err.write('df-nats: cannot read %s (not used): run as a user'
                      ' who can, or give --config-file\n' % path)
    return found


def nats_url_settings(value):
    """``(servers, credentials)`` from a ``NATS_URL`` value.

    A comma-separated list of URLs (``nats://``, ``tls://``, or
    ``host:port``); the first URL's ``user:password@`` or ``token@``
    becomes ``credentials`` (option name to value), removed from every
    URL. Raises ``ConfigError`` without quoting the value.
    """
    servers, credentials = [], {}
    for url in (u.strip() for u in value.split(',')):
        if not url:
            continue
        if '://' not in url:
            url = 'nats://' + url
        try:
            parts = parse.urlsplit(url)
            parts.port
        except ValueError:
            parts = None
        if parts is None or not parts.hostname:
            raise errors.ConfigError(
                'servers', 'the environment variable %s is not a list of'
                ' NATS URLs (its value is not shown: it may hold'
                ' credentials)' % NATS_URL)
        if parts.username or parts.password:
            if not credentials:
                user = parse.unquote(parts.username or '')
                if parts.password is not None:
                    credentials = {'user': user, 'password': parse.unquote(
                        parts.password)}
                else:
                    credentials = {'token': user}
            netloc = parts.netloc.rpartition('@')[2]
            url = parse.urlunsplit(parts._replace(netloc=netloc))
        servers.append(url)
    return servers, credentials


def _servers_configured() -> bool:
    location = cfg.CONF.get_location('servers', options.GROUP)
    return (location is not None
            and location.location != cfg.Locations.opt_default)


def setup_command(args, err=None, log_level=None, environ=None):
    """Set a command up from its options: files, servers, time limits.

    ``args`` has ``servers``, ``config_file``, ``debug``, and may have
    ``verbose`` (say what was read) and ``timeout`` (seconds for the
    first connection). Returns the configuration files read.
    """
    err = err or sys.stderr
    environ = os.environ if environ is None else environ
    files = config_files(args.config_file, err)
    setup_process(args.servers, args.debug, files, log_level)
    source = '--servers'
    if not args.servers:
        source = 'configuration'
        if not _servers_configured() and environ.get(NATS_URL):
            servers, credentials = nats_url_settings(environ[NATS_URL])
            if servers:
                source = 'the environment variable %s' % NATS_URL
                cfg.CONF.set_override('servers', servers,
                                      group=options.GROUP)
            conf = cfg.CONF[options.GROUP]
            if credentials and not (conf.user or conf.token
                                    or conf.nkey_seed_file
                                    or conf.creds_file):
                for name, value in credentials.items():
                    cfg.CONF.set_override(name, value, group=options.GROUP)
        elif not _servers_configured():
            source = 'the default of [df_nats] servers'
    timeout = getattr(args, 'timeout', None)
    if timeout:
        conf = cfg.CONF[options.GROUP]
        cfg.CONF.set_override('initial_connect_wait', timeout,
                              group=options.GROUP)
        cfg.CONF.set_override('connect_timeout',
                              min(conf.connect_timeout, timeout),
                              group=options.GROUP)
    if getattr(args, 'verbose', False):
        given = 'given' if args.config_file else 'default'
        err.write('df-nats: configuration files read (%s): %s\n' % (
            given, ', '.join(files) or 'none'))
        shown = ', '.join(options.redact_url(u) for u in
                          cfg.CONF[options.GROUP].servers)
        err.write('df-nats: servers from %s: %s\n' % (source, shown))
        err.flush()
    return files


def connect(args, command, err=None, service_endpoint=True,
            log_level='ERROR'):
    """Set up a command's process from its connection options, connect.

    ``args`` has the options of ``--servers``, ``--config-file``,
    ``--debug`` (and ``--timeout``, ``--verbose``: ``setup_command``).
    Returns this process's connection, acquired (release it when done),
    or None once the reason it failed is written to ``err``.
    ``service_endpoint=False``: this process is not listed as an instance
    of the NATS service df-nats. ``log_level``: of df-nats' loggers,
    WARNING with ``--verbose``: a command says itself what went wrong.
    """
    from df_nats.pubsub import process_context
    if getattr(args, 'verbose', False) and log_level:
        log_level = 'WARNING'
    setup_command(args, err, log_level)
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
