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

"""Sphinx directives of the df-nats docs: what is made at build time.

Nothing these directives show is copied by hand into the docs, so it
cannot drift from what it describes:

``df-nats-bench``
    The tables of a saved bench run (``benchmarks/results/**/bench.json``),
    formatted from its medians, with the ratios that
    ``benchmarks.bench_report`` computes and the commit that stored it.
``df-nats-counters``
    The counters of the NATS service ``df-nats``, described in the
    directive's content and checked against the names the service
    reports (``df_nats.transport.service``): a counter the service
    reports but the docs do not describe, or the reverse, fails the build.
``df-nats-help``
    The ``--help`` of the ``df-nats`` command and of each of its
    subcommands, as the installed command prints them.
"""

import json
import os
import pathlib
import re
import subprocess
import sys

from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util import logging
from sphinx.util import parsing

LOG = logging.getLogger(__name__)

_MIB = 1024.0 * 1024.0
_SECTIONS = ('summary', 'rates', 'latency', 'fanout', 'ratios')


def _cell(value, fmt='%.0f'):
    return '-' if value is None else fmt % value


def _list_table(title, header, rows, widths=None):
    """RST lines of a list-table."""
    lines = ['.. list-table:: %s' % title, '   :header-rows: 1']
    if widths:
        lines.append('   :widths: %s' % ' '.join(str(w) for w in widths))
    lines.append('')
    for row in [header] + rows:
        first = True
        for cell in row:
            lines.append('   %s %s' % ('* -' if first else '  -',
                                       cell if cell != '' else r'\ '))
            first = False
    lines.append('')
    return lines


