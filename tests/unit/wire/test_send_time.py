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


"""The send time in ``Df-Events`` and the lag summary."""

import pytest

from df_nats.wire import send_time


def test_stamp_and_read_back():
    value = send_time.stamp('40 lport', 1733327749388783)
    assert value == '40 lport t=1733327749388783'
    assert send_time.sent_us({'Df-Events': value}) == 1733327749388783


@pytest.mark.parametrize('headers', [
    None, {}, {'Df-Events': '40 lport'}, {'Df-Events': '40'},
    {'Df-Events': '1 t=12a'}, {'Df-Events': '1 t=' + '1' * 18},
    {'Df-Events': b'1 t=5'}, {'Df-Events': '1 t='}])
def test_no_send_time(headers):
    assert send_time.sent_us(headers) is None


def test_summary_last_average_max_and_bounds():
    lag = send_time.LagSummary()
    lag.note(1000, 1000 + 160)
    assert (lag.last_us, lag.avg_us, lag.max_us) == (160, 160, 160)
    lag.note(2000, 2000 + 320)
    assert (lag.last_us, lag.avg_us, lag.max_us) == (320, 170, 320)
    lag.note(0, int(send_time.MAX_LAG * 1e6) + 1)        # too old
    lag.note(int(send_time.MAX_AHEAD * 1e6) + 1, 0)      # too far ahead
    assert lag.ignored == 2 and lag.measured == 2
    lag.note(500, 100)                                   # skew: 0
    assert lag.last_us == 0 and lag.max_us == 320
