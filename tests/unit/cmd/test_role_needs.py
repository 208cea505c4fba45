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


"""What a role needs, and the permission rules as nats-server applies them."""

import types

import pytest

from df_nats.cmd import role_needs
from df_nats.registry import records
from df_nats.registry import registration


@pytest.mark.parametrize('pattern, subject, expected', [
    ('a.b', 'a.b', True), ('a.*', 'a.b', True), ('a.>', 'a.b.c', True),
    ('a.>', 'a', False), ('a.*', 'a.b.c', False), ('a.*', 'a.*', True),
    ('a.*', 'a.>', False), ('a.>', 'a.>', True), ('>', 'x', True),
    ('a.b', 'a.*', False), ('_INBOX.>', '_INBOX.df-nats-check', True)])
def test_covers(pattern, subject, expected):
    assert role_needs.covers(pattern, subject) is expected


def test_allowed_as_nats_server_applies_the_rules():
    stated = {'publish': {'allow': ['dragonflow.topic.>', '_INBOX.>'],
                          'deny': ['dragonflow.topic.secret']},
              'subscribe': {'allow': ['dragonflow.listeners df-listeners',
                                      '$SRV.>']}}
    assert role_needs.allowed(stated, 'publish', 'dragonflow.topic.x')
    assert not role_needs.allowed(stated, 'publish', 'dragonflow.topic.secret')
    assert not role_needs.allowed(stated, 'publish', 'dragonflow.listeners')
    assert role_needs.allowed(stated, 'subscribe', 'dragonflow.listeners',
                              'df-listeners')
    assert not role_needs.allowed(stated, 'subscribe', 'dragonflow.listeners')
    assert not role_needs.allowed(stated, 'subscribe', 'dragonflow.listeners',
                                  'rogue')
    assert role_needs.allowed({}, 'publish', 'anything')
    assert role_needs.allowed({'publish': {'deny': ['>']}}, 'subscribe', 'x')
    assert not role_needs.allowed({'publish': {'deny': ['>']}}, 'publish', 'x')
    # What a hostile or odd reply may hold is no exception.
    assert role_needs.allowed({'publish': {'allow': 7}}, 'publish', 'x')
    assert role_needs.allowed('nonsense', 'publish', 'x')


def _conf(**values):
    conf = dict(subject_prefix='dragonflow', registry_bucket='df_publishers',
                listener_queue_group=True, publisher_registry=True,
                publisher_events=False, service_endpoint=True,
                replay_stream='DF_NATS_EVENTS')
    conf.update(values)
    return types.SimpleNamespace(**conf)


def test_what_each_role_needs():
    def of(role, **values):
        return {(verb, subject, queue) for verb, subject, queue, _ in
                role_needs.needs(role, _conf(**values))}
    neutron = of('neutron-server')
    assert ('publish', 'dragonflow.topic.df-nats-check', '') in neutron
    assert ('subscribe', 'dragonflow.listeners', 'df-listeners') in neutron
    key = records.key(registration.host_name(), 'df-nats-check')
    assert ('publish', '$KV.df_publishers.' + key, '') in neutron
    controller = of('df-local-controller')
    assert ('subscribe', 'dragonflow.topic.df-nats-check', '') in controller
    assert ('publish', 'dragonflow.listeners', '') in controller
    # No registry: compute nodes do not watch it by default.
    assert not any('KV_' in s or s == '$JS.API.INFO'
                   for _, s, _ in controller)
    assert any(s.startswith('$JS.API.CONSUMER') for _, s, _ in of(
        'df-local-controller', publisher_events=True))
    assert ('subscribe', 'dragonflow.listeners', 'df-listeners') not in of(
        'neutron-server', listener_queue_group=False)
    assert ('publish', '$SRV.STATS.df-nats', '') in of('tools')
    assert of('someone-else') == set()


def test_the_capture_stream_s_needs():
    """neutron-server creates and updates the stream; a controller reads
    it back (stream info, batched direct get) on an inbox of its own; the
    tools read its settings; none of it without a capture stream.
    """
    def of(role, **values):
        return [(verb, subject) for verb, subject, queue, _ in
                role_needs.needs(role, _conf(**values))
                if 'DF_NATS_EVENTS' in subject or subject.startswith(
                    '_INBOX')]
    info = ('publish', '$JS.API.STREAM.INFO.DF_NATS_EVENTS')
    inbox = ('subscribe', '_INBOX.df-nats-check')
    assert of('neutron-server') == [
        inbox, info, ('publish', '$JS.API.STREAM.CREATE.DF_NATS_EVENTS'),
        ('publish', '$JS.API.STREAM.UPDATE.DF_NATS_EVENTS')]
    assert of('neutron-server', publisher_registry=False) == [
        info, ('publish', '$JS.API.STREAM.CREATE.DF_NATS_EVENTS'),
        ('publish', '$JS.API.STREAM.UPDATE.DF_NATS_EVENTS'), inbox]
    assert of('df-local-controller') == [
        info, ('publish', '$JS.API.DIRECT.GET.DF_NATS_EVENTS'), inbox]
    # Each need once, the inbox shared with the registry watch.
    assert of('df-local-controller', publisher_events=True) == [
        inbox, info, ('publish', '$JS.API.DIRECT.GET.DF_NATS_EVENTS')]
    assert of('tools') == [inbox, info]
    assert of('df-local-controller', replay_stream='ALT')[0] == inbox
    for role in role_needs.ROLES:
        assert not [s for _, s in of(role, replay_stream='')
                    if 'DF_NATS_EVENTS' in s]
    assert of('df-local-controller', replay_stream='') == []


def test_the_sample_controller_permissions_cover_replay():
    """The needs are judged against what the server states: the old
    compute-node permissions (no inbox, no stream) miss three.
    """
    old = {'publish': {'allow': ['dragonflow.listeners', '_INBOX.>']},
           'subscribe': {'allow': ['dragonflow.topic.>', '$SRV.>']}}
    new = {'publish': {'allow': old['publish']['allow'] + [
        '$JS.API.STREAM.INFO.DF_NATS_EVENTS',
        '$JS.API.DIRECT.GET.DF_NATS_EVENTS']},
        'subscribe': {'allow': old['subscribe']['allow'] + ['_INBOX.>']}}

    def missing(stated):
        return [subject for verb, subject, queue, _ in role_needs.needs(
            'df-local-controller', _conf(publisher_registry=False))
            if not role_needs.allowed(stated, verb, subject, queue)]
    assert missing(old) == ['$JS.API.STREAM.INFO.DF_NATS_EVENTS',
                            '$JS.API.DIRECT.GET.DF_NATS_EVENTS',
                            '_INBOX.df-nats-check']
    assert missing(new) == []
