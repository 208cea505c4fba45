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

"""The receive path's time budget on its own (the receive path's use of
it: tests/unit/pubsub/test_delivery.py).
"""

from df_nats.conf import timeouts
from df_nats.pubsub import work_budget

SECOND = 10 ** 9
BUDGET = int(timeouts.DELIVERY_WORK_BUDGET * SECOND)


def _busy(monkeypatch, cpu):
    # The thread's CPU clock reads what the test keeps in ``cpu``.
    monkeypatch.setattr(work_budget, '_cpu_clock', lambda: cpu[0])


def test_a_slice_over_its_budget_says_so_and_ends(monkeypatch):
    cpu = [0]
    _busy(monkeypatch, cpu)
    budget = work_budget.WorkBudget()
    now = 100 * SECOND
    step = BUDGET // 3
    for _ in range(3):
        # Work all the time: as much CPU as wall clock.
        assert budget.charge(now, now + step, False) is None
        now += step
        cpu[0] += step
    assert budget.since == 100 * SECOND
    over = budget.charge(now, now + step, False)
    assert over == (4 * step, 4 * step)
    assert budget.since is None


def test_waiting_for_a_cpu_is_not_work(monkeypatch):
    cpu = [0]
    _busy(monkeypatch, cpu)
    budget = work_budget.WorkBudget()
    now = 100 * SECOND
    for _ in range(10):
        # Half a second each on the wall clock, no CPU time: a loaded
        # machine, not a costly message.
        assert budget.charge(now, now + SECOND // 2, False) is None
        now += SECOND // 2
    assert budget.since is not None


def test_an_empty_queue_ends_the_slice(monkeypatch):
    cpu = [0]
    _busy(monkeypatch, cpu)
    budget = work_budget.WorkBudget()
    now = 100 * SECOND
    for _ in range(10):
        cpu[0] += BUDGET // 2
        assert budget.charge(now, now + BUDGET // 2, True) is None
        assert budget.since is None
        now += BUDGET
