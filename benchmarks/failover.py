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

"""How long a kill -9 of a NATS node interrupts df-nats.

On a 3-node loopback cluster a publisher process sends events at a steady
rate to a subscriber process on another node; the node of the subscriber
(or of the publisher) is killed -9, or (``rolling``) every node is restarted
in turn. Per run it prints the seconds from the kill to the first event
received again (the first one sent after the kill) and to the first
``sync`` callback, and the loss accounting (``late``: missing events
covered by a sync only more than 1 s after events flowed again); then the
medians. Run from the repository root::

    python -m benchmarks.failover [--runs 5] [--worlds eventlet,native]
        [--targets subscriber,publisher,rolling]
"""

import argparse
import statistics
import tempfile

from benchmarks import failover_run as fs
from df_nats.testing import embedded_cluster


def _fmt(value):
    return '   -   ' if value is None else '%6.3fs' % value


_ACTIONS = {'subscriber': fs.KILL_SUBSCRIBER_NODE,
            'publisher': fs.KILL_PUBLISHER_NODE,
            'rolling': fs.ROLLING_RESTART}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--worlds', default='eventlet,native')
    parser.add_argument('--targets', default='subscriber,publisher',
                        help='comma separated: subscriber, publisher,'
                        ' rolling')
    parser.add_argument('--events', type=int, default=6000)
    parser.add_argument('--rate', type=float, default=2000.0)
    args = parser.parse_args()
    results = {}
    with embedded_cluster.NatsCluster(size=3, jetstream=True,
                                      name='df-nats-bench') as cluster:
        for target in args.targets.split(','):
            action = _ACTIONS[target]
            for world in args.worlds.split(','):
                key = (action, world)
                results[key] = []
                for i in range(args.runs):
                    with tempfile.TemporaryDirectory() as workdir:
                        run = fs.run_failover(
                            cluster, world, action, workdir,
                            events=args.events, rate=args.rate,
                            break_at=0.1 if target == 'rolling' else 0.3)
                    cluster.heal()
                    event_s, sync_s = fs.recovery_times(run)
                    acc = fs.account(run)
                    results[key].append((event_s, sync_s, acc))
                    print('%-21s %-8s run %d: first event again %s,'
                          ' sync %s; received %d, covered by sync %d'
                          ' (late %d), neither %d' % (
                              action, world, i + 1, _fmt(event_s),
                              _fmt(sync_s), acc['received'],
                              acc['covered_by_sync'], acc['late_covers'],
                              acc['neither']),
                          flush=True)
    print('\nmedians over %d runs (%d events at %d/s):'
          % (args.runs, args.events, args.rate))
    for (action, world), rows in results.items():
        events = [r[0] for r in rows if r[0] is not None]
        syncs = [r[1] for r in rows if r[1] is not None]
        print('%-21s %-8s first event again %s   sync %s (%d of %d runs'
              ' had one)   neither: %d' % (
                  action, world,
                  _fmt(statistics.median(events) if events else None),
                  _fmt(statistics.median(syncs) if syncs else None),
                  len(syncs), len(rows),
                  sum(r[2]['neither'] for r in rows)))
        late = [r for r in rows if r[2]['neither'] or r[2]['late_covers']]
        print('%-21s %-8s runs with an event neither delivered nor covered'
              ' within 1 s of events flowing again: %d of %d' % (
                  action, world, len(late), len(rows)))


if __name__ == '__main__':
    main()
