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

"""The table and the chart of the bench, from its medians."""

_MIB = 1024.0 * 1024.0
_DF_ROWS = ('df-nats eventlet', 'df-nats native')
# Before the plain nats-py row, the baseline was nats-py with df-nats'
# headers, under this name: a saved bench.json of then still draws.
_OLD_BASELINE = 'raw nats-py'
_OTHERS = ('redis', 'zeromq')
_HEADERS_ROW = 'nats-py 4 headers'
# (figure, what it is called in the ratios section)
_RATIO_FIGURES = (('local_rate', 'end to end, one process'),
                  ('e2e_rate', 'end to end, across processes'),
                  ('pub_rate', 'publish'),
                  ('local_cpu_us', 'CPU/event, one process'),
                  ('cpu_client_us', 'CPU/event, across processes'))


def _num(value, fmt='%.0f'):
    return '-' if value is None else fmt % value


def _fanout_sizes(payload):
    return list(payload['config']['fanout'])


def baseline(payload):
    """The row df-nats' figures are divided by."""
    return payload.get('baseline', _OLD_BASELINE)


def _fanout_title(payload):
    cfg = payload['config']
    if 'fanout_deliveries' in cfg:
        sent = ('about %d deliveries per size (%d/N events, at least 10)'
                % (cfg['fanout_deliveries'], cfg['fanout_deliveries']))
    else:
        sent = '%d events' % cfg['fanout_events']
    return ('Fan-out: one publisher to N subscriber connections over %d'
            ' processes, %s: deliveries/s (lost); subscriber RSS'
            % (cfg['fanout_procs'], sent))


def table(payload):
    """The figures as plain text, one line per row and a ratios section."""
    med = payload['medians']
    cfg = payload['config']
    rows = [r for r in payload['rows'] if r in med]
    size = payload.get('event_bytes')
    lines = [
        'df-nats bench: medians of %d run(s), %s CPU(s); events of %s'
        % (payload['runs'], payload['cpus'],
           '%.0f B on average (msgpack)' % size if size else
           '200..2000 B JSON value'),
        'Baseline of the ratios: %s' % baseline(payload),
        '',
        'Rates: %d events at full speed. One process: publisher and'
        ' subscriber in the same process. Across processes: one sender,'
        ' the subscriber callback in another process. CPU: microseconds'
        ' per event of the client processes, and of the broker'
        % cfg['events'],
        '',
        '%-18s %23s   %s' % ('', '---- one process ----',
                             '------------- across processes -------------'),
        '%-18s %9s %5s %9s %11s %9s %5s %9s %9s'
        % ('row', 'e2e/s', 'lost', 'CPU us', 'publish/s', 'e2e/s', 'lost',
           'CPU us', 'broker us'),
    ]
    for row in rows:
        fig = med[row]
        lines.append('%-18s %9s %5s %9s %11s %9s %5s %9s %9s' % (
            row, _num(fig.get('local_rate')), _num(fig.get('local_lost')),
            _num(fig.get('local_cpu_us'), '%.1f'),
            _num(fig.get('pub_rate')), _num(fig.get('e2e_rate')),
            _num(fig.get('e2e_lost')), _num(fig.get('cpu_client_us'), '%.1f'),
            _num(fig.get('cpu_broker_us'), '%.1f')))
    lines += ['', 'Latency: send to callback across processes at %d'
              ' events/s, %d events' % (cfg['rate'], cfg['latency_events']),
              '', '%-18s %10s %10s %10s %6s'
              % ('row', 'p50 ms', 'p99 ms', 'p99.9 ms', 'lost')]
    for row in rows:
        fig = med[row]
        lines.append('%-18s %10s %10s %10s %6s' % (
            row, _num(fig.get('lat_p50'), '%.2f'),
            _num(fig.get('lat_p99'), '%.2f'),
            _num(fig.get('lat_p999'), '%.2f'), _num(fig.get('lat_lost'))))
    sizes = _fanout_sizes(payload)
    lines += ['', _fanout_title(payload), '']
    header = '%-18s' % 'row' + ''.join(
        '%18s' % ('N=%d' % size) for size in sizes)
    lines.append(header + '%10s %10s' % ('RSS MiB', 'KiB/conn'))
    for row in rows:
        fig = med[row]
        if not any('fanout_%d_rate' % s in fig for s in sizes):
            continue
        cells = ''.join('%18s' % ('%s (%s)' % (
            _num(fig.get('fanout_%d_rate' % s)),
            _num(fig.get('fanout_%d_lost' % s)))) for s in sizes)
        rss = fig.get('rss_sub')
        per = fig.get('rss_per_conn')
        lines.append('%-18s' % row + cells + '%10s %10s' % (
            _num(rss / _MIB if rss else None, '%.1f'),
            _num(per / 1024.0 if per is not None else None)))
    lines += ['', 'Ratios (df-nats / baseline, same run; for CPU/event'
              ' lower is cheaper; baseline: %s):' % baseline(payload)]
    lines += ratio_lines(payload)
    for row, why in sorted(payload['skipped'].items()):
        lines.append('%s: skipped: %s' % (row, why))
    return '\n'.join(lines)


def _figures(payload):
    sizes = _fanout_sizes(payload)
    return _RATIO_FIGURES + (
        (('fanout_%d_rate' % sizes[-1], 'fan-out N=%d' % sizes[-1]),)
        if sizes else ())


