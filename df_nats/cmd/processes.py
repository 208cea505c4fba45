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


"""Every df-nats process, as it describes itself and as the server sees it.

``collect`` sends one STATS request of the NATS micro protocol to every
instance of the service ``df-nats`` (``$SRV.STATS.df-nats``) and reads
the replies that come within the wait: what ``df-nats stats`` prints
and ``df-nats exporter`` serves.

Replies come from anyone allowed to publish to our inbox. Each is parsed
within bounds (``untrusted_json``: size, depth), values are typed and
shortened, and whatever is not a df-nats STATS reply is skipped and
counted by reason, never fatal.

A reply cannot say who sent it, so what it claims is checked against
what the server says (``verify``): the account's connections
(``$SYS.REQ.ACCOUNT.PING.CONNZ``, answered by every server of the
cluster for the requester's own account) with their users and
subscriptions. A genuine instance holds the subscription of its own
``counters`` endpoint (``$SRV.df-nats.counters.<id>``); its record then
gets the server it is connected to, the user the server authenticated
and the round trip the server measured. A record is marked:

- ``verified``: one connection holds the instance's subscription, and
  the user the process claims (if any) is that connection's;
- ``forged``: the servers answered and no connection holds it;
- ``ambiguous``: several connections hold it, or two replies claim the
  same instance;
- ``user-mismatch``: the process claims another user than the server's;
- ``unverified``: the server did not tell (this user may not publish to
  ``$SYS.REQ.ACCOUNT.PING.CONNZ``, or no server answered): nothing is
  assumed.
"""

import collections
import json
from typing import Dict, List, Optional

from df_nats.registry import registration
from df_nats.transport import service
from df_nats.wire import untrusted_json

# Bounds on what is gathered: thousands of compute nodes answer.
MAX_REPLIES = 100000
MAX_REPLY_BYTES = 256 * 1024 * 1024
# One STATS reply of df-nats is a few KiB.
MAX_ONE_REPLY = 256 * 1024
MAX_DEPTH = 16
# The server's connection lists: pages of this many, at most this many
# pages, each reply at most this large.
CONNZ_SUBJECT = '$SYS.REQ.ACCOUNT.PING.CONNZ'
CONNZ_PAGE = 1024
CONNZ_PAGES = 32
MAX_CONNZ_REPLY = 64 * 1024 * 1024
_MAX_TEXT = 300

VERIFIED = 'verified'
UNVERIFIED = 'unverified'
FORGED = 'forged'
AMBIGUOUS = 'ambiguous'
USER_MISMATCH = 'user-mismatch'

_IDENTITY = ('host', 'process', 'threads', 'publisher_id',
             'subject_prefix', 'user')
_SECTIONS = ('connection', 'subscriber', 'delivery')
NOT_STATS = 'not a df-nats STATS reply'


def _text(value) -> str:
    if value is None:
        return ''
    if not isinstance(value, str):
        value = json.dumps(value)[:_MAX_TEXT] if isinstance(
            value, (list, dict)) else str(value)
    return value[:_MAX_TEXT]


def _count(value) -> int:
    """A counter's value: a non-negative integer, else 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0
    return min(value, 2 ** 63 - 1)


def _counter_section(data, name):
    section = data.get(name)
    if not isinstance(section, dict):
        return {}
    return {_text(key): _count(value)
            for key, value in list(section.items())[:1000]}


def dragonflow_role(meta_role: str, process: str) -> str:
    """The Dragonflow role: ``[df_nats] role``, else the process's."""
    return meta_role or registration.default_role(process)


