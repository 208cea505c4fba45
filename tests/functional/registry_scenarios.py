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

"""Forged registry records against a subscriber's gap detection.

Run by world_runner in an eventlet and a native process, on a server
that lets anyone write the registry (the worst case: no per-host
permissions). The attacker is tests/functional/forger.py.
"""

import json
import time
import uuid

from df_nats.wire import sequence
from tests.functional.hostile_scenarios import _body
from tests.functional.hostile_scenarios import _send
from tests.functional.hostile_scenarios import _set
from tests.functional.hostile_scenarios import _subject
from tests.functional.hostile_scenarios import forge
from tests.functional import scenarios

FORGED = 4200   # more than sequence_streams' default, 4096


def _forged_records(bucket, count):
    # Each a valid record of a host of its own, under its host's key.
    items, ids = [], []
    for i in range(count):
        host = 'forged-%d.example.net' % i
        publisher_id = str(uuid.uuid5(uuid.NAMESPACE_DNS,
                                      'neutron-server.%s' % host))
        record = {'id': publisher_id, 'role': 'neutron-server',
                  'host': host, 'pid': 1, 'process': 'neutron-server',
                  'slot': 0, 'last_activity_timestamp': time.time()}
        key = '%s.%s' % (host.replace('.', '=2E'), publisher_id)
        items.append(['$KV.%s.%s' % (bucket, key), None,
                      json.dumps(record).encode(), 1])
        ids.append(publisher_id)
    return items, ids


def scenario_forged_registry_streams(ctx):
    # Issue 19: 4,200 forged registry records, then 4,200 streams under
    # those ids, pushed the real registered stream out of the tracker;
    # its gap then went unseen.
    bucket = 'flood_%s' % uuid.uuid4().hex[:8]
    _set(publisher_events=True, registry_bucket=bucket, publisher_ttl=60.0)
    pub, sub, got = scenarios._pubsub(ctx)
    me = pub.publisher_id
    ctx.wait_until(lambda: ('publisher', me) in [e[:2] for e in got.events],
                   what='the publisher registered')
    _send(pub, ['real-1'])
    ctx.wait_until(lambda: 'real-1' in got.keys())
    items, ids = _forged_records(bucket, FORGED)
    forge(ctx, items)
    joined = set(ids)
    ctx.wait_until(lambda: sum(1 for e in got.events
                               if e[0] == 'publisher' and e[1] in joined
                               and e[2] == 'create') == FORGED,
                   timeout=120, what='%d forged publishers' % FORGED)
    subject = _subject(sub)
    forge(ctx, [[subject, {sequence.HEADER_SEQ: '%s x.1' % forged},
                 _body('forged'), 1] for forged in ids])
    ctx.wait_until(lambda: got.keys().count('forged') == FORGED,
                   timeout=120, what='%d forged streams (%s)'
                   % (FORGED, sub.stats))
    tracker = sub._delivery._tracker
    assert tracker.known_count() <= sub._conn.conf.sequence_streams
    # A real gap: an event the publisher could not send.
    pub._by_subject[subject].skip()
    _send(pub, ['real-2'])
    ctx.wait_until(lambda: got.syncs >= 1, timeout=30,
                   what='the sync of the real gap (%s)' % sub.stats)
    assert sub.stats['gaps'] == 1 and sub.stats['missed'] == 1, sub.stats
    print('forged registry: %d forged publishers and streams; %d known'
          ' streams tracked, %d tracked as unknown; the real gap gave %d'
          ' sync' % (FORGED, tracker.known_count(), tracker.known_full,
                     got.syncs))
    pub.close()
    sub.close()