def _stored_by(path):
    """'commit abc1234 of 2026-11-26' that last changed ``path``, or ''.

    A build from a tarball has no git history: then nothing is said.
    """
    try:
        out = subprocess.run(
            ['git', 'log', '-1', '--format=%h %cs', '--', path.name],
            cwd=path.parent, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ''
    parts = out.stdout.split()
    if out.returncode != 0 or len(parts) != 2:
        return ''
    return 'stored by commit %s of %s' % (parts[0], parts[1])


class BenchResults(SphinxDirective):
    """``.. df-nats-bench:: PATH/bench.json`` with ``:sections:``."""

    required_arguments = 1
    option_spec = {'sections': directives.unchanged}

    def run(self):
        # Imported here: conf.py puts the repository root on sys.path.
        from benchmarks import bench_report
        rel, path = self.env.relfn2path(self.arguments[0])
        self.env.note_dependency(rel)
        path = pathlib.Path(path)
        try:
            payload = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise self.error('df-nats-bench: cannot read %s: %s'
                             % (self.arguments[0], exc))
        wanted = [s.strip() for s in self.options.get(
            'sections', ','.join(_SECTIONS)).split(',') if s.strip()]
        unknown = sorted(set(wanted) - set(_SECTIONS))
        if unknown:
            raise self.error('df-nats-bench: unknown sections %s (known: %s)'
                             % (', '.join(unknown), ', '.join(_SECTIONS)))
        med = payload['medians']
        rows = [r for r in payload['rows'] if r in med]
        lines = []
        for section in wanted:
            lines += getattr(self, '_' + section)(payload, med, rows, path,
                                                  bench_report)
        node = parsing.nested_parse_to_nodes(
            self.state, StringList(lines, source=str(path)))
        return node

    @staticmethod
    def _summary(payload, med, rows, path, report):
        size = payload.get('event_bytes')
        stored = _stored_by(path)
        text = ('Medians of %d run(s) on %s CPU(s); events of %s;'
                ' baseline of the ratios: %s%s.' % (
                    payload['runs'], payload['cpus'],
                    '%.0f bytes on average (msgpack)' % size if size
                    else 'unknown size', report.baseline(payload),
                    ' (%s)' % stored if stored else ''))
        lines = [text, '']
        for row, why in sorted(payload.get('skipped', {}).items()):
            lines += ['* %s: skipped: %s' % (row, why)]
        return lines + ['']

    @staticmethod
    def _rates(payload, med, rows, path, report):
        kept = [r for r in rows if med[r].get('local_rate') is not None
                or med[r].get('e2e_rate') is not None]
        if not kept:
            return []
        table = [[r, _cell(med[r].get('local_rate')),
                  _cell(med[r].get('local_lost')),
                  _cell(med[r].get('local_cpu_us'), '%.1f'),
                  _cell(med[r].get('pub_rate')),
                  _cell(med[r].get('e2e_rate')),
                  _cell(med[r].get('e2e_lost')),
                  _cell(med[r].get('cpu_client_us'), '%.1f'),
                  _cell(med[r].get('cpu_broker_us'), '%.1f')]
                 for r in kept]
        return _list_table(
            'Rates: bursts of %d events at full speed'
            % payload['config']['events'],
            ['row', 'one process: events/s', 'lost', 'CPU µs/event',
             'across: publish/s', 'across: events/s', 'lost',
             'CPU µs/event', 'broker µs/event'], table)

    @staticmethod
    def _latency(payload, med, rows, path, report):
        kept = [r for r in rows if med[r].get('lat_p50') is not None]
        if not kept:
            return []
        cfg = payload['config']
        table = [[r, _cell(med[r].get('lat_p50'), '%.2f'),
                  _cell(med[r].get('lat_p99'), '%.2f'),
                  _cell(med[r].get('lat_p999'), '%.2f'),
                  _cell(med[r].get('lat_lost'))] for r in kept]
        return _list_table(
            'Latency, send to callback across processes, at %d events/s'
            ' (%d events)' % (cfg['rate'], cfg['latency_events']),
            ['row', 'p50 ms', 'p99 ms', 'p99.9 ms', 'lost'], table)

    @staticmethod
    def _fanout(payload, med, rows, path, report):
        sizes = list(payload['config'].get('fanout') or ())
        kept = [r for r in rows
                if any('fanout_%d_rate' % s in med[r] for s in sizes)]
        if not kept:
            return []
        table = []
        for r in kept:
            rss, per = med[r].get('rss_sub'), med[r].get('rss_per_conn')
            table.append(
                [r] + ['%s (%s lost)' % (
                    _cell(med[r].get('fanout_%d_rate' % s)),
                    _cell(med[r].get('fanout_%d_lost' % s)))
                    for s in sizes]
                + [_cell(rss / _MIB if rss else None, '%.1f'),
                   _cell(per / 1024.0 if per is not None else None)])
        cfg = payload['config']
        return _list_table(
            'Fan-out: deliveries/s from one publisher to N subscriber'
            ' connections over %d processes' % cfg['fanout_procs'],
            ['row'] + ['N=%d' % s for s in sizes]
            + ['subscriber RSS MiB', 'KiB per connection'], table)

    @staticmethod
    def _ratios(payload, med, rows, path, report):
        lines = report.ratio_lines(payload)
        if not lines:
            return []
        return (['Ratios, as ``benchmarks/bench_report.py`` computes them'
                 ' from the same medians (df-nats / other row; for'
                 ' CPU/event lower is cheaper):', '',
                 '.. code-block:: text', '']
                + ['   ' + line for line in lines] + [''])


def _service_counters():
    """{name: always shown} of what the service reports, by section."""
    from df_nats.transport import service
    data = service.counters({}, [], 0, 0, None)
    names = {}
    for key, value in data.items():
        if isinstance(value, dict):
            for counter in value:
                names['%s.%s' % (key, counter)] = True
        else:
            names[key] = True
    return names


def _named_in_source(name):
    """True if the counter's name is a quoted string of df_nats' code."""
    import df_nats
    leaf = name.rsplit('.', 1)[-1]
    root = pathlib.Path(df_nats.__file__).parent
    quoted = ("'%s'" % leaf, '"%s"' % leaf)
    for source in root.rglob('*.py'):
        text = source.read_text()
        if any(q in text for q in quoted):
            return True
    return False


class Counters(SphinxDirective):
    """``.. df-nats-counters::``, one line per counter in the content.

    ``name | column of df-nats stats or - | meaning | always|counted``:
    ``always`` counters are the ones the service lists from the start
    (at 0), ``counted`` ones appear once first counted.
    """

    has_content = True

    def run(self):
        reported = _service_counters()
        documented = {}
        table = []
        for line in self.content:
            if not line.strip():
                continue
            parts = [p.strip() for p in line.split('|')]
            if len(parts) != 4 or parts[3] not in ('always', 'counted'):
                raise self.error(
                    'df-nats-counters: expected "name | column | meaning |'
                    ' always|counted", got %r' % line)
            name, column, meaning, shown = parts
            documented[name] = shown
            table.append(['``%s``' % name,
                          column if column != '-' else '',
                          meaning + ('' if shown == 'always'
                                     else ' (listed once counted)')])
        problems = []
        for name in sorted(set(reported) - set(documented)):
            problems.append('%s is reported by the service but not'
                            ' described' % name)
        for name, shown in sorted(documented.items()):
            if shown == 'always' and name not in reported:
                problems.append('%s is described but the service does not'
                                ' report it' % name)
            if shown == 'counted' and name in reported:
                problems.append('%s is listed from the start: mark it'
                                ' "always"' % name)
            if shown == 'counted' and not _named_in_source(name):
                problems.append('%s is named nowhere in df_nats' % name)
        for problem in problems:
            LOG.warning('df-nats-counters: %s', problem,
                        location=self.get_location())
        return parsing.nested_parse_to_nodes(self.state, StringList(
            _list_table('', ['counter', 'df-nats stats', 'meaning'], table,
                        widths=(30, 15, 55)),
            source=self.get_source_info()[0]))


_SUBCOMMANDS = re.compile(r'\{([a-z0-9_,-]+)\}')


def _help(args):
    env = dict(os.environ, COLUMNS='79')
    out = subprocess.run(
        [sys.executable, '-m', 'df_nats.cmd.main'] + args + ['--help'],
        capture_output=True, text=True, env=env, timeout=120)
    if out.returncode != 0:
        raise RuntimeError('df-nats %s --help failed: %s'
                           % (' '.join(args), out.stderr[-500:]))
    return out.stdout


class CommandHelp(SphinxDirective):
    """``.. df-nats-help::``: every subcommand's ``--help``, as printed."""

    def run(self):
        try:
            top = _help([])
            match = _SUBCOMMANDS.search(top)
            commands = match.group(1).split(',') if match else []
            helps = [(c, _help([c])) for c in commands]
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            raise self.error('df-nats-help: %s' % exc)
        lines = ['.. code-block:: text', '']
        lines += ['   ' + line for line in top.splitlines()] + ['']
        for command, text in helps:
            lines += ['.. rubric:: df-nats %s' % command, '',
                      '.. code-block:: text', '']
            lines += ['   ' + line for line in text.splitlines()] + ['']
        return parsing.nested_parse_to_nodes(
            self.state, StringList(lines, source='df-nats --help'))


def setup(app):
    app.add_directive('df-nats-bench', BenchResults)
    app.add_directive('df-nats-counters', Counters)
    app.add_directive('df-nats-help', CommandHelp)
    return {'version': '1', 'parallel_read_safe': True,
            'parallel_write_safe': True}