def ratios(payload):
    """{(df row, other row, figure): ratio} of the medians."""
    med = payload['medians']
    found = {}
    for row in _DF_ROWS + (_HEADERS_ROW,):
        for base in (baseline(payload),) + _OTHERS:
            if row not in med or base not in med or row == base:
                continue
            for key, _ in _figures(payload):
                mine, theirs = med[row].get(key), med[base].get(key)
                if mine and theirs:
                    found[(row, base, key)] = mine / theirs
    return found


def _latency_lines(payload, row, base):
    """Latency is compared by difference: what df-nats adds, in ms."""
    med = payload['medians']
    if row not in med or base not in med:
        return []
    parts = []
    for key, name in (('lat_p50', 'p50'), ('lat_p99', 'p99'),
                      ('lat_p999', 'p99.9')):
        mine, theirs = med[row].get(key), med[base].get(key)
        if mine is not None and theirs is not None:
            parts.append('%s %+.2f ms' % (name, mine - theirs))
    if not parts:
        return []
    return ['  %-17s %-29s %s over %s' % (row, 'latency at %d/s'
                                          % payload['config']['rate'],
                                          ', '.join(parts), base)]


def ratio_lines(payload):
    found = ratios(payload)
    base = baseline(payload)
    lines = []
    for row in _DF_ROWS:
        for key, name in _figures(payload):
            parts = ['%.2fx %s' % (found[(row, other, key)], other)
                     for other in (base,) + _OTHERS
                     if (row, other, key) in found]
            if parts:
                lines.append('  %-17s %-29s %s' % (row, name,
                                                   ', '.join(parts)))
        lines += _latency_lines(payload, row, base)
    heading = False
    for key, name in _RATIO_FIGURES[:3]:
        if (_HEADERS_ROW, base, key) not in found:
            continue
        if not heading:
            lines.append('  for comparison (not a baseline), nats-py with'
                         ' the four headers df-nats sent per event:')
            heading = True
        lines.append('  %-17s %-29s %.2fx %s' % (
            _HEADERS_ROW, name, found[(_HEADERS_ROW, base, key)], base))
    return lines


def chart(payload, path):
    """Write a PNG of the figures; returns a line saying what it did."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        from matplotlib import pyplot
    except ImportError:
        return 'chart skipped: matplotlib is not installed'
    med = payload['medians']
    rows = [r for r in payload['rows'] if r in med]
    xs = range(len(rows))
    fig, axes = pyplot.subplots(2, 2, figsize=(13, 8.5))
    (rate_ax, lat_ax), (fan_ax, mem_ax) = axes
    width = 0.27
    for i, (key, name) in enumerate((
            ('local_rate', 'end to end, one process'),
            ('pub_rate', 'publish'),
            ('e2e_rate', 'end to end, across processes'))):
        rate_ax.bar([x + (i - 1) * width for x in xs],
                    [med[r].get(key) or 0 for r in rows], width, label=name)
    rate_ax.set_title('Rate, one sender (events/s); baseline: %s'
                      % baseline(payload))
    width = 0.27
    for i, (key, name) in enumerate((('lat_p50', 'p50'),
                                     ('lat_p99', 'p99'),
                                     ('lat_p999', 'p99.9'))):
        lat_ax.bar([x + (i - 1) * width for x in xs],
                   [med[r].get(key) or 0 for r in rows], width, label=name)
    lat_ax.set_yscale('log')
    lat_ax.set_title('Latency at %d events/s (ms, log scale)'
                     % payload['config']['rate'])
    sizes = _fanout_sizes(payload)
    for row in rows:
        if not any('fanout_%d_rate' % s in med[row] for s in sizes):
            continue
        fan_ax.plot(sizes, [med[row].get('fanout_%d_rate' % s) or 0
                            for s in sizes], marker='o', label=row)
    fan_ax.set_xscale('log')
    fan_ax.set_xticks(sizes)
    fan_ax.set_xticklabels([str(s) for s in sizes])
    fan_ax.set_xlabel('subscriber connections')
    fan_ax.set_title('Fan-out deliveries/s')
    fan_ax.legend(fontsize=8, loc='center left', bbox_to_anchor=(0.0, 0.6))
    mem_ax.bar(list(xs), [(med[r].get('rss_sub') or 0) / _MIB for r in rows],
               0.6)
    for x, row in zip(xs, rows):
        per = med[row].get('rss_per_conn')
        if per is not None:
            mem_ax.annotate('+%.0f KiB/conn' % (per / 1024.0),
                            (x, (med[row].get('rss_sub') or 0) / _MIB),
                            ha='center', va='bottom', fontsize=8)
    mem_ax.set_title('Subscriber process RSS (MiB)')
    names = [row.replace(' ', '\n', 1) + (
        '\n(baseline)' if row == baseline(payload) else '') for row in rows]
    for ax in (rate_ax, lat_ax, mem_ax):
        ax.set_xticks(list(xs))
        ax.set_xticklabels(names, fontsize=8)
    rate_ax.legend(fontsize=8)
    lat_ax.legend(fontsize=8)
    fig.suptitle('df-nats bench: medians of %d run(s) on %s CPU(s)'
                 % (payload['runs'], payload['cpus']))
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    pyplot.close(fig)
    return 'chart: %s' % path
