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


"""``df-nats check``: exit status, report and timing."""

from df_nats.cmd import check


def test_exit_status_is_the_worst_check():
    def run(*statuses):
        return check.status([check.Check('c', s, '') for s in statuses])
    assert run('OK', 'INFO') == 0
    assert run('OK', 'WARN', 'INFO') == 1
    assert run('WARN', 'FAIL') == 2
    assert run() == 2


def test_text_report_escapes_and_sums_up():
    checks = [check.Check('connect', 'FAIL', 'refused \x1b[2J'),
              check.Check('config', 'OK', 'fine')]
    report = check.format_text(checks, 2)
    assert '\x1b' not in report
    assert report.splitlines() == ['FAIL  connect      refused \\x1b[2J',
                                   'OK    config       fine',
                                   'df-nats check: CRITICAL (1)']


def test_process_age_is_small_and_positive():
    assert 0 <= check.process_age() < 3600
