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

"""tools/check_release_notes.py: no option or wire change without a note.

The check runs on throwaway git repositories made here (``git init``):
the record against the interface, ``--update`` refused without a new
note on the branch, and the check alone in a fresh clone.
"""

import copy
import importlib.util
import json
import pathlib
import subprocess

from oslo_config import cfg
import pytest

from df_nats.conf import options
from df_nats.wire import codec
from df_nats.wire import subjects

ROOT = pathlib.Path(__file__).parents[3]
_SPEC = importlib.util.spec_from_file_location(
    'check_release_notes', ROOT / 'tools' / 'check_release_notes.py')
crn = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(crn)

_INTERFACE = {'options': {'df_nats.servers': {'kind': 'ListOpt',
                                              'default': ['nats://x:1'],
                                              'secret': False}},
              'wire': {'header_seq': 'Df-Seq'}}


def _git(repo, *args):
    return subprocess.run(
        ['git', '-c', 'user.name=t', '-c', 'user.email=t@example.org',
         '-c', 'init.defaultBranch=main'] + list(args),
        cwd=repo, check=True, capture_output=True, text=True).stdout


def _note(repo, name):
    notes = repo / 'releasenotes' / 'notes'
    notes.mkdir(parents=True, exist_ok=True)
    (notes / name).write_text('---\nfeatures:\n  - Something.\n')


@pytest.fixture
def repo(tmp_path):
    """A repository on main whose record holds _INTERFACE, one note."""
    repo = tmp_path / 'repo'
    repo.mkdir()
    _git(repo, 'init', '-q')
    _note(repo, 'first-0123456789abcdef.yaml')
    (repo / crn.RECORD).write_text(json.dumps(_INTERFACE))
    _git(repo, 'add', '-A')
    _git(repo, 'commit', '-q', '-m', 'first')
    _git(repo, 'checkout', '-q', '-b', 'feature')
    return repo


def _changed():
    current = copy.deepcopy(_INTERFACE)
    current['options']['df_nats.new_option'] = {
        'kind': 'IntOpt', 'default': 1, 'secret': False}
    return current


def test_the_recorded_interface_passes(repo):
    assert crn.check(repo, copy.deepcopy(_INTERFACE)) == []


def test_a_new_option_without_a_note_fails_naming_it(repo):
    assert crn.check(repo, _changed()) == [
        'options df_nats.new_option added']


def test_a_changed_default_and_wire_value_are_named(repo):
    current = copy.deepcopy(_INTERFACE)
    current['options']['df_nats.servers']['default'] = ['nats://y:2']
    current['wire']['header_seq'] = 'Df-Sequence'
    changed = crn.check(repo, current)
    assert len(changed) == 2
    assert changed[0].startswith('options df_nats.servers changed:')
    assert 'nats://y:2' in changed[0]
    assert changed[1] == ('wire header_seq changed: "Df-Seq" ->'
                          ' "Df-Sequence"')


def test_update_is_refused_without_a_new_note(repo):
    with pytest.raises(SystemExit) as exc:
        crn.update(repo, _changed(), 'main')
    assert 'no release note added since main' in str(exc.value)
    assert crn.check(repo, _changed()) != []


def test_update_with_a_note_not_committed_yet(repo):
    _note(repo, 'new-option-fedcba9876543210.yaml')
    assert crn.update(repo, _changed(), 'main') == [
        'new-option-fedcba9876543210.yaml']
    assert crn.check(repo, _changed()) == []


def test_update_with_a_note_committed_on_the_branch(repo):
    _note(repo, 'new-option-fedcba9876543210.yaml')
    _git(repo, 'add', '-A')
    _git(repo, 'commit', '-q', '-m', 'note')
    assert crn.update(repo, _changed(), 'main') == [
        'new-option-fedcba9876543210.yaml']


def test_a_note_already_on_main_does_not_count(repo):
    _git(repo, 'checkout', '-q', 'main')
    _note(repo, 'other-1111111111111111.yaml')
    _git(repo, 'add', '-A')
    _git(repo, 'commit', '-q', '-m', 'other change on main')
    _git(repo, 'checkout', '-q', 'feature')
    _git(repo, 'merge', '-q', 'main')
    with pytest.raises(SystemExit):
        crn.update(repo, _changed(), 'main')