def parse_reply(body: bytes):
    """``(record, None)`` from a STATS reply, or ``(None, problem)``."""
    reply, problem = untrusted_json.loads(body, MAX_ONE_REPLY, MAX_DEPTH)
    if problem:
        return None, problem
    if (not isinstance(reply, dict) or reply.get('name') != service.NAME
            or reply.get('type') != service.STATS_RESPONSE_TYPE):
        return None, NOT_STATS
    meta = reply.get('metadata')
    endpoints = reply.get('endpoints')
    if not isinstance(meta, dict) or not isinstance(endpoints, list):
        return None, NOT_STATS
    data = next((e.get('data') for e in endpoints[:16] if isinstance(e, dict)
                 and e.get('name') == service.ENDPOINT), None)
    if not isinstance(data, dict):
        return None, NOT_STATS
    record = {key: _text(meta.get(key)) for key in _IDENTITY}
    pid = _text(meta.get('pid'))
    record['pid'] = int(pid) if pid.isdigit() and len(pid) < 10 else pid
    kind = _text(meta.get('role'))
    record['kind'] = kind if kind in service.ROLES else '?'
    record['role'] = dragonflow_role(_text(meta.get('registry_role')),
                                     record['process'])
    link = data.get('link') if isinstance(data.get('link'), dict) else {}
    record.update(id=_text(reply.get('id')),
                  version=_text(meta.get('df_nats_version')),
                  started=_text(reply.get('started')),
                  outbox_events=_count(data.get('outbox_events')),
                  outbox_bytes=_count(data.get('outbox_bytes')),
                  last_error=_text(data.get('last_error')),
                  server_url=_text(link.get('server')),
                  rtt_us=_count(link.get('rtt_us')),
                  # Filled in by verify(): what the server says.
                  server='', verified_user='', account='',
                  trust=UNVERIFIED, trust_note='')
    for section in _SECTIONS:
        record[section] = _counter_section(data, section)
    return record, None


def matches(record, role=None, kind=None) -> bool:
    """Whether ``record`` passes ``--role`` and ``--kind``.

    ``--role`` is the Dragonflow role; ``--kind`` publisher and
    subscriber include ``both``.
    """
    if role and record['role'] != role:
        return False
    if kind and not (record['kind'] == kind or (
            record['kind'] == 'both' and kind in ('publisher',
                                                  'subscriber'))):
        return False
    return True


class Collection:
    """The records of one request and what was made of the replies."""

    def __init__(self):
        self.records: List[Dict] = []
        self.skipped = collections.Counter()   # problem -> replies
        self.verified = False     # the server said who holds what
        self.note = ''            # why not, when not

    def skipped_line(self, command: str) -> Optional[str]:
        """One line on what was skipped, or None."""
        if not self.skipped:
            return None
        reasons = ', '.join('%s: %d' % item for item in
                            sorted(self.skipped.items()))
        return ('df-nats %s: skipped %d replies that are not df-nats STATS'
                ' replies (%s)' % (command, sum(self.skipped.values()),
                                   reasons))


def collect(conn, wait: float, role=None, kind=None,
            verify_with_server=True) -> Collection:
    """Ask every instance; the records answering within ``wait`` seconds,
    sorted by host and pid, verified against the server when it tells.
    """
    result = Collection()
    subject = '%s.STATS.%s' % (service.SUBJECT_PREFIX, service.NAME)
    replies = conn.gather(subject, wait, MAX_REPLIES, MAX_REPLY_BYTES)
    for body in replies:
        record, problem = parse_reply(body)
        if record is None:
            result.skipped[problem] += 1
        else:
            result.records.append(record)
    if verify_with_server:
        verify(result, ask_connz(conn, min(wait, 1.0)))
    result.records = [r for r in result.records if matches(r, role, kind)]
    result.records.sort(key=lambda r: (r['host'], str(r['pid']), r['id']))
    return result


