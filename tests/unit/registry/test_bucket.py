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

"""The registry bucket's limits, without a server."""

import types

from nats.js import api as js_api

from df_nats.registry import bucket


def _conf(**changes):
    conf = dict(registry_bucket='df_publishers', publisher_ttl=10.0,
                kv_replicas=3, registry_max_bytes=64 * 1024 * 1024,
                registry_max_record_size=4096)
    conf.update(changes)
    return types.SimpleNamespace(**conf)


def test_the_bucket_df_nats_makes_is_bounded_and_owned():
    config = bucket.stream_config(_conf())
    assert (config.name, config.subjects) == (
        'KV_df_publishers', ['$KV.df_publishers.>'])
    assert (config.max_bytes, config.max_msg_size,
            config.max_msgs_per_subject) == (64 * 1024 * 1024, 4096, 1)
    assert (config.max_age, config.num_replicas) == (10.0, 3)
    assert config.discard == js_api.DiscardPolicy.NEW
    # Nothing one writer could use against the others' records.
    assert config.allow_rollup_hdrs is False
    assert config.allow_msg_ttl is False
    assert config.subject_delete_marker_ttl is None
    assert config.deny_delete is True
    assert bucket.limit_problems(config, _conf()) == []


def test_a_bucket_of_an_earlier_df_nats_is_named_option_by_option():
    # What nats-py's create_key_value() made: no limits, rollups and
    # message TTLs on (limit markers need them).
    config = js_api.StreamConfig(
        max_bytes=-1, max_msg_size=-1, max_msgs_per_subject=1,
        allow_rollup_hdrs=True, allow_msg_ttl=True)
    problems = bucket.limit_problems(config, _conf())
    assert len(problems) == 4
    assert 'registry_max_bytes = 67108864' in problems[0]
    assert 'registry_max_record_size = 4096' in problems[1]
    assert 'rollup' in problems[2] and 'purge every record' in problems[2]
    assert 'TTL' in problems[3]


def test_larger_limits_are_named_smaller_ones_are_the_operators():
    conf = _conf()
    larger = js_api.StreamConfig(max_bytes=2 ** 30, max_msg_size=8192,
                                 max_msgs_per_subject=5)
    problems = bucket.limit_problems(larger, conf)
    assert [p.split(' ', 4)[-1] for p in problems[:2]] == [
        'bytes, more than [df_nats] registry_max_bytes = 67108864',
        'bytes, more than [df_nats] registry_max_record_size = 4096']
    assert 'history of 5' in problems[2]
    smaller = js_api.StreamConfig(max_bytes=1 << 20, max_msg_size=2048,
                                  max_msgs_per_subject=1)
    assert bucket.limit_problems(smaller, conf) == []
