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

"""Resync pacing: the first at once, then at most one per interval."""

from df_nats.wire import resync


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_first_resync_at_once_then_one_per_interval():
    clock = _Clock()
    pacer = resync.ResyncPacer(5.0, clock)
    assert pacer.request() == 0.0
    assert pacer.request() is None          # covered by the pending one
    pacer.delivered()
    clock.now += 1.0
    assert pacer.request() == 4.0           # waits for the interval's end
    for _ in range(1000):
        assert pacer.request() is None      # folded in, not lost
    clock.now += 4.0
    pacer.delivered()
    clock.now += 6.0
    assert pacer.request() == 0.0           # the interval is over


def test_zero_interval_never_delays():
    clock = _Clock()
    pacer = resync.ResyncPacer(0.0, clock)
    for _ in range(3):
        assert pacer.request() == 0.0
        pacer.delivered()


def test_reset_forgets_a_resync_never_delivered():
    pacer = resync.ResyncPacer(5.0, _Clock())
    assert pacer.request() == 0.0
    pacer.reset()
    assert pacer.request() == 0.0
