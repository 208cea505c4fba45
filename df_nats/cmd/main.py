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

"""The ``df-nats`` command: check, demo, exporter, publishers, stats, tail.

Flags mean the same in every command:

- ``--servers``, ``--config-file``, ``--timeout``, ``-v``/``--verbose``
  and ``--debug`` (the commands that connect to a deployment's NATS; see
  ``common``);
- ``--role`` is always a Dragonflow role, the one a process registers
  its publisher with (``[df_nats] role``; by default ``neutron-server``
  or ``df-local-controller``, else the process name);
- ``--kind`` (``stats``, ``exporter``) is what a process does on the
  bus: ``publisher``, ``subscriber``, ``both`` or ``none``;
- ``--json`` prints JSON instead of a table.
"""

import argparse
import importlib
import sys

# stats --role took these before --kind existed: still understood, with
# a note, for one release.
_OLD_STATS_ROLES = ('publisher', 'subscriber', 'both', 'none')


def _connection_arguments(parser, timeout=5.0,
                          timeout_help='the first connection to NATS'):
    """The options of the commands that connect to a deployment's NATS."""
    parser.add_argument('--servers', metavar='URL', action='append',
                        help='NATS server URL (repeatable); overrides'
                             ' [df_nats] servers and NATS_URL')
    parser.add_argument('--config-file', metavar='PATH', action='append',
                        help='Dragonflow/df-nats configuration file'
                             ' (repeatable); default:'
                             ' /etc/neutron/neutron.conf and'
                             ' /etc/neutron/dragonflow.ini, those that'
                             ' exist')
    parser.add_argument('--timeout', type=_positive_seconds,
                        default=timeout, metavar='SECONDS',
                        help='seconds to wait for %s (default'
                             ' %%(default)s)' % timeout_help)
    parser.add_argument('-v', '--verbose', action='store_true',
                        help='say which configuration files were read and'
                             ' where the servers came from')
    parser.add_argument('--debug', action='store_true', help='debug logging')


def _role_argument(parser, what):
    parser.add_argument('--role', metavar='ROLE',
                        help='only %s of this Dragonflow role ([df_nats]'
                             ' role: neutron-server, df-local-controller,'
                             ' or the process name when unset)' % what)


def _kind_argument(parser):
    parser.add_argument('--kind', choices=_service_roles(),
                        help='only processes that do this on the bus'
                             ' (publisher and subscriber include both)')


