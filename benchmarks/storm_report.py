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

"""The storm benchmark's accounting and its table (no processes here).

Definitions, per subscriber, for the events of the publisher numbered
0..P-1 (P: every event that entered ``send_event``, refused ones
included), with ``sent[n]`` the wall-clock time event n entered
``send_event``:

*delivered*
    the subscriber's callback got event n (at least once).
*covered*
    not delivered, but a ``sync`` callback was delivered to the subscriber
    at or after ``sent[n]``: the full resync Dragonflow answers it with
    rereads the northbound database, which held event n's change before
    it was published. Its *cover time* is that first sync's time.
*lost* (silent loss)
    neither. ``delivered + covered + lost = P`` for every subscriber.
*duplicate deliveries*
    deliveries of an event beyond its first.
*order regression*
    a delivery of event n after the delivery of an event m > n (a
    duplicate delivered late counts: an older ``set`` after a newer one).
*settle time* of event n
    its first delivery time, or its cover time; its *wait* is the settle
    time minus ``sent[n]``.
*time to caught up*
    the longest wait of the events published from ``WINDOW_BEFORE``
    seconds before the kill to the end of the run. In a steady stream
    that is the time from the moment the subscriber stopped being
    current (the first event it did not get in time) to the moment it
    had everything again (delivered, or reread through a sync). For a
    subscriber that did not notice the kill, it is its worst latency. A
    subscriber that lost an event of that span silently never caught up:
    it is counted apart, not in the percentiles.
*caught up after its reconnect*
    for a subscriber of the killed node, the same longest wait counted
    from when events could flow to it again, its first reconnect after
    the kill (an event sent before then waits from the reconnect, a
    later one from its sending): what catch-up itself takes, without
    the loss detection and the reconnect before it.

*machine CPU idle*
    the machine's idle share of its CPU time (``/proc/stat``) in the
    steady stream before the kill (the warm-up's second half) and while
    the node was down: near 0, the machine, not df-nats, sets the pace,
    and every wait above includes waiting for a CPU.

*callback silent at the end*
    subscribers whose callback had not run for ``STALLED`` seconds when
    the run ended while events still flowed: stalled (their log holds
    every thread's stack). On an overloaded machine that is the harness
    starving, not the driver losing; their "lost" events say so.

Full syncs are the ``sync`` callbacks each subscriber delivered; their
reasons come from the warning each one is logged with (``reconnect``,
``gap``, ``delivery queue full``...). Events replayed and duplicates
dropped come from the subscribers' own counters (``replayed``,
``duplicates``), summed, when the driver has them.
"""

import bisect
import json
import math

# Events published this long before the kill count for the time to
# caught up: they may have been in flight on the killed node.
WINDOW_BEFORE = 1.0
# Latency before the kill: events published from this long after the
# start to this long before the kill.
STEADY_MARGIN = 1.0
# A subscriber whose callback was silent this long when the run ended
# (while events flowed) was stalled: counted, its log has its stacks.
STALLED = 8.0
# Subscriber counters shown as columns when the driver has them.
REPLAYED_COUNTERS = ('replayed',)
DUPLICATE_COUNTERS = ('duplicates',)
# The subscriber counters the table shows (when not 0): those about
# recovery, whatever names the driver gives them.
COUNTER_WORDS = ('sync', 'gap', 'missed', 'overflow', 'replay', 'duplicate',
                 'late', 'conflict')
# What every case's report holds (besides the parent's notes: node roles,
# timings, server memory), and each subscriber's line in it.
REPORT_FIELDS = (
    'subscribers', 'published', 'refused', 'placement', 'killed',
    'lost_node', 'reconnected', 'missed_events', 'full_syncs',
    'full_syncs_after_kill', 'subscribers_with_syncs', 'syncs_by_reason',
    'replayed', 'duplicates_dropped', 'delivered', 'covered', 'silent_loss',
    'subscribers_with_loss', 'duplicate_deliveries',
    'unpublished_deliveries', 'order_regressions',
    'subscribers_with_regressions', 'caught_up', 'caught_up_affected',
    'caught_up_after_reconnect', 'never_caught_up', 'reconnect_after_kill',
    'latency_before_kill',
    'stalled_at_end',
    'subscriber_counters', 'connection_counters', 'per_subscriber')
SUBSCRIBER_FIELDS = (
    'index', 'node', 'last_node', 'reconnects', 'published', 'delivered',
    'covered', 'lost', 'lost_examples', 'syncs', 'sync_reasons',
    'duplicate_deliveries', 'order_regressions', 'caught_up',
    'unknown_events')


def undelta(values):
    """Running sums: the inverse of the worker's time deltas."""
    out, total = [], 0
    for value in values:
        total += value
        out.append(total)
    return out


