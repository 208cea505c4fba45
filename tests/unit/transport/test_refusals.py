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


"""Refusals: an optional request's refusal is an answer, not an error."""

import collections
import logging
import types

from df_nats.transport import refusals


def test_optional_subjects_are_refused_quietly(caplog):
    conf = types.SimpleNamespace(registry_bucket='df_publishers',
                                 replay_stream='DF_NATS_EVENTS')
    bridge = types.SimpleNamespace(loop=None, on_loop_thread=lambda: True)
    stats = collections.Counter()
    refused = refusals.Refusals(conf, bridge, stats)
    refused.optional_subjects.add('$sys.req.user.info')
    with caplog.at_level(logging.DEBUG, logger='df_nats'):
        refused.note_on_loop('publish', '$sys.req.user.info')
        refused.note_on_loop('publish', 'dragonflow.topic.d')
    levels = sorted((r.levelname, 'user.info' in r.getMessage())
                    for r in caplog.records
                    if 'permission denied' in r.getMessage())
    assert levels == [('DEBUG', True), ('ERROR', False)]
    assert stats['permission_denied'] == 2


def test_a_capture_stream_refusal_names_the_stream_as_sent(caplog):
    # nats-py lower-cases the server's error line.
    conf = types.SimpleNamespace(registry_bucket='df_publishers',
                                 replay_stream='DF_NATS_EVENTS')
    bridge = types.SimpleNamespace(loop=None, on_loop_thread=lambda: True)
    refused = refusals.Refusals(conf, bridge, collections.Counter())
    with caplog.at_level(logging.ERROR, logger='df_nats'):
        refused.note_on_loop('publish', '$js.api.direct.get.df_nats_events')
    [record] = caplog.records
    assert 'publish to $JS.API.DIRECT.GET.DF_NATS_EVENTS:' in (
        record.getMessage())
