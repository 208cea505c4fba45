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
- ``capture``: a stream capturing ``<subject_prefix>.topic.>``, if any
  (absent is fine: df-nats does not need one);
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

from oslo_config import cfg

from df_nats.cmd import common
from df_nats.cmd import role_needs
from df_nats.cmd import text
from df_nats.conf import options
from df_nats import errors
from df_nats.registry import bucket as registry_bucket
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
        subject = '%s.topic.>' % self.conf.subject_prefix
        js = self.jetstream_context()
        try:
            name = self.run_loop(registry_bucket.fail_on_permission_denied(
                self.conn, js.find_stream_name_by_subject(subject)))
            info = self.run_loop(js.stream_info(name))
        except Exception as exc:
            if type(exc).__name__ == 'NotFoundError':
                self.add('capture', INFO, 'no stream captures %s (absent:'
                         ' not needed)' % subject)
            elif isinstance(exc, errors.RegistryPermissionDenied):
                self.add('capture', INFO, 'not looked up: this user may'
                         ' not ask JetStream')
            else:
                self.add('capture', INFO, 'not looked up (%s)'
                         % type(exc).__name__)
            return
        self.add('capture', OK, 'stream %s captures %s: %d message(s),'
                 ' %d bytes' % (name, subject, info.state.messages,
                                info.state.bytes))

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