def _parser():
    from df_nats import version
    parser = argparse.ArgumentParser(
        prog='df-nats',
        description='Tools for the df-nats Dragonflow pub/sub driver.'
                    ' The commands that connect read the configuration as'
                    ' the services do (see --config-file) and honour'
                    ' NATS_URL when no servers are configured.')
    parser.add_argument('--version', action='version',
                        version='df-nats %s' % version.version_string())
    commands = parser.add_subparsers(dest='command', required=True)

    check = commands.add_parser(
        'check', help='check the configuration, the connection, JetStream,'
                      ' the registry, the capture stream and this role\'s'
                      ' permissions; exit 0 (all well), 1 (warning) or 2'
                      ' (failure), as monitoring plugins do')
    _role_argument(check, 'the permissions')
    check.add_argument('--json', action='store_true',
                       help='JSON output: a list of checks')
    _connection_arguments(check, timeout_help='the whole check, the'
                                              ' connection included')

    demo = commands.add_parser(
        'demo', help='run publishers and subscribers, eventlet and native,'
                     ' through the driver on an embedded or given NATS')
    demo.add_argument('--servers', metavar='URL', action='append',
                      help='use this NATS server instead of an embedded'
                           ' one (repeat for a cluster)')
    demo.add_argument('--events', type=int, default=600,
                      help='events to publish (default %(default)s)')
    demo.add_argument('--show', type=int, default=6,
                      help='events each subscriber prints as they arrive'
                           ' (default %(default)s)')
    demo.add_argument('--timeout', type=float, default=60.0,
                      help='seconds before the demo gives up')
    demo.add_argument('--config-file', metavar='PATH', action='append',
                      help='configuration file with a [df_nats] section'
                           ' (repeatable): credentials and TLS for the'
                           ' given servers; the workers read it too, so no'
                           ' secret goes on a command line. The demo reads'
                           ' no default files: it runs its own server')

    exporter = commands.add_parser(
        'exporter', help='serve the counters of every df-nats process as'
                         ' Prometheus/OpenMetrics metrics over HTTP, asking'
                         ' the processes at each scrape')
    exporter.add_argument('--listen', metavar='ADDR:PORT',
                          default='127.0.0.1:9675',
                          help='address and port to serve /metrics on'
                               ' (default %(default)s)')
    exporter.add_argument('--wait', type=_positive_seconds, default=1.0,
                          metavar='SECONDS',
                          help='how long each scrape collects replies'
                               ' (default %(default)s)')
    _role_argument(exporter, 'processes')
    _kind_argument(exporter)
    _connection_arguments(exporter)

    pubs = commands.add_parser(
        'publishers', help='list the live publishers in the registry, or'
                           ' watch them join, change and leave')
    _role_argument(pubs, 'publishers')
    pubs.add_argument('--watch', action='store_true',
                      help='keep printing joins, changes and leaves')
    pubs.add_argument('--json', action='store_true',
                      help='JSON output (one event per line with --watch)')
    _connection_arguments(pubs)

    stats = commands.add_parser(
        'stats', help='list every df-nats process (NATS service df-nats)'
                      ' with its role, host, pid, server, lag and counters;'
                      ' exit 1 when none answers')
    _role_argument(stats, 'processes')
    _kind_argument(stats)
    stats.add_argument('--json', action='store_true',
                       help='JSON output: a list of processes')
    stats.add_argument('--wait', type=_positive_seconds, default=1.0,
                       metavar='SECONDS',
                       help='how long to collect replies (default'
                            ' %(default)s)')
    _connection_arguments(stats)

    tail = commands.add_parser(
        'tail', help='print the events on topics as a controller receives'
                     ' them, one line per event, batches unpacked')
    tail.add_argument('topics', metavar='TOPIC', nargs='*',
                      help='topics to follow (default: every topic)')
    tail.add_argument('--values', action='store_true',
                      help='print each event\'s value too')
    tail.add_argument('--json', action='store_true',
                      help='one JSON object per event and line')
    tail.add_argument('--count', type=_count, default=0, metavar='N',
                      help='exit after N events; 0 (the default) follows'
                           ' until interrupted (Ctrl-C)')
    _connection_arguments(tail)
    return parser


def _service_roles():
    from df_nats.transport import service
    return service.ROLES


def _positive_seconds(text):
    """A number of seconds above 0, at most an hour."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= 3600:
        raise argparse.ArgumentTypeError(
            'expected seconds above 0 (at most 3600), got %r' % text)
    return seconds


def _count(text):
    try:
        count = int(text)
    except ValueError:
        count = -1
    if count < 0:
        raise argparse.ArgumentTypeError(
            'expected a count of 0 or more, got %r' % text)
    return count


def parse_args(argv=None, err=None):
    """The command line, with stats' old ``--role`` values moved."""
    args = _parser().parse_args(argv)
    if (args.command == 'stats' and args.role in _OLD_STATS_ROLES
            and args.kind is None):
        (err or sys.stderr).write(
            'df-nats stats: --role %s means --kind %s now (--role is the'
            ' Dragonflow role, as in df-nats publishers)\n'
            % (args.role, args.role))
        args.kind, args.role = args.role, None
    return args


def main(argv=None):
    args = parse_args(argv)
    from df_nats import errors
    try:
        return _run(args)
    except errors.ConfigError as exc:
        # Bad configuration: the option's name, no traceback.
        sys.stderr.write('df-nats %s: %s\n' % (args.command, exc))
        return 2


def _run(args):
    # Imported for the command run only: the exporter's HTTP server and
    # prometheus-client are nothing to the others.
    module = importlib.import_module('df_nats.cmd.%s' % args.command)
    return module.run(args)


if __name__ == '__main__':
    sys.exit(main())
