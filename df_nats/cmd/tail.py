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

"""``df-nats tail``: print the events flowing on topics, one per line.

It subscribes as a controller does (every topic through the wildcard
subject, or the topics named) and decodes single events and batches, so
that a batch of 40 events is 40 lines. Marks are shown as such; malformed
messages are reported on stderr and skipped.

Events come from anyone allowed to publish on the topics: in the text
output every field is escaped (``text``), so that no escape sequence
from the wire reaches the terminal; ``--json`` is escaped by
``json.dumps``.
"""

import json
import sys
import threading
import time

from df_nats.cmd import common
from df_nats.cmd import text
from df_nats.wire import codec
from df_nats.wire import sequence
from df_nats.wire import subjects

_COLUMNS = ('TIME', 'PUBLISHER', 'SEQ', 'TABLE', 'ACTION', 'KEY', 'TOPIC')
# Characters of a value shown with --values.
_MAX_VALUE = 64 * 1024


class _Printer:
    """Turns messages into lines; runs in the dispatcher thread."""

    def __init__(self, args, prefix, out, err, done, shared=None):
        self._args = args
        self._prefix = prefix
        # The listeners' shared subject carries every listener topic: when
        # topics are named, only theirs are printed.
        self._shared = shared
        self._listeners = {subjects.topic_bytes(t) for t in args.topics
                           if subjects.is_listener_topic(t)}
        self._out = out
        self._err = err
        self._done = done
        self.events = 0

    def message(self, subject, headers, data):
        now = time.time()
        seq = sequence.parse(headers)
        publisher, incarnation, n = seq or (None, None, None)
        if sequence.SequenceTracker.is_mark(headers):
            self._line(now, subject, publisher, incarnation, n, 0, 0,
                       {'action': 'mark'})
            return
        events, dropped, problem = codec.unpack_events(data)
        if dropped:
            self._err.write('df-nats tail: %s: %d malformed event(s) of a'
                            ' message of %d bytes skipped (%s)\n'
                            % (text.cell(subject), dropped, len(data),
                               text.cell(problem)))
            self._err.flush()
        if subject == self._shared and self._args.topics:
            events = [e for e in events if isinstance(e.get('topic'),
                                                      (str, bytes))
                      and subjects.topic_bytes(e['topic']) in self._listeners]
        for index, event in enumerate(events, 1):
            self._line(now, subject, publisher, incarnation, n, index,
                       len(events), event)
            self.events += 1
            if self._args.count and self.events >= self._args.count:
                self._done.set()
                break
        self._out.flush()

    def _line(self, now, subject, publisher, incarnation, n, index, count,
              event):
        try:
            topic = subjects.subject_topic(self._prefix, subject)
        except ValueError:
            topic = event.get('topic')  # the listeners' shared subject
        if self._args.json:
            record = {'time': round(now, 6), 'subject': subject,
                      'topic': topic, 'publisher': publisher,
                      'incarnation': incarnation, 'seq': n,
                      'index': index, 'count': count,
                      'table': event.get('table'), 'key': event.get('key'),
                      'action': event.get('action'),
                      'event_topic': event.get('topic')}
            if self._args.values:
                record['value'] = event.get('value')
            self._out.write(json.dumps(record, sort_keys=True,
                                       default=repr) + '\n')
            return
        seq = '-' if n is None else '%s.%d' % (incarnation, n)
        if count > 1:
            seq += '[%d/%d]' % (index, count)
        stamp = time.strftime('%H:%M:%S', time.localtime(now))
        cells = [stamp + '.%03d' % (now % 1 * 1000), publisher, seq,
                 event.get('table'), event.get('action'), event.get('key'),
                 topic]
        line = '  '.join(text.cell(c) for c in cells)
        if self._args.values:
            line += '  ' + text.cell(event.get('value'), _MAX_VALUE,
                                     empty='None')
        self._out.write(line + '\n')


def run(args, out=sys.stdout, err=sys.stderr) -> int:
    """Print events until interrupted (or ``--count`` events)."""
    conn = common.connect(args, 'tail', err, service_endpoint=False)
    if conn is None:
        return 1
    prefix = conn.conf.subject_prefix
    subject_map = subjects.SubjectMap(prefix, conn.conf.listener_queue_group)
    shared = (subjects.listeners_subject(prefix)
              if conn.conf.listener_queue_group else None)
    if args.topics:
        names = sorted({subject_map.subject(t) for t in args.topics})
    else:
        names = [subjects.all_topics_subject(prefix)]
        if shared:
            names.append(shared)
    done = threading.Event()
    printer = _Printer(args, prefix, out, err, done, shared)
    post = conn.bridge.world.post

    async def on_message(msg):
        # Loop thread: print in the caller's world.
        post(printer.message, msg.subject, msg.headers, msg.data)

    subs = []
    try:
        for name in names:
            subs.append(conn.subscribe(name, on_message))
        err.write('df-nats tail: listening on %s\n' % ', '.join(names))
        err.flush()
        if not args.json:
            out.write('  '.join(_COLUMNS) + ('  VALUE' if args.values
                                             else '') + '\n')
            out.flush()
        try:
            while not done.wait(3600):
                pass
        except KeyboardInterrupt:
            pass
        return 0
    finally:
        for sub in subs:
            try:
                conn.unsubscribe(sub)
            except Exception:
                pass
        conn.release()
