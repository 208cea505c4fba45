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


"""``df-nats check``: is this node's df-nats set up to work?

For monitoring systems and for a person at 3 a.m.: one line per check,
or ``--json``, and the exit status of a monitoring plugin: 0 when all is
well, 1 on a warning, 2 on a failure. The whole run takes at most
``--timeout`` seconds from the start of the process, a dead server
included.

Checks, in order:

- ``config``: the configuration as the services read it (the same files,
  ``[df_nats]`` validated as at their start); a failure names the option;
- ``connect``: the first connection, within what is left of the timeout;
- ``jetstream``: the account's JetStream (the registry needs it);
- ``registry``: the publisher registry bucket, and whether its settings
  agree with ours;
- ``capture``: the capture stream (``[df_nats] replay_stream``) and
  whether its settings agree with the ``replay_*`` options; missing, or
  no JetStream, is a warning: catch-up then falls back to full resyncs;
- ``permissions``: what this role needs (``--role``, else ``[df_nats]
  role``). A probe must not disturb the deployment, so:

  * subscriptions are probed for real (a plain subscription to a subject
    nobody publishes on, under the pattern the role needs, ended at
    once): receiving takes nothing from anyone;
  * publishes and queue subscriptions are never probed: a probe publish
    on a topic reaches every subscriber and every capture stream, and
    joining the listeners' queue group, even for a round trip, takes
    port-status updates from the neutron-servers. They are judged from
    the permissions the server itself states for this user
    (``$SYS.REQ.USER.INFO``, NATS 2.10 or later); when the server does
    not tell (this user may not ask), the line says so and nothing is
    assumed.

A missing permission is a warning (1): the services start and log what
the server refused. An unreadable configuration or no connection is a
failure (2).
"""

import asyncio
import json
import os
import sys
import time

from nats import errors as nats_errors
from oslo_config import cfg

from df_nats.cmd import common
from df_nats.cmd import role_needs
from df_nats.cmd import text
from df_nats.conf import options
from df_nats import errors
from df_nats.registry import bucket as registry_bucket
from df_nats.transport import capture_stream
from df_nats.transport import client
from df_nats.wire import untrusted_json

OK = 'OK'
INFO = 'INFO'
WARN = 'WARN'
FAIL = 'FAIL'
_EXIT = {OK: 0, INFO: 0, WARN: 1, FAIL: 2}
_LABELS = {0: 'OK', 1: 'WARNING', 2: 'CRITICAL'}

USER_INFO = '$SYS.REQ.USER.INFO'
# Kept for the exit, the release of the connection included.
_RESERVE = 0.7


class Check:
    """One line of the report."""

    def __init__(self, name, status, message):
        self.name, self.status, self.message = name, status, message

    def as_dict(self):
        return {'check': self.name, 'status': self.status,
                'message': self.message}


def process_age() -> float:
    """Seconds since this process started (0 if unknown).

    The timeout counts from the start of the command, the interpreter's
    start-up included, as the monitoring system that runs it sees it.
    """
    try:
        with open('/proc/self/stat') as stat:
            started = int(stat.read().rsplit(')', 1)[1].split()[19])
        with open('/proc/uptime') as uptime:
            now = float(uptime.read().split()[0])
        return max(now - started / os.sysconf('SC_CLK_TCK'), 0.0)
    except (OSError, ValueError, IndexError):
        return 0.0


# -- the run ----------------------------------------------------------------