def test_the_check_needs_no_history_in_a_fresh_clone(repo, tmp_path):
    _note(repo, 'new-option-fedcba9876543210.yaml')
    crn.update(repo, _changed(), 'main')
    _git(repo, 'add', '-A')
    _git(repo, 'commit', '-q', '-m', 'new option, note, record')
    clone = tmp_path / 'clone'
    subprocess.run(['git', 'clone', '-q', '--depth', '1',
                    'file://%s' % repo, str(clone)], check=True)
    assert crn.check(clone, _changed()) == []
    assert crn.check(clone, copy.deepcopy(_INTERFACE)) == [
        'options df_nats.new_option removed']


def _branch_with_option(repo, branch, option, note):
    _git(repo, 'checkout', '-q', '-b', branch, 'main')
    current = copy.deepcopy(_INTERFACE)
    current['options'][option] = {'kind': 'IntOpt', 'default': 1,
                                  'secret': False}
    _note(repo, note)
    crn.update(repo, current, 'main')
    _git(repo, 'add', '-A')
    _git(repo, 'commit', '-q', '-m', option)
    return current


def test_a_conflicting_record_is_resolved_by_updating_after_the_merge(repo):
    """Two branches each add an option, a note and the record: merged,
    the record conflicts; --update before the merge is committed counts
    the note the merge brings in, and the check passes on the result.
    """
    one = _branch_with_option(repo, 'one', 'df_nats.one',
                              'one-1111111111111111.yaml')
    two = _branch_with_option(repo, 'two', 'df_nats.two',
                              'two-2222222222222222.yaml')
    _git(repo, 'checkout', '-q', 'main')
    _git(repo, 'merge', '-q', 'one')
    merge = subprocess.run(['git', 'merge', '-q', 'two'], cwd=repo,
                           capture_output=True, text=True)
    assert merge.returncode != 0   # the record conflicts
    both = copy.deepcopy(one)
    both['options'].update(two['options'])
    assert crn.update(repo, both, 'main') == [
        'two-2222222222222222.yaml']
    _git(repo, 'add', '-A')
    _git(repo, 'commit', '-q', '-m', 'merge two')
    assert crn.check(repo, both) == []


def test_after_a_merge_orig_head_is_the_base(repo):
    """A merge committed, its record wrong (here: the old one): on main,
    the notes the merge brought in (base ORIG_HEAD) allow the update.
    """
    two = _branch_with_option(repo, 'two', 'df_nats.two',
                              'two-2222222222222222.yaml')
    _git(repo, 'checkout', '-q', 'main')
    _git(repo, 'merge', '-q', '--no-ff', '-m', 'merge two', 'two')
    (repo / crn.RECORD).write_text(json.dumps(_INTERFACE))
    assert crn.check(repo, two) != []
    with pytest.raises(SystemExit):
        crn.update(repo, two, 'main')
    assert crn.update(repo, two, 'ORIG_HEAD') == [
        'two-2222222222222222.yaml']
    assert crn.check(repo, two) == []


def test_every_option_is_in_the_interface():
    found = crn.options_interface(options.list_opts())
    names = {'%s.%s' % (group, opt.dest)
             for group, opts in options.list_opts() for opt in opts}
    assert set(found) == names
    assert found['df_nats.reconnect_time_wait'] == {
        'kind': 'FloatOpt', 'default': 1.0, 'min': 0.0, 'secret': False}
    assert found['df_nats.password']['secret'] is True


def test_a_default_counts_but_a_help_text_does_not():
    opt = cfg.FloatOpt('x', default=1.0, min=0.0, help='one')
    base = crn.options_interface([('g', [opt])])
    assert crn.options_interface([('g', [cfg.FloatOpt(
        'x', default=1.0, min=0.0, help='two')])]) == base
    assert crn.options_interface([('g', [cfg.FloatOpt(
        'x', default=2.0, min=0.0, help='one')])]) != base
    assert crn.options_interface([('g', [cfg.FloatOpt(
        'x', default=1.0, min=0.5, help='one')])]) != base


def test_the_wire_format_follows_the_code(monkeypatch):
    base = crn.wire_interface()
    assert base['subjects']["'D'"] == ['dragonflow.topic.D'] * 2
    assert base['subjects']["'listener_ctl1.example.org'"] == [
        'dragonflow.listeners',
        'dragonflow.topic.listener_ctl1=2Eexample=2Eorg']
    monkeypatch.setattr(codec, 'HEADER_EVENTS', 'Df-Count')
    assert crn.wire_interface()['header_events'] == 'Df-Count'
    monkeypatch.setattr(subjects, 'LISTENER_QUEUE_GROUP', 'other')
    assert crn.wire_interface()['listener_queue_group'] == 'other'


def test_the_record_is_valid_json_of_both_parts():
    record = crn.read_record(ROOT)
    assert set(record) == {'options', 'wire'}
    assert record['options'] and record['wire']
