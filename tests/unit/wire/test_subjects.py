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

"""The topic-to-subject mapping: one to one, exact, readable."""

import re

from hypothesis import given
from hypothesis import strategies as st
import pytest

from df_nats.wire import subjects

PREFIX = 'dragonflow'
# What nats-py accepts for a subscription subject, minus wildcards.
_VALID_SUBJECT = re.compile(r'^[^\s.*>]+(\.[^\s.*>]+)*$')


@given(st.text())
def test_str_round_trip(topic):
    subject = subjects.topic_subject(PREFIX, topic)
    assert subjects.subject_topic(PREFIX, subject) == topic


@given(st.binary())
def test_bytes_round_trip(raw):
    subject = subjects.topic_subject(PREFIX, raw)
    topic = subjects.subject_topic(PREFIX, subject)
    assert subjects.topic_bytes(topic) == raw


@given(st.text())
def test_str_and_its_utf8_bytes_are_one_topic(topic):
    assert (subjects.topic_subject(PREFIX, topic)
            == subjects.topic_subject(PREFIX, topic.encode('utf-8',
                                                           'surrogatepass'))
            or '\ud800' <= max(topic or 'a') <= '\udfff')


@given(st.text(), st.text())
def test_distinct_topics_distinct_subjects(a, b):
    if a != b:
        assert (subjects.topic_subject(PREFIX, a)
                != subjects.topic_subject(PREFIX, b))


@given(st.binary())
def test_one_valid_token_without_wildcards(raw):
    subject = subjects.topic_subject(PREFIX, raw)
    assert _VALID_SUBJECT.match(subject), subject
    assert subject.count('.') == 2
    assert '*' not in subject and '>' not in subject


@pytest.mark.parametrize('topic,token', [
    ('D', 'D'),
    ('0b4d8f52-7a2e-4c4c-9c3e-2f0e6f1e5d11',
     '0b4d8f52-7a2e-4c4c-9c3e-2f0e6f1e5d11'),
    ('listener_compute-1', 'listener_compute-1'),
    ('listener_host.example.org', 'listener_host=2Eexample=2Eorg'),
    ('', '='),
    ('*', '=2A'),
    ('>', '=3E'),
    ('a b', 'a=20b'),
    ('=', '=3D'),
    ('é', '=C3=A9'),
])
def test_readable_tokens(topic, token):
    assert subjects.topic_subject(PREFIX, topic) == 'dragonflow.topic.' + token


@pytest.mark.parametrize('subject', [
    'dragonflow.topic.=3d',     # lower-case hex is not ours
    'dragonflow.topic.a=2',     # truncated escape
    'dragonflow.topic.a.b',     # two tokens
    'dragonflow.topic.a b',
    'dragonflow.other.D',
    'neutron.topic.D',
])
def test_foreign_subjects_rejected(subject):
    with pytest.raises(ValueError):
        subjects.subject_topic(PREFIX, subject)


def test_non_topic_type_rejected():
    with pytest.raises(TypeError, match='str or bytes'):
        subjects.topic_subject(PREFIX, 42)


def test_subject_map_caches_and_stays_bounded(monkeypatch):
    smap = subjects.SubjectMap('p')
    monkeypatch.setattr(subjects.SubjectMap, '_MAX_CACHED', 3)
    for i in range(10):
        assert smap.subject('t%d' % i) == 'p.topic.t%d' % i
    assert len(smap._cache) <= 3
    assert smap.topic('p.topic.t1') == 't1'


@pytest.mark.parametrize('topic,listener', [
    ('listener_compute-1', True),
    (b'listener_compute-1', True),
    ('listener_host.example.org', True),
    ('listener_', True),
    ('listener', False),
    ('Listener_x', False),
    ('xlistener_x', False),
    ('D', False),
    ('', False),
])
def test_listener_topics(topic, listener):
    assert subjects.is_listener_topic(topic) is listener


def test_listener_topics_share_one_subject_with_the_option():
    smap = subjects.SubjectMap('p', listener_queue_group=True)
    shared = subjects.listeners_subject('p')
    assert shared == 'p.listeners'
    for topic in ('listener_a', b'listener_a', 'listener_b.example.org'):
        assert smap.subject(topic) == shared
        assert smap.subject(topic) == shared  # and from the cache
    assert smap.is_shared(shared)
    assert smap.queue_group(shared) == subjects.LISTENER_QUEUE_GROUP
    # Other topics keep their own subject, outside any queue group.
    assert smap.subject('D') == 'p.topic.D'
    assert smap.subject('listener') == 'p.topic.listener'
    assert not smap.is_shared('p.topic.D')
    assert smap.queue_group('p.topic.D') is None
    with pytest.raises(ValueError):
        smap.topic(shared)  # many topics: the body names its own


def test_listener_topics_own_subjects_without_the_option():
    smap = subjects.SubjectMap('p')
    assert smap.subject('listener_a') == 'p.topic.listener_a'
    assert smap.subject('listener_b') == 'p.topic.listener_b'
    assert not smap.is_shared(subjects.listeners_subject('p'))
    assert smap.queue_group('p.topic.listener_a') is None
    assert smap.queue_group(subjects.listeners_subject('p')) is None


@given(st.binary())
def test_no_topic_subject_is_the_listeners_subject(raw):
    shared = subjects.listeners_subject(PREFIX)
    assert subjects.topic_subject(PREFIX, raw) != shared
    assert _VALID_SUBJECT.match(shared)
    assert not shared.startswith(
        subjects.all_topics_subject(PREFIX).rstrip('*'))