def delivery_times(record):
    """The wall-clock delivery times of a child's record, in seconds."""
    base = record['t0_ms']
    return [(base + ms) / 1000.0 for ms in undelta(record['dt_ms'])]


def percentile(values, fraction):
    """Nearest-rank percentile of ``values`` (None if empty)."""
    values = sorted(values)
    if not values:
        return None
    rank = max(int(math.ceil(fraction * len(values))), 1)
    return values[min(rank, len(values)) - 1]


def account_subscriber(sent, record, t_kill, steady=None, flowing=None):
    """Sort every event published into delivered, covered or lost for one
    subscriber (``record``: a child's record), with its waits.

    ``steady``: (start, end) wall-clock span whose events' latencies are
    returned as ``steady_latencies`` (the latency before the kill).
    ``flowing``: when events could flow to it again (its reconnect), for
    ``caught_up_after_reconnect``.
    """
    seqs = record['seqs']
    times = delivery_times(record)
    first = {}
    duplicates = regressions = beyond = 0
    top = -1
    for seq, at in zip(seqs, times):
        if seq < top:
            regressions += 1
        else:
            top = seq
        if seq >= len(sent):
            beyond += 1  # not published (cannot happen): shown, not used
        if seq in first:
            duplicates += 1
        else:
            first[seq] = at
    syncs = sorted(record['syncs'])
    delivered = covered = lost = 0
    lost_seqs = []
    worst = worst_flowing = 0.0
    lost_in_window = 0
    since = t_kill - WINDOW_BEFORE
    steady_latencies = []
    for seq, t_sent in enumerate(sent):
        settled = first.get(seq)
        if settled is not None:
            delivered += 1
            if steady and steady[0] <= t_sent <= steady[1]:
                steady_latencies.append(settled - t_sent)
        else:
            at = bisect.bisect_left(syncs, t_sent)
            if at < len(syncs):
                covered += 1
                settled = syncs[at]
            else:
                lost += 1
                if len(lost_seqs) < 20:
                    lost_seqs.append(seq)
                if t_sent >= since:
                    lost_in_window += 1
                continue
        if t_sent >= since:
            worst = max(worst, settled - t_sent)
            if flowing is not None:
                worst_flowing = max(worst_flowing,
                                    settled - max(t_sent, flowing))
    syncs_after_kill = [t for t in syncs if t >= t_kill]
    return {
        'published': len(sent), 'delivered': delivered, 'covered': covered,
        'lost': lost, 'lost_examples': lost_seqs,
        'duplicate_deliveries': duplicates, 'order_regressions': regressions,
        'unpublished_deliveries': beyond,
        'syncs': len(syncs), 'syncs_after_kill': len(syncs_after_kill),
        'caught_up': None if lost_in_window else round(worst, 4),
        'caught_up_after_reconnect': None if (
            lost_in_window or flowing is None) else round(worst_flowing, 4),
        'steady_latencies': steady_latencies,
    }


def _reason_counts(records):
    counts = {}
    for record in records:
        logged = len(record['sync_reasons'])
        for _, text in record['sync_reasons']:
            for reason in (r.strip() for r in text.split(',')):
                if reason:
                    counts[reason] = counts.get(reason, 0) + 1
        # A sync whose warning was not seen (another wording).
        missing = len(record['syncs']) - logged
        if missing > 0:
            counts['unknown'] = counts.get('unknown', 0) + missing
    return dict(sorted(counts.items()))


def _sum_counters(records, key):
    total = {}
    for record in records:
        for name, value in (record.get(key) or {}).items():
            if isinstance(value, (int, float)):
                total[name] = total.get(name, 0) + value
    return dict(sorted(total.items()))


def _spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return {'p50': None, 'p99': None, 'max': None, 'n': 0}
    return {'p50': round(percentile(values, 0.50), 4),
            'p99': round(percentile(values, 0.99), 4),
            'max': round(max(values), 4), 'n': len(values)}


