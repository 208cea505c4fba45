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

"""The warning for a process that subscribes through df-nats but publishes
through another driver (Dragonflow 4.0.0's pub_sub_multiproc_driver).
NbApi itself runs it in tests/functional/test_dragonflow.py.
"""

import logging

from oslo_config import cfg
import pytest

from df_nats.pubsub import multiproc

# Dragonflow 4.0.0's names and defaults (dragonflow/conf).
DF_OPTS = [
    cfg.StrOpt('pub_sub_driver', default='zmq_pubsub_driver'),
    cfg.BoolOpt('pub_sub_use_multiproc', default=True),
    cfg.StrOpt('pub_sub_multiproc_driver',
               default='zmq_pubsub_multiproc_driver'),
]


@pytest.fixture(autouse=True)
def fresh_process_state(monkeypatch):
    monkeypatch.setattr(multiproc, '_publisher_handed_out', False)
    monkeypatch.setattr(multiproc, '_warned', False)


def _conf(**overrides):
    conf = cfg.ConfigOpts()
    conf.register_opts(DF_OPTS, group='df')
    conf([])
    for name, value in overrides.items():
        conf.set_override(name, value, group='df')
    return conf


@pytest.mark.parametrize('overrides,expected', [
    ({'pub_sub_driver': 'nats'}, 'zmq_pubsub_multiproc_driver'),
    ({'pub_sub_driver': 'df_nats.driver.NatsPubSub'},
     'zmq_pubsub_multiproc_driver'),
    ({'pub_sub_driver': 'nats', 'pub_sub_multiproc_driver': 'nats'}, None),
    ({'pub_sub_driver': 'nats', 'pub_sub_use_multiproc': False}, None),
    # Not loaded through Dragonflow's pub_sub_driver (df-nats' own tools).
    ({}, None),
])
def test_other_publisher_driver(overrides, expected):
    assert multiproc.other_publisher_driver(_conf(**overrides)) == (
        expected)


def test_no_dragonflow_options_no_verdict():
    assert multiproc.other_publisher_driver(cfg.ConfigOpts()) is None


def test_a_df_nats_publisher_in_the_process_clears_it():
    multiproc.publisher_handed_out()
    assert multiproc.other_publisher_driver(
        _conf(pub_sub_driver='nats')) is None


def test_warns_once_naming_the_options(caplog):
    conf = _conf(pub_sub_driver='nats')
    with caplog.at_level(logging.WARNING, logger='df_nats.pubsub.multiproc'):
        multiproc.subscriber_handed_out(conf)
        multiproc.subscriber_handed_out(conf)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1, warnings
    for text in ('pub_sub_multiproc_driver = zmq_pubsub_multiproc_driver',
                 'pub_sub_use_multiproc = True', 'df-publisher-service',
                 'pub_sub_multiproc_driver = nats'):
        assert text in warnings[0]
