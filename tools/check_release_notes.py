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

"""No change to the options or the wire format without a release note.

``releasenotes/interface.json`` records df-nats' interface to operators
and to other df-nats versions: every ``[df_nats]`` option (name, type,
default, bounds, choices, secret, deprecated names; not the help text)
and the wire format (header names and values, the bodies of a sample
event and batch, the subjects of sample topics, the batch limit, the
actions accepted). It is computed from the code.

``check_release_notes.py`` (run by ``tox -e docs``, so in CI) computes it
and fails, listing the differences, when it differs from the record:
the change needs a release note.

``check_release_notes.py --update [--base REF]`` writes the record anew,
and refuses unless a release note was added since the branch left REF
(``main`` by default): a YAML file in ``releasenotes/notes/`` that the
merge base of HEAD and REF does not have, committed or not. So the record
changes only together with a note, and the check needs no git history: a
fresh clone, shallow or not, runs it the same.
"""

import argparse
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
RECORD = pathlib.Path('releasenotes') / 'interface.json'
NOTES = pathlib.Path('releasenotes') / 'notes'

# Sample input of the wire format: what the record shows of it.
_SAMPLE_EVENT = {'table': 'lport', 'key': 'k1', 'action': 'create',
                 'value': '{"id": "k1"}', 'topic': 'D'}
_SAMPLE_TOPICS = ('D', 'tenant-1_x', 'listener_ctl1.example.org', '*', '>',
                  '', 'a b', 'é', b'\xff')


def _jsonable(value):
    """``value`` as JSON can hold it (sets sorted, tuples as lists)."""
    if isinstance(value, (set, frozenset)):
        return sorted(_jsonable(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.hex()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def options_interface(groups):
    """{"group.option": what an operator sets} of ``list_opts()``."""
    found = {}
    for group, opts in groups:
        for opt in opts:
            opt_type = getattr(opt, 'type', None)
            entry = {'kind': type(opt).__name__,
                     'default': _jsonable(opt.default),
                     'secret': bool(opt.secret)}
            for bound in ('min', 'max'):
                value = getattr(opt_type, bound, None)
                if value is not None:
                    entry[bound] = _jsonable(value)
            choices = getattr(opt_type, 'choices', None)
            if choices:
                entry['choices'] = _jsonable(list(choices))
            deprecated = ['%s.%s' % (d.group or group or 'DEFAULT',
                                     d.name or opt.dest)
                          for d in opt.deprecated_opts]
            if deprecated:
                entry['deprecated'] = sorted(deprecated)
            found['%s.%s' % (group or 'DEFAULT', opt.dest)] = entry
    return found


def wire_interface():
    """What a df-nats of another version must agree with, from the code."""
    from df_nats.wire import codec
    from df_nats.wire import send_time
    from df_nats.wire import sequence
    from df_nats.wire import subjects

    body = codec.pack_event(_SAMPLE_EVENT)
    stream = sequence.Stream('dragonflow.topic.D', 'pub-1', 'inc1')
    stream.next_number()
    shared = subjects.SubjectMap('dragonflow', listener_queue_group=True)
    apart = subjects.SubjectMap('dragonflow', listener_queue_group=False)
    return _jsonable({
        'event_fields': list(codec.EVENT_FIELDS),
        'wire_actions': codec.WIRE_ACTIONS,
        'max_batch_events': codec.MAX_BATCH_EVENTS,
        'body_event': body,
        'body_batch': codec.batch_body([body, body]),
        'header_seq': sequence.HEADER_SEQ,
        'header_mark': sequence.HEADER_MARK,
        # On a message sent again after a reconnect (its value is not
        # read: the name alone makes it a resend).
        'header_resent': sequence.HEADER_RESENT,
        'header_events': codec.HEADER_EVENTS,
        'seq_value': sequence.seq_header('inc1', 7, 'pub-1'),
        'mark_headers': stream.mark_headers(),
        'events_values': [codec.events_header(1, 'lport'),
                          codec.events_header(40, 'lport'),
                          codec.events_header(3, None)],
        # As a message carries it: with the send time (send_time).
        'events_value_sent': send_time.stamp(
            codec.events_header(40, 'lport'), 1733327749388783),
        'subjects': {repr(t): [shared.subject(t), apart.subject(t)]
                     for t in _SAMPLE_TOPICS},
        'listener_queue_group': shared.queue_group(
            shared.subject('listener_x')),
    })


def current_interface():
    """The interface of the code in this checkout."""
    from df_nats.conf import options
    return {'options': options_interface(options.list_opts()),
            'wire': wire_interface()}


def differences(recorded, current):
    """Lines naming what changed from ``recorded`` to ``current``."""
    lines = []
    for part in ('options', 'wire'):
        old, new = recorded.get(part, {}), current.get(part, {})
        for name in sorted(set(old) | set(new)):
            if name not in new:
                lines.append('%s %s removed' % (part, name))
            elif name not in old:
                lines.append('%s %s added' % (part, name))
            elif old[name] != new[name]:
                lines.append('%s %s changed: %s -> %s' % (
                    part, name, json.dumps(old[name], sort_keys=True),
                    json.dumps(new[name], sort_keys=True)))
    return lines


def read_record(root):
    path = pathlib.Path(root) / RECORD
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}


def check(root, current):
    """The differences between the record in ``root`` and ``current``."""
    return differences(read_record(root), current)


def _git(root, *args):
    out = subprocess.run(['git'] + list(args), cwd=root,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit('git %s: %s' % (' '.join(args), out.stderr.strip()))
    return out.stdout


def new_notes(root, base):
    """Release notes in ``root`` that the merge base with ``base`` lacks."""
    merge_base = _git(root, 'merge-base', 'HEAD', base).strip()
    listed = _git(root, 'ls-tree', '--name-only', merge_base,
                  NOTES.as_posix() + '/')
    before = {pathlib.PurePosixPath(p).name for p in listed.split()}
    now = {p.name for p in (pathlib.Path(root) / NOTES).glob('*.yaml')}
    return sorted(now - before)


def update(root, current, base):
    """Write the record of ``current``; refused without a new note.

    Returns the new notes that allowed it.
    """
    added = new_notes(root, base)
    if not added:
        raise SystemExit(
            'no release note added since %s: add one first (reno new'
            ' <slug>, or a releasenotes/notes/<slug>-<16 hex>.yaml by'
            ' hand) saying what changed for operators' % base)
    path = pathlib.Path(root) / RECORD
    path.write_text(json.dumps(current, indent=1, sort_keys=True,
                               ensure_ascii=False) + '\n')
    return added


def main(argv=None, root=ROOT):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--update', action='store_true',
                        help='record the current interface (needs a new'
                             ' release note)')
    parser.add_argument('--base', default='main',
                        help='branch the change is for (default main)')
    args = parser.parse_args(argv)
    current = current_interface()
    if args.update:
        added = update(root, current, args.base)
        print('%s updated; release notes added: %s'
              % (RECORD, ', '.join(added)))
        return 0
    changed = check(root, current)
    if not changed:
        print('options and wire format as recorded in %s (%d options)'
              % (RECORD, len(current['options'])))
        return 0
    for line in changed:
        print(line, file=sys.stderr)
    print('\nThe options or the wire format changed. Add a release note'
          ' (releasenotes/notes/<slug>-<16 hex>.yaml: what changed, and'
          ' under "upgrade:" what it means for mixed versions), then run'
          ' python tools/check_release_notes.py --update', file=sys.stderr)
    return 1


if __name__ == '__main__':
    sys.exit(main())