def case_report(run, records):
    """The figures of one case from the parent's ``run`` notes and the
    children's records.

    ``run`` holds: ``sent`` and ``refused`` (the publisher's), ``t_go``,
    ``t_kill``, ``killed`` (node name), ``node_of`` (URL -> node name),
    and whatever else the parent noted (copied into the report).
    """
    sent, t_kill = run['sent'], run['t_kill']
    steady = (run['t_go'] + STEADY_MARGIN, t_kill - STEADY_MARGIN)
    node_of = run['node_of']
    killed = run['killed']
    per_sub = []
    steady_latencies = []
    totals = dict.fromkeys(('delivered', 'covered', 'lost',
                            'duplicate_deliveries', 'order_regressions',
                            'unpublished_deliveries', 'syncs',
                            'syncs_after_kill'), 0)
    lost_node = reconnected = missed = with_syncs = with_loss = 0
    stalled = 0
    regressed = 0
    catch_up, catch_up_affected, never = [], [], 0
    reconnect_delays, after_reconnect = [], []
    placement = {}
    for record in sorted(records, key=lambda r: r['index']):
        node = node_of.get(record['first_url'])
        placement[node] = placement.get(node, 0) + 1
        on_killed = node == killed
        flowing = None
        if on_killed:
            after = [t - t_kill for t in record['reconnect_times']
                     if t >= t_kill]
            if after:
                reconnect_delays.append(after[0])
                flowing = t_kill + after[0]
        acc = account_subscriber(sent, record, t_kill, steady, flowing)
        steady_latencies.extend(acc.pop('steady_latencies'))
        if acc['caught_up_after_reconnect'] is not None:
            after_reconnect.append(acc['caught_up_after_reconnect'])
        reconnects = (record.get('conn_stats') or {}).get('reconnects', 0)
        lost_node += on_killed
        reconnected += reconnects > 0
        affected = acc['delivered'] < acc['published'] or on_killed
        missed += acc['delivered'] < acc['published']
        with_syncs += acc['syncs'] > 0
        with_loss += acc['lost'] > 0
        regressed += acc['order_regressions'] > 0
        stalled += (record.get('silent_at_end') or 0) > STALLED
        for key in totals:
            totals[key] += acc[key]
        if acc['caught_up'] is None:
            never += 1
        else:
            catch_up.append(acc['caught_up'])
            if affected:
                catch_up_affected.append(acc['caught_up'])
        per_sub.append({
            'index': record['index'], 'node': node,
            'last_node': node_of.get(record['last_url']),
            'reconnects': reconnects, 'published': acc['published'],
            'delivered': acc['delivered'], 'covered': acc['covered'],
            'lost': acc['lost'], 'lost_examples': acc['lost_examples'],
            'syncs': acc['syncs'],
            'sync_reasons': [text for _, text in record['sync_reasons']],
            'duplicate_deliveries': acc['duplicate_deliveries'],
            'order_regressions': acc['order_regressions'],
            'caught_up': acc['caught_up'],
            'unknown_events': record.get('unknown', 0)})
    counters = _sum_counters(records, 'stats')
    report = {
        'subscribers': len(records),
        'published': len(sent),
        'refused': len(run.get('refused') or ()),
        'placement': dict(sorted((str(k), v) for k, v in placement.items())),
        'killed': killed,
        'lost_node': lost_node,
        'reconnected': reconnected,
        'missed_events': missed,
        'full_syncs': totals['syncs'],
        'full_syncs_after_kill': totals['syncs_after_kill'],
        'subscribers_with_syncs': with_syncs,
        'syncs_by_reason': _reason_counts(records),
        'replayed': sum(counters.get(k, 0) for k in REPLAYED_COUNTERS),
        'duplicates_dropped': sum(counters.get(k, 0)
                                  for k in DUPLICATE_COUNTERS),
        'delivered': totals['delivered'],
        'covered': totals['covered'],
        'silent_loss': totals['lost'],
        'subscribers_with_loss': with_loss,
        'duplicate_deliveries': totals['duplicate_deliveries'],
        'unpublished_deliveries': totals['unpublished_deliveries'],
        'order_regressions': totals['order_regressions'],
        'subscribers_with_regressions': regressed,
        'caught_up': _spread(catch_up),
        'caught_up_affected': _spread(catch_up_affected),
        'caught_up_after_reconnect': _spread(after_reconnect),
        'never_caught_up': never,
        'reconnect_after_kill': _spread(reconnect_delays),
        'latency_before_kill': _spread(steady_latencies),
        'stalled_at_end': stalled,
        'subscriber_counters': counters,
        'connection_counters': _sum_counters(records, 'conn_stats'),
        'per_subscriber': per_sub,
    }
    for key, value in run.items():
        if key not in ('sent', 'refused', 'node_of') and key not in report:
            report[key] = value
    return report


def to_json(payload):
    """``payload`` as indented JSON, one line per subscriber (short)."""
    lines = {}
    cases = {}
    for name, report in payload['cases'].items():
        token = '@@per-subscriber-%d@@' % len(lines)
        lines[token] = report.get('per_subscriber') or []
        cases[name] = dict(report, per_subscriber=token)
    text = json.dumps(dict(payload, cases=cases), indent=1, sort_keys=True)
    for token, rows in lines.items():
        text = text.replace(json.dumps(token), '[%s]' % ','.join(
            '\n  ' + json.dumps(row, sort_keys=True) for row in rows))
    return text + '\n'


# -- the table ---------------------------------------------------------------


def _ms(value):
    return '-' if value is None else '%.0f ms' % (value * 1000)


def _s(value):
    return '-' if value is None else '%.2f s' % value


