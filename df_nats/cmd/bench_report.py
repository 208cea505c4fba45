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

"""The table and the chart of ``df-nats bench``, from its medians."""

_MIB = 1024.0 * 1024.0
_DF_ROWS = ('df-nats eventlet', 'df-nats native')
_BASELINES = ('raw nats-py', 'redis', 'zeromq')


def _num(value, fmt='%.0f'):
    return '-' if value is None else fmt % value


def _fanout_sizes(payload):
    return list(payload['config']['fanout'])


def table(payload):
    """The figures as plain text, one line per row and a ratios section."""
    med = payload['medians']
    cfg = payload['config']
    rows = [r for r in payload['rows'] if r in med]
    lines = [
        'df-nats bench: medians of %d run(s), %s CPU(s); events of %d..%d B'
        ' JSON value' % (payload['runs'], payload['cpus'], 200, 2000),
        '',
        'Rates: one sender, %d events, subscriber callback in another'
        ' process; CPU: microseconds per event, publisher + subscriber'
        ' processes and broker' % cfg['events'],
        '',
        '%-17s %10s %10s %6s %10s %10s'
        % ('row', 'publish/s', 'e2e/s', 'lost', 'CPU us/ev', 'broker us'),
    ]
    for row in rows:
        fig = med[row]
        lines.append('%-17s %10s %10s %6s %10s %10s' % (
            row, _num(fig.get('pub_rate')), _num(fig.get('e2e_rate')),
            _num(fig.get('e2e_lost')), _num(fig.get('cpu_client_us'), '%.1f'),
            _num(fig.get('cpu_broker_us'), '%.1f')))
    lines += ['', 'Latency: send to callback at %d events/s, %d events'
              % (cfg['rate'], cfg['latency_events']), '',
              '%-17s %10s %10s %10s %6s'
              % ('row', 'p50 ms', 'p99 ms', 'p99.9 ms', 'lost')]
    for row in rows:
        fig = med[row]
        lines.append('%-17s %10s %10s %10s %6s' % (
            row, _num(fig.get('lat_p50'), '%.2f'),
            _num(fig.get('lat_p99'), '%.2f'),
            _num(fig.get('lat_p999'), '%.2f'), _num(fig.get('lat_lost'))))
    sizes = _fanout_sizes(payload)
    lines += ['', 'Fan-out: one publisher, %d events, to N subscriber'
              ' connections over %d processes: deliveries/s (lost);'
              ' subscriber RSS' % (cfg['fanout_events'],
                                   cfg['fanout_procs']), '']
    header = '%-17s' % 'row' + ''.join(
        '%18s' % ('N=%d' % size) for size in sizes)
    lines.append(header + '%10s %10s' % ('RSS MiB', 'KiB/conn'))
    for row in rows:
        fig = med[row]
        cells = ''.join('%18s' % ('%s (%s)' % (
            _num(fig.get('fanout_%d_rate' % s)),
            _num(fig.get('fanout_%d_lost' % s)))) for s in sizes)
        rss = fig.get('rss_sub')
        per = fig.get('rss_per_conn')
        lines.append('%-17s' % row + cells + '%10s %10s' % (
            _num(rss / _MIB if rss else None, '%.1f'),
            _num(per / 1024.0 if per is not None else None)))
    lines += ['', 'Ratios (df-nats / baseline, same run; for CPU/event'
              ' lower is cheaper):']
    lines += ratio_lines(payload)
    for row, why in sorted(payload['skipped'].items()):
        lines.append('%s: skipped: %s' % (row, why))
    return '\n'.join(lines)


def ratios(payload):
    """{(df row, baseline, figure): ratio} of the medians."""
    med = payload['medians']
    found = {}
    for row in _DF_ROWS:
        for base in _BASELINES:
            if row not in med or base not in med:
                continue
            for key in ('pub_rate', 'e2e_rate', 'cpu_client_us'):
                mine, theirs = med[row].get(key), med[base].get(key)
                if mine and theirs:
                    found[(row, base, key)] = mine / theirs
    return found


def ratio_lines(payload):
    found = ratios(payload)
    lines = []
    for row in _DF_ROWS:
        for key, name in (('e2e_rate', 'end to end'),
                          ('pub_rate', 'publish'),
                          ('cpu_client_us', 'CPU/event')):
            parts = ['%.2fx %s' % (found[(row, base, key)], base)
                     for base in _BASELINES if (row, base, key) in found]
            if parts:
                lines.append('  %-17s %-11s %s' % (row, name,
                                                   ', '.join(parts)))
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
    width = 0.38
    for offset, key, name in ((-width / 2, 'pub_rate', 'publish'),
                              (width / 2, 'e2e_rate', 'end to end')):
        rate_ax.bar([x + offset for x in xs],
                    [med[r].get(key) or 0 for r in rows], width, label=name)
    rate_ax.set_title('Rate, one sender (events/s)')
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
        fan_ax.plot(sizes, [med[row].get('fanout_%d_rate' % s) or 0
                            for s in sizes], marker='o', label=row)
    fan_ax.set_xticks(sizes)
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
    for ax in (rate_ax, lat_ax, mem_ax):
        ax.set_xticks(list(xs))
        ax.set_xticklabels(rows, fontsize=8)
    rate_ax.legend(fontsize=8)
    lat_ax.legend(fontsize=8)
    fig.suptitle('df-nats bench: medians of %d run(s) on %s CPU(s)'
                 % (payload['runs'], payload['cpus']))
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    pyplot.close(fig)
    return 'chart: %s' % path