def ask_connz(conn, wait: float) -> Optional[List[Dict]]:
    """The account's connections from every server that answers, or None.

    Each item: ``(server name, connection)``. Pages of ``CONNZ_PAGE``
    connections, at most ``CONNZ_PAGES`` of them; only the connections
    holding a ``counters`` subscription of the service are listed.
    """
    found = []
    answered = False
    offset = 0
    refusals = getattr(conn, 'refusals', None)
    if refusals is not None:
        # A user that may not ask is answered by a refusal: no fault.
        refusals.optional_subjects.add(CONNZ_SUBJECT.lower())
    for _ in range(CONNZ_PAGES):
        request = json.dumps({
            'subscriptions_detail': True, 'auth': True,
            'filter_subject': service.endpoint_subject('*'),
            'offset': offset, 'limit': CONNZ_PAGE}).encode()
        try:
            replies = conn.gather(CONNZ_SUBJECT, wait, 10000,
                                  MAX_CONNZ_REPLY, payload=request,
                                  until_quiet=0.2)
        except Exception:
            replies = []
        more = False
        for body in replies:
            reply, problem = untrusted_json.loads(body, MAX_CONNZ_REPLY,
                                                  MAX_DEPTH)
            page = _connz_page(reply)
            if page is None:
                continue
            answered = True
            server, total, connections = page
            found.extend((server, c) for c in connections)
            more = more or offset + CONNZ_PAGE < total
        if not more:
            break
        offset += CONNZ_PAGE
    return found if answered else None


def _connz_page(reply):
    if not isinstance(reply, dict) or not isinstance(reply.get('data'),
                                                     dict):
        return None
    data, server = reply['data'], reply.get('server')
    connections = data.get('connections')
    if not isinstance(connections, list):
        return None
    name = _text(server.get('name')) if isinstance(server, dict) else ''
    return (name, _count(data.get('total')),
            [c for c in connections if isinstance(c, dict)])


def _rtt_us(text) -> int:
    """A Go duration as the server writes it (``826µs``, ``1.2ms``)."""
    text = _text(text)
    for unit, scale in (('ns', 1e-3), ('µs', 1.0), ('us', 1.0),
                        ('ms', 1e3), ('s', 1e6)):
        if text.endswith(unit):
            try:
                return max(int(float(text[:-len(unit)]) * scale), 0)
            except ValueError:
                return 0
    return 0


def verify(result: Collection, connections) -> None:
    """Mark each record with what the server says (module docstring)."""
    ids = collections.Counter(r['id'] for r in result.records)
    if connections is None:
        result.note = ('the server did not say which connection serves'
                       ' each process (this user may not publish to %s):'
                       ' replies are unverified' % CONNZ_SUBJECT)
        for record in result.records:
            if ids[record['id']] > 1:
                record.update(trust=AMBIGUOUS,
                              trust_note='several replies claim this id')
        return
    result.verified = True
    holders = collections.defaultdict(list)
    for server, conn in connections:
        subs = conn.get('subscriptions_list_detail')
        for sub in subs[:10000] if isinstance(subs, list) else ():
            if isinstance(sub, dict):
                holders[_text(sub.get('subject'))].append((server, conn))
    for record in result.records:
        held = holders.get(service.endpoint_subject(record['id']), [])
        if ids[record['id']] > 1:
            record.update(trust=AMBIGUOUS,
                          trust_note='several replies claim this id')
        elif not held:
            record.update(trust=FORGED, trust_note='no connection serves'
                          ' this instance: the reply is not its own')
        elif len(held) > 1:
            record.update(trust=AMBIGUOUS, trust_note='%d connections'
                          ' serve this instance' % len(held))
        if not held:
            continue
        server, conn = held[0]
        user = _text(conn.get('authorized_user'))
        record.update(server=server, verified_user=user,
                      account=_text(conn.get('account')),
                      rtt_us=_rtt_us(conn.get('rtt')) or record['rtt_us'])
        if record['trust'] != UNVERIFIED:
            continue
        if record['user'] and user and record['user'] != user:
            record.update(trust=USER_MISMATCH, trust_note='claims user %s,'
                          ' the server says %s' % (record['user'], user))
        else:
            record['trust'] = VERIFIED
