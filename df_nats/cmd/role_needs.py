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


"""What each df-nats role needs of the NATS server, and whether the
permissions the server states for a user allow it.

Pure: NATS subject matching (``covers``), nats-server's permission rules
(``allowed``), and the list of needs of a role (``needs``) as ``df-nats
check`` probes or judges them.
"""

from df_nats.registry import records
from df_nats.registry import registration
from df_nats.transport import service
from df_nats.wire import subjects

NEUTRON_SERVER = 'neutron-server'
CONTROLLER = 'df-local-controller'
TOOLS = 'tools'
ROLES = (NEUTRON_SERVER, CONTROLLER, TOOLS)
# The token that stands for any subject of a pattern in the needs.
PROBE = 'df-nats-check'


def covers(pattern: str, subject: str) -> bool:
    """True when NATS ``pattern`` matches every subject ``subject`` can.

    ``subject`` may itself hold wildcards (a subscription): ``*`` in it
    is covered by ``*`` or ``>`` only, ``>`` by ``>`` only.
    """
    want = pattern.split('.')
    have = subject.split('.')
    for i, token in enumerate(want):
        if token == '>':
            return i < len(have)
        if i >= len(have):
            return False
        if token == '*':
            if have[i] == '>':
                return False
        elif token != have[i]:
            return False
    return len(want) == len(have)


def _entries(value):
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value[:10000] if isinstance(v, str)]
    return []


def allowed(permissions, verb: str, subject: str, queue: str = '') -> bool:
    """Whether the server's stated ``permissions`` let ``verb`` (publish
    or subscribe) on ``subject`` (in ``queue``) through.

    Rules as nats-server applies them: no ``allow`` list allows all, a
    ``deny`` match refuses; subscribe entries may be ``subject queue``.
    A publish to a reply subject of a request received may also be let
    through by ``allow_responses``: that is the caller's to judge.
    """
    if not isinstance(permissions, dict):
        return True
    rules = permissions.get(verb)
    if not isinstance(rules, dict):
        return True

    def match(entry):
        pattern, _, entry_queue = entry.partition(' ')
        if entry_queue and entry_queue != queue:
            return False
        return covers(pattern, subject)

    allow = _entries(rules.get('allow'))
    if allow and not any(match(e) for e in allow):
        return False
    return not any(covers(e.partition(' ')[0], subject)
                   for e in _entries(rules.get('deny')))


def needs(role: str, conf):
    """``(verb, subject, queue, why)`` this role needs.

    A probe subject stands for each pattern.
    """
    prefix = conf.subject_prefix
    topic = subjects.topic_subject(prefix, PROBE)
    listeners = subjects.listeners_subject(prefix)
    bucket = conf.registry_bucket
    inbox = ('subscribe', '_INBOX.%s' % PROBE, '', 'JetStream replies')
    js = [('publish', '$JS.API.INFO', '', 'the registry: JetStream'),
          ('publish', '$JS.API.STREAM.INFO.KV_%s' % bucket, '',
           'the registry bucket')]
    need = []
    if role == NEUTRON_SERVER:
        need.append(('publish', topic, '', 'events to every topic'))
        if conf.listener_queue_group:
            need.append(('subscribe', listeners,
                         subjects.LISTENER_QUEUE_GROUP,
                         'port status (the listeners\' queue group)'))
        if conf.publisher_registry:
            # Its records are under its host's token (records.key).
            key = records.key(registration.host_name(), PROBE)
            need += js + [('publish', '$KV.%s.%s' % (bucket, key), '',
                           'its registry records'), inbox]
        need += _capture(conf, ('INFO', 'CREATE', 'UPDATE'), inbox)
    elif role == CONTROLLER:
        need.append(('subscribe', topic, '', 'events of its topics'))
        if conf.listener_queue_group:
            need.append(('publish', listeners, '',
                         'port status to the neutron-servers'))
        if conf.publisher_events:
            need += js + [('publish', '$JS.API.CONSUMER.CREATE.KV_%s'
                           % bucket, '', 'the registry watch'), inbox]
        need += _capture(conf, ('INFO', 'DIRECT.GET'), inbox)
    elif role == TOOLS:
        need += [('publish', '$SRV.STATS.%s' % service.NAME, '',
                  'df-nats stats and exporter'),
                 ('subscribe', inbox[1], '', 'replies'),
                 ('subscribe', subjects.all_topics_subject(prefix), '',
                  'df-nats tail')] + js
        need += _capture(conf, ('INFO',), None)
    if role in (NEUTRON_SERVER, CONTROLLER) and conf.service_endpoint:
        need.append(('subscribe', '%s.PING.%s.%s' % (
            service.SUBJECT_PREFIX, service.NAME, PROBE), '',
            'its NATS service (df-nats stats)'))
    # Each once: the inbox serves the registry and the stream alike.
    unique = []
    for item in need:
        if all(item[:3] != other[:3] for other in unique):
            unique.append(item)
    return unique


# What each JetStream API request on the capture stream is for.
_CAPTURE_WHY = {'INFO': 'the capture stream: its settings and window',
                'CREATE': 'the capture stream: create it when missing',
                'UPDATE': 'the capture stream: bring its settings up to'
                          ' date',
                'DIRECT.GET': 'catch-up: read back missed events'}


def _capture(conf, verbs, inbox):
    """The capture stream's needs (none when ``replay_stream`` is off)."""
    stream = conf.replay_stream
    if not stream:
        return []
    need = [('publish', '$JS.API.%s.%s' % (
        verb if verb == 'DIRECT.GET' else 'STREAM.' + verb, stream), '',
        _CAPTURE_WHY[verb]) for verb in verbs]
    return need + ([inbox] if inbox else [])
