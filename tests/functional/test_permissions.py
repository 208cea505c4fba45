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

"""Least privilege, shipped: df-nats under the users of the sample server
configuration (etc/nats-server/df-nats-cluster.conf, a 3-node TLS cluster)
in both worlds. Each role does its job with no refusal, and a role used
for what it may not do fails loudly: an ERROR naming the subject and
saying "permission", and a refused subscription fails the call.
"""

import json
import os
import re

import pytest

from tests.functional.test_driver import _start
from tests.functional.test_driver import WORLDS
from tests.functional.test_security import answer
from tests.functional.test_security import finish
from tests.functional.test_security import run_scenario

_MODULE = 'security_scenarios'


def _error_lines(err, *needles):
    """Log lines at ERROR holding every needle."""
    return [line for line in err.splitlines()
            if re.search(r'\bERROR\b', line)
            and all(needle in line for needle in needles)]


def _settings(tmp_path, name, settings):
    directory = os.path.join(str(tmp_path), name)
    os.makedirs(directory)
    with open(os.path.join(directory, 'settings.json'), 'w') as out:
        json.dump(settings, out)
    return directory


@pytest.mark.parametrize('world', WORLDS)
def test_sample_roles_do_their_jobs(world, sample_cluster, tmp_path):
    """publisher publishes and registers (twice); controller receives;
    watcher receives and sees the registry; not one permission refusal.
    """
    urls = sample_cluster.urls
    readers = []
    for role, extra in (('controller', {}),
                        ('watcher', {'publisher_events': True})):
        options = dict(sample_cluster.options(role), **extra)
        directory = _settings(tmp_path, role,
                              {'role': role, 'options': options,
                               'publisher_runs': 2})
        proc = _start(world, 'role_at_work', urls, directory,
                      module=_MODULE)
        answer(proc, 'ready', lambda: None)
        readers.append(proc)
    outputs = []
    # Twice: the second process takes over the registry slot the first
    # left (reading its record first).
    for run in range(2):
        directory = _settings(tmp_path, 'publisher%d' % run, {
            'role': 'publisher',
            'options': sample_cluster.options('publisher')})
        pub = _start(world, 'role_at_work', urls, directory,
                     module=_MODULE)
        answer(pub, 'published', lambda: None)
        outputs.append(finish(pub))
    outputs += [finish(proc) for proc in readers]
    for out, err in outputs:
        assert 'permission' not in err.lower(), err[-3000:]
        for password in sample_cluster.passwords.values():
            assert password not in out + err


@pytest.mark.parametrize('world', WORLDS)
def test_subscribe_refused_fails_daemonize(world, sample_cluster, tmp_path):
    """The publisher's user may not subscribe to topics."""
    settings = {'options': sample_cluster.options('publisher'),
                'expect': ['permission denied', 'subscribe to',
                           'dragonflow.topic.D']}
    out, err = run_scenario(world, 'subscribe_refused', sample_cluster.urls,
                            tmp_path, settings)
    assert _error_lines(err, 'permission denied', 'dragonflow.topic.D'), err


@pytest.mark.parametrize('world', WORLDS)
def test_subscribe_refused_fails_register_topic(
        world, sample_cluster, tmp_path):
    """The controller's user may receive topics, not the subject neutron
    listeners share (port status goes to neutron-server).
    """
    settings = {'options': sample_cluster.options('controller'),
                'refused_topic': 'listener_compute-1',
                'expect': ['permission denied', 'dragonflow.listeners']}
    out, err = run_scenario(world, 'register_topic_refused',
                            sample_cluster.urls, tmp_path, settings)
    assert _error_lines(err, 'permission denied', 'dragonflow.listeners'), (
        err)


@pytest.mark.parametrize('world', WORLDS)
def test_publish_refused_is_an_error(world, sample_cluster, tmp_path):
    """The controller's user may not publish: an ERROR names the subject
    (in its own letter case), however many events are refused.
    """
    options = dict(sample_cluster.options('controller'),
                   publisher_registry=False)
    out, err = run_scenario(world, 'publish_refused', sample_cluster.urls,
                            tmp_path, {'options': options})
    lines = _error_lines(err, 'permission denied', 'publish to',
                         'dragonflow.topic.D')
    # Rate-limited: one ERROR for the 20 refusals, not one each.
    assert len(lines) == 1, err


@pytest.mark.parametrize('world', WORLDS)
def test_registry_refused_is_named_at_once(world, sample_cluster, tmp_path):
    """Without the registry's permissions a publisher starts at once and
    says which subject was refused (not "JetStream did not answer").
    """
    options = dict(sample_cluster.options('controller'))
    out, err = run_scenario(world, 'registry_refused', sample_cluster.urls,
                            tmp_path, {'options': options})
    assert _error_lines(err, 'publisher registry unavailable',
                        'permission denied'), err
    assert _error_lines(err, 'permission denied',
                        '$JS.API.STREAM.INFO.KV_df_publishers'), err
    assert 'did not answer' not in err
