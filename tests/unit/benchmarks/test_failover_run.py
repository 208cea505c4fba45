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

"""The failover runs' accounting: received, covered, late, neither."""

from benchmarks import failover_run as fs


def _run(sent, log, refused=()):
    return {'pub': {'sent': sent, 'refused': list(refused)},
            'sub': {'log': log, 'stats': {}}}


def test_every_event_received():
    result = fs.account(_run([1.0, 2.0], [['e', 0, 1.1], ['e', 1, 2.1]]))
    assert (result['received'], result['covered_by_sync'],
            result['neither'], result['late_covers']) == (2, 0, 0, 0)


def test_a_sync_soon_after_events_flow_again_covers_in_time():
    # 1 is lost; 2 arrives at 3.1, the sync at 3.9: 0.8 s after.
    result = fs.account(_run([1.0, 2.0, 3.0], [
        ['e', 0, 1.1], ['e', 2, 3.1], ['s', 3.9]]))
    assert (result['covered_by_sync'], result['late_covers'],
            result['cover_after_flow']) == (1, 0, 0.8)


def test_a_sync_long_after_events_flow_again_is_late():
    result = fs.account(_run([1.0, 2.0, 3.0], [
        ['e', 0, 1.1], ['e', 2, 3.1], ['s', 4.6]]))
    assert (result['covered_by_sync'], result['late_covers'],
            result['cover_after_flow']) == (1, 1, 1.5)
    assert result['neither'] == 0


def test_a_sync_before_the_event_was_sent_covers_nothing():
    result = fs.account(_run([1.0, 2.0, 3.0], [
        ['e', 0, 1.1], ['s', 1.5], ['e', 2, 3.1]]))
    assert (result['covered_by_sync'], result['neither'],
            result['lost_examples']) == (0, 1, [1])


def test_the_last_events_lost_have_no_flowing_again():
    # Nothing later arrived: covered, never late.
    result = fs.account(_run([1.0, 2.0], [['e', 0, 1.1], ['s', 9.0]]))
    assert (result['covered_by_sync'], result['late_covers'],
            result['cover_after_flow']) == (1, 0, None)