class _Run:
    def __init__(self, args, deadline):
        self.args = args
        self.deadline = deadline
        self.checks = []
        self.conn = None
        self.conf = None
        # The permissions the server stated for this user, if it did.
        self.stated = None

    def left(self, most=2.0) -> float:
        return max(min(self.deadline - time.monotonic(), most), 0.0)

    def add(self, name, status, message):
        self.checks.append(Check(name, status, message))

    def config(self, err):
        try:
            files = common.setup_command(
                self.args, err, log_level='WARNING' if self.args.verbose
                else 'CRITICAL')
            cfg.CONF.set_override('service_endpoint', False,
                                  group=options.GROUP)
            self.conf = options.validate()
        except errors.ConfigError as exc:
            self.add('config', FAIL, str(exc))
            return False
        except (cfg.Error, OSError) as exc:
            self.add('config', FAIL, 'cannot read the configuration: %s'
                     % type(exc).__name__)
            return False
        read = ', '.join(files) or 'no file (defaults)'
        self.add('config', OK, '%s read; [df_nats] valid' % read)
        return True

    def connect(self):
        from df_nats.pubsub import process_context
        wait = self.deadline - time.monotonic()
        if wait <= 0.1:
            self.add('connect', FAIL, 'no time left to connect (--timeout)')
            return False
        wait = round(wait, 1)
        cfg.CONF.set_override('initial_connect_wait', wait,
                              group=options.GROUP)
        cfg.CONF.set_override('connect_timeout',
                              min(self.conf.connect_timeout, wait),
                              group=options.GROUP)
        conn = process_context.current().connection
        started = time.monotonic()
        try:
            conn.acquire()
        except errors.ConnectError as exc:
            self.add('connect', FAIL, str(exc))
            return False
        self.conn = conn
        version = conn.nc.connected_server_version
        self.add('connect', OK, '%s (nats-server %d.%d.%d) in %d ms' % (
            conn.connected_url, version.major, version.minor, version.patch,
            (time.monotonic() - started) * 1000))
        return True

    def run_loop(self, coro, most=2.0):
        timeout = self.left(most)
        if timeout <= 0:
            raise TimeoutError('--timeout reached')

        async def bounded():
            return await asyncio.wait_for(coro, timeout)
        return self.conn.bridge.run(bounded(), timeout=timeout + 1)

    def jetstream_context(self):
        """A JetStream context of the connection, made on its loop."""
        async def make():
            return self.conn.jetstream_on_loop(timeout=self.left())
        return self.run_loop(make())

    def registry_needed(self) -> bool:
        """Whether this role needs JetStream (the registry)."""
        role = self.role()
        if role == role_needs.CONTROLLER:
            return bool(self.conf.publisher_events)
        if role == role_needs.TOOLS:
            return True   # df-nats publishers
        return bool(self.conf.publisher_registry)

    def role(self):
        return self.args.role or self.conf.role

    def jetstream(self):
        needed = self.registry_needed()
        js = self.jetstream_context()
        try:
            info = self.run_loop(registry_bucket.fail_on_permission_denied(
                self.conn, js.account_info()))
        except errors.RegistryPermissionDenied as exc:
            self.add('jetstream', WARN if needed else INFO, str(exc)
                     if needed else 'not allowed to this user (not needed'
                     ' by this role and configuration)')
            return False
        except Exception as exc:
            status = WARN if needed else INFO
            self.add('jetstream', status, 'not available (%s): %s' % (
                type(exc).__name__, 'the publisher registry cannot work'
                if needed else 'not needed by this role and'
                ' configuration'))
            return False
        self.add('jetstream', OK, 'enabled: %d stream(s), %d consumer(s),'
                 ' %d bytes stored' % (info.streams, info.consumers,
                                       info.storage))
        return True

    def registry(self):
        conf = self.conf
        if not self.registry_needed():
            self.add('registry', INFO, 'not needed by this role and'
                     ' configuration')
            return
        js = self.jetstream_context()
        try:
            kv = self.run_loop(registry_bucket.fail_on_permission_denied(
                self.conn, registry_bucket.open_bucket(
                    js, conf, create=False, strict=True)))
            status = self.run_loop(kv.status())
        except errors.ConfigError as exc:
            self.add('registry', WARN, str(exc))
            return
        except errors.RegistryUnavailable as exc:
            absent = 'does not exist' in str(exc)
            self.add('registry', INFO if absent else WARN, str(exc)
                     + (' (created by the first publisher)' if absent
                        else ''))
            return
        except Exception as exc:
            self.add('registry', WARN, 'not readable: %s'
                     % type(exc).__name__)
            return
        replicas = status.stream_info.config.num_replicas or 1
        problems = registry_bucket.limit_problems(status.stream_info.config,
                                                  conf)
        level = OK if replicas >= conf.kv_replicas and not problems else WARN
        self.add('registry', level, 'bucket %s: %d record(s), max age %s s,'
                 ' %d replica(s) ([df_nats] kv_replicas = %d)%s' % (
                     conf.registry_bucket, status.values, status.ttl,
                     replicas, conf.kv_replicas,
                     ''.join('; ' + problem for problem in problems)))

    def capture(self):
        conf = self.conf
        name = conf.replay_stream
        if not name:
            self.add('capture', INFO, 'replay off ([df_nats] replay_stream'
                     ' is empty): every lost message costs a full resync')
            return
        fallback = 'catch-up falls back to full resyncs'
        try:
            info = self.run_loop(registry_bucket.fail_on_permission_denied(
                self.conn, capture_stream.api_request_on_loop(
                    self.conn.nc, 'INFO', name, None, self.left())))
        except errors.RegistryPermissionDenied as exc:
            self.add('capture', WARN, 'stream %s not looked up: the server'
                     ' refused to let this user %s to %s' % (
                         name, exc.kind, client.subject_as_sent(
                             exc.subject, name)))
            return
        except nats_errors.NoRespondersError:
            self.add('capture', WARN, 'no JetStream: no capture stream %s;'
                     ' %s' % (name, fallback))
            return
        except capture_stream.StreamError as exc:
            if exc.err_code == capture_stream.ERR_STREAM_NOT_FOUND:
                self.add('capture', WARN, 'stream %s does not exist (a'
                         ' publisher creates it at its start)%s; %s' % (
                             name, self.capturing_stream(), fallback))
            else:
                self.add('capture', WARN, 'stream %s not readable: %s'
                         % (name, text.cell(str(exc))))
            return
        except Exception as exc:
            self.add('capture', WARN, 'stream %s not looked up (%s)'
                     % (name, type(exc).__name__))
            return
        self.add(*capture_report(conf, info))

    def capturing_stream(self) -> str:
        """Another stream capturing the topics, which keeps publishers
        from creating ours; looked up only if this user may list streams.
        """
        names = '$JS.API.STREAM.NAMES'
        if self.stated is None:
            info = self.user_info()   # not asked yet: no --role
            self.stated = info.get('permissions', {}) if info else None
        if self.stated is None or not role_needs.allowed(
                self.stated, 'publish', names):
            return ''
        subject = capture_stream.subject_filter(self.conf.subject_prefix)
        js = self.jetstream_context()
        try:
            other = self.run_loop(registry_bucket.fail_on_permission_denied(
                self.conn, js.find_stream_name_by_subject(subject)))
        except Exception:
            return ''
        return ('; stream %s captures %s, so it cannot be created'
                % (text.cell(other), subject))

    def user_info(self):
        """The server's statement of this user's permissions, or None.

        A refused request ends at the server's refusal, not a timeout.
        """
        nc = self.conn.nc
        self.conn.refusals.optional_subjects.add(USER_INFO.lower())

        def refused(kind, subject):
            return subject.lower() == USER_INFO.lower()

        async def ask():
            denied = self.conn.refusals.permission_denied_on_loop(refused)
            request = asyncio.ensure_future(nc.request(
                USER_INFO, b'', timeout=max(self.left(1.0), 0.1)))
            try:
                await asyncio.wait({request, denied},
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                denied.cancel()
            if not request.done():
                request.cancel()
                return None
            return request.result().data
        try:
            body = self.run_loop(ask(), most=1.0)
        except Exception:
            return None
        reply, _ = untrusted_json.loads(body, 1 << 20, 16)
        data = reply.get('data') if isinstance(reply, dict) else None
        return data if isinstance(data, dict) else None

    def probe_subscribe(self, subject):
        async def noop(msg):
            pass
        sub = self.conn.subscribe(subject, noop)
        self.conn.unsubscribe(sub)

    def permissions(self):
        role = self.role()
        if role not in role_needs.ROLES:
            self.add('permissions', INFO, 'no role to check: give --role'
                     ' (%s)' % ', '.join(role_needs.ROLES))
            return
        info = self.user_info()
        stated = info.get('permissions', {}) if info else None
        self.stated = stated
        user = text.cell(info.get('user')) if info else '?'
        missing, unknown, probed = [], [], 0
        for verb, subject, queue, why in role_needs.needs(role, self.conf):
            what = '%s %s%s (%s)' % (verb, subject, ' queue ' + queue
                                     if queue else '', why)
            if verb == 'subscribe' and not queue and self.left() > 0:
                probed += 1
                try:
                    self.probe_subscribe(subject)
                except errors.SubscribePermissionDenied:
                    missing.append(what)
                    continue
                except Exception as exc:
                    unknown.append('%s: %s' % (what, type(exc).__name__))
                    continue
                if stated is None or role_needs.allowed(
                        stated, verb, subject, queue):
                    continue
            if stated is None:
                if verb == 'publish' or queue:
                    unknown.append(what)
                continue
            if not role_needs.allowed(stated, verb, subject, queue):
                missing.append(what)
        for what in missing:
            self.add('permission', WARN, 'missing: %s' % what)
        source = ('as the server states them for user %s' % user
                  if stated is not None else
                  'the server did not state them (%s not allowed to this'
                  ' user): subscriptions probed, publishes and queue'
                  ' groups not checked' % USER_INFO)
        if unknown:
            self.add('permissions', INFO, 'not checked: %s'
                     % '; '.join(unknown))
        if not missing:
            self.add('permissions', OK, 'everything %s needs is allowed'
                     ' (%d subscription probe(s); %s)'
                     % (role, probed, source))
        else:
            self.add('permissions', WARN, '%d missing for %s (%s)'
                     % (len(missing), role, source))

    def all(self, err):
        if not self.config(err) or not self.connect():
            return
        try:
            # Permissions first: the JetStream lookups may wait for
            # answers that a refusal never sends.
            for step in (self.permissions, self.jetstream, self.registry,
                         self.capture):
                if self.left() <= 0:
                    self.add(step.__name__, WARN, 'not checked: --timeout'
                             ' reached')
                    continue
                try:
                    step()
                except Exception as exc:
                    self.add(step.__name__, WARN, 'not checked: %s' % (
                        text.cell(type(exc).__name__)))
        finally:
            self.release()

    def release(self):
        conn, self.conn = self.conn, None
        if conn is not None:
            cfg.CONF.set_override('close_timeout', max(self.left(0.5), 0.1),
                                  group=options.GROUP)
            conn.release()


def capture_report(conf, info):
    """``(check, status, message)`` of the capture stream's ``info`` (the
    JetStream API's answer), against the settings [df_nats] wants.
    """
    found = info.get('config') if isinstance(info, dict) else None
    found = found if isinstance(found, dict) else {}
    state = info.get('state') if isinstance(info, dict) else None
    state = state if isinstance(state, dict) else {}
    replicas = options.replay_replicas(conf)
    wanted = capture_stream.stream_config(conf, replicas)
    have = found.get('subjects')
    have = have if isinstance(have, list) else []
    problems = []
    shown = ', '.join(text.cell(s, limit=100) for s in have[:5]
                      if isinstance(s, str)) or 'nothing'
    if have != wanted['subjects']:
        problems.append('captures %s, not %s'
                        % (shown, wanted['subjects'][0]))
    for key, option, unit, scale in (
            ('max_age', 'replay_max_age', ' s', 10 ** 9),
            ('max_bytes', 'replay_max_bytes', ' bytes', 1)):
        if found.get(key) != wanted[key]:
            problems.append('%s %s%s, [df_nats] %s = %d' % (
                key.replace('_', ' '), _number(found.get(key), scale), unit,
                option, getattr(conf, option)))
    have_replicas = found.get('num_replicas') or 1
    if not isinstance(have_replicas, int) or have_replicas < replicas:
        problems.append('%s replica(s), fewer than [df_nats] replay_replicas'
                        ' wants (%d)' % (_number(have_replicas, 1),
                                         replicas))
    if found.get('allow_direct') is not True:
        problems.append('direct get not allowed: every catch-up falls back'
                        ' to a full resync')
    if found.get('discard', 'old') != 'old':
        problems.append('discard %s: a full stream refuses new events'
                        % text.cell(found.get('discard'), limit=20))
    message = ('stream %s: %s message(s), %s bytes; captures %s, max age'
               ' %s s, max bytes %s, %s replica(s), direct get %s' % (
                   conf.replay_stream, _number(state.get('messages'), 1),
                   _number(state.get('bytes'), 1), shown,
                   _number(found.get('max_age'), 10 ** 9),
                   _number(found.get('max_bytes'), 1),
                   _number(have_replicas, 1),
                   'allowed' if found.get('allow_direct') is True
                   else 'not allowed'))
    if problems:
        return ('capture', WARN, message + '; differs from [df_nats]: '
                + '; '.join(problems) + ' (a publisher brings df-nats\''
                ' settings up to date at its start)')
    return ('capture', OK, message)


def _number(value, scale):
    """An integer of an answer, scaled down; anything else as ``?``."""
    if isinstance(value, bool) or not isinstance(value, int):
        return '?'
    return value // scale


def status(checks) -> int:
    """The exit status: the worst of the checks."""
    return max([_EXIT[c.status] for c in checks] or [2])


def format_text(checks, code) -> str:
    lines = ['%-4s  %-11s  %s' % (c.status, c.name, text.cell(
        c.message, limit=2000)) for c in checks]
    worst = sum(1 for c in checks if _EXIT[c.status] == code)
    lines.append('df-nats check: %s%s' % (_LABELS[code], (
        ' (%d)' % worst) if code else ''))
    return '\n'.join(lines) + '\n'


def run(args, out=sys.stdout, err=sys.stderr) -> int:
    """Run the checks; print them; the monitoring plugin's exit status."""
    deadline = time.monotonic() + args.timeout - process_age() - _RESERVE
    checks = _Run(args, deadline)
    checks.all(err)
    code = status(checks.checks)
    if args.json:
        out.write(json.dumps({'status': _LABELS[code], 'exit': code,
                              'checks': [c.as_dict()
                                         for c in checks.checks]},
                             indent=2) + '\n')
    else:
        out.write(format_text(checks.checks, code))
    out.flush()
    return code