def _spread_text(spread, unit=_s):
    if not spread or not spread.get('n'):
        return '-'
    return '%s / %s / %s' % (unit(spread['p50']), unit(spread['p99']),
                             unit(spread['max']))


def _reasons_text(reasons):
    if not reasons:
        return '-'
    return ', '.join('%s %d' % (k, v) for k, v in reasons.items())


def _counters_text(counters):
    shown = ['%s %d' % (name, value) for name, value in counters.items()
             if value and any(word in name for word in COUNTER_WORDS)]
    return ', '.join(shown) or '-'


def _idle_text(r):
    idle = r.get('cpu_idle') or {}

    def percent(value):
        return '-' if value is None else '%.0f %%' % (100 * value)
    return '%s / %s' % (percent(idle.get('before_kill')),
                        percent(idle.get('while_down')))


def _rss_text(report):
    before = report.get('rss_before') or {}
    after = report.get('rss_after') or {}
    nodes = sorted(set(before) | set(after))

    def mib(values):
        return '/'.join('-' if values.get(node) is None
                        else '%.0f' % (values[node] / 2 ** 20)
                        for node in nodes)
    return '%s > %s' % (mib(before), mib(after)) if nodes else '-'


ROWS = (
    ('node killed (roles)', lambda r: '%s (%s)' % (
        r['killed'], ', '.join(r.get('killed_roles') or ()) or 'plain')),
    ('subscribers on it / all', lambda r: '%d / %d' % (
        r['lost_node'], r['subscribers'])),
    ('subscribers that reconnected', lambda r: str(r['reconnected'])),
    ('subscribers that missed events', lambda r: str(r['missed_events'])),
    ('full syncs (subscribers)', lambda r: '%d (%d)' % (
        r['full_syncs'], r['subscribers_with_syncs'])),
    ('  by reason', lambda r: _reasons_text(r['syncs_by_reason'])),
    ('events replayed', lambda r: str(r['replayed'])),
    ('duplicates dropped', lambda r: str(r['duplicates_dropped'])),
    ('silent loss: events (subscribers)', lambda r: '%d (%d)' % (
        r['silent_loss'], r['subscribers_with_loss'])),
    ('order regressions (subscribers)', lambda r: '%d (%d)' % (
        r['order_regressions'], r['subscribers_with_regressions'])),
    ('caught up p50/p99/max', lambda r: _spread_text(r['caught_up'])),
    ('  subscribers affected', lambda r: _spread_text(
        r['caught_up_affected'])),
    ('  after its reconnect (its node\'s)', lambda r: _spread_text(
        r.get('caught_up_after_reconnect'))),
    ('  never caught up', lambda r: str(r['never_caught_up'])),
    ('callback silent > 8 s at the end', lambda r: str(
        r['stalled_at_end'])),
    ('reconnect after kill p50/p99/max', lambda r: _spread_text(
        r['reconnect_after_kill'])),
    ('latency before kill p50/p99/max', lambda r: _spread_text(
        r['latency_before_kill'], _ms)),
    ('machine CPU idle before kill / down', _idle_text),
    ('events published (refused)', lambda r: '%d (%d)' % (
        r['published'], r['refused'])),
    ('server RSS MiB n1/n2/n3 before > after', _rss_text),
)


def table(payload):
    """The printed table: one column per case."""
    cases = payload['cases']
    config = payload['config']
    names = [name for name in config.get('cases') or () if name in cases]
    names += [name for name in cases if name not in names]
    cells = [[label] + [fn(cases[name]) for name in names]
             for label, fn in ROWS]
    header = ['case'] + names
    widths = [max(len(row[i]) for row in cells + [header])
              for i in range(len(header))]
    lines = []
    client = config.get('client', 'df-nats')
    lines.append('storm: %d subscriber processes (%s, %s placement),'
                 ' %g events/s, node down %g s; commit %s' % (
                     config['subscribers'],
                     '%s world' % config['world'] if client == 'df-nats'
                     else 'baseline: plain %s, no recovery' % client,
                     config['placement'], config['rate'], config['down'],
                     payload.get('commit') or '?'))
    for row in [header] + cells:
        lines.append('  '.join(cell.ljust(width)
                               for cell, width in zip(row, widths)).rstrip())
    lines.append('subscriber counters, summed:')
    for name in names:
        lines.append('  %s: %s' % (name, _counters_text(
            cases[name]['subscriber_counters'])))
    memory = next((cases[name]['children_memory'] for name in names
                   if cases[name].get('children_memory')), None)
    if memory:
        lines.append('subscriber processes: %.0f MiB PSS in all (%.1f MiB'
                     ' each), %.0f MiB RSS summed' % (
                         memory['pss'] / 2 ** 20,
                         memory['pss'] / 2 ** 20 / max(memory['n'], 1),
                         memory['rss'] / 2 ** 20))
    return '\n'.join(lines)
