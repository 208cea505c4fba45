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

"""The ``df-nats`` command: demo, publishers, tail and stats."""

import argparse
import sys


def _connection_arguments(parser):
    """--servers, --config-file and --debug of the commands that connect."""
    parser.add_argument('--servers', metavar='URL', action='append',
                        help='NATS server URL (repeatable); overrides'
                             ' [df_nats] servers')
    parser.add_argument('--config-file', metavar='PATH', action='append',
                        help='Dragonflow/df-nats configuration file'
                             ' (repeatable)')
    parser.add_argument('--debug', action='store_true', help='debug logging')


def _parser():
    parser = argparse.ArgumentParser(
        prog='df-nats',
        description='Tools for the df-nats Dragonflow pub/sub driver.')
    commands = parser.add_subparsers(dest='command', required=True)

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
                           ' secret goes on a command line')

    pubs = commands.add_parser(
        'publishers', help='list the live publishers in the registry, or'
                           ' watch them join, change and leave')
    pubs.add_argument('--role', help='only publishers of this role')
    pubs.add_argument('--watch', action='store_true',
                      help='keep printing joins, changes and leaves')
    pubs.add_argument('--json', action='store_true',
                      help='JSON output (one event per line with --watch)')
    _connection_arguments(pubs)

    tail = commands.add_parser(
        'tail', help='print the events on topics as a controller receives'
                     ' them, one line per event, batches unpacked')
    tail.add_argument('topics', metavar='TOPIC', nargs='*',
                      help='topics to follow (default: every topic)')
    tail.add_argument('--values', action='store_true',
                      help='print each event\'s value too')
    tail.add_argument('--json', action='store_true',
                      help='one JSON object per event and line')
    tail.add_argument('--count', type=int, default=0,
                      help='exit after this many events')
    _connection_arguments(tail)

    stats = commands.add_parser(
        'stats', help='list every df-nats process (NATS service df-nats)'
                      ' with its role, host, pid and counters')
    stats.add_argument('--role', choices=_service_roles(),
                       help='only processes of this role (publisher and'
                            ' subscriber include both)')
    stats.add_argument('--json', action='store_true',
                       help='JSON output: a list of processes')
    stats.add_argument('--wait', type=_positive_seconds, default=1.0,
                       metavar='SECONDS',
                       help='how long to collect replies (default'
                            ' %(default)s)')
    _connection_arguments(stats)
    return parser


def _service_roles():
    from df_nats.transport import service
    return service.ROLES


def _positive_seconds(text):
    """A number of seconds above 0, for ``stats --wait``."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= 3600:
        raise argparse.ArgumentTypeError(
            'expected seconds above 0 (at most 3600), got %r' % text)
    return seconds


def main(argv=None):
    args = _parser().parse_args(argv)
    from df_nats import errors
    try:
        return _run(args)
    except errors.ConfigError as exc:
        # Bad configuration: the option's name, no traceback.
        sys.stderr.write('df-nats %s: %s\n' % (args.command, exc))
        return 2


def _run(args):
    if args.command == 'demo':
        from df_nats.cmd import demo
        return demo.run(args)
    if args.command == 'publishers':
        from df_nats.cmd import publishers
        return publishers.run(args)
    if args.command == 'tail':
        from df_nats.cmd import tail
        return tail.run(args)
    if args.command == 'stats':
        from df_nats.cmd import stats
        return stats.run(args)
    return 2


if __name__ == '__main__':
    sys.exit(main())
