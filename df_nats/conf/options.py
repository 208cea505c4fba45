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

"""The ``[df_nats]`` configuration options and their validation.

Options are registered on the global ``oslo_config.cfg.CONF`` when this
module is imported (the driver module imports it), so that a Dragonflow
service that loads ``pub_sub_driver = nats`` reads them from its usual
configuration files. ``validate()`` checks them once, at start, and raises
``ConfigError`` naming the option that is wrong.
"""

import re
from urllib import parse

from oslo_config import cfg

from df_nats.conf import credential_files
from df_nats import errors
from df_nats.loop import log

LOG = log.get_logger(__name__)

GROUP = 'df_nats'

_URL_SCHEMES = ('nats', 'tls')
# A subject token: anything NATS allows except wildcards and white space.
_PREFIX_TOKEN = re.compile(r'^[A-Za-z0-9_=-]+$')
_BUCKET = re.compile(r'^[A-Za-z0-9_-]+$')
# An inbox prefix token: printable, no wildcard, dot or white space.
_INBOX_TOKEN = re.compile(r'^[!-)+-=?-~]+$')
_ROLE = re.compile(r'^[!-~]{1,64}$')
_TLS_OPTIONS = ('tls_ca_file', 'tls_cert_file', 'tls_key_file',
                'tls_hostname', 'tls_handshake_first')

# Bounds of the subscriber's hostile-input options.
MAX_RESYNC_INTERVAL = 600
MIN_DELIVERY_QUEUE_SIZE = 1024 * 1024

# Bounds of the registry's limits.
MIN_REGISTRY_BYTES = 1024 * 1024
MAX_REGISTRY_BYTES = 1024 * 1024 * 1024
MIN_RECORD_SIZE = 1024
MAX_RECORD_SIZE = 1024 * 1024
MIN_RECORDS = 16
MAX_RECORDS = 1000000
# Records of one host a watcher holds at most: 4 services of the 256
# slots each a service may take on one host.
MAX_HOST_RECORDS = 1024

# Bounds of the capture stream and of one catch-up from it.
MIN_REPLAY_AGE = 10
MAX_REPLAY_AGE = 7 * 24 * 3600
MIN_REPLAY_BYTES = 1024 * 1024
MAX_REPLAY_BYTES = 1024 ** 4
MIN_REPLAY_LIMIT_EVENTS = 100
MAX_REPLAY_LIMIT_EVENTS = 10000000
MIN_REPLAY_LIMIT_BYTES = 1024 * 1024
MAX_REPLAY_LIMIT_BYTES = 1024 ** 3


def _text(paragraph: str, *values) -> str:
    """A help text written as an indented paragraph, on one line, with
    ``values`` in its %-fields.
    """
    text = ' '.join(paragraph.split())
    return text % values if values else text


connection_opts = [
    # Secret: oslo.config logs every other option's value at start
    # (log_opt_values), and a URL refused for holding a password would be
    # logged with it.
    cfg.ListOpt('servers', default=['nats://127.0.0.1:4222'], secret=True,
                help=_text('''
        NATS server URLs (nats://host:port or tls://host:port), comma
        separated. Give every node of the cluster: the client connects to one
        and fails over to the others and to the servers the cluster announces.
        Credentials do not go here (user, password and token do): a URL with
        user:password@ or token@ is refused.''')),
    cfg.StrOpt('subject_prefix', default='dragonflow', help=_text('''
        First tokens of every NATS subject df-nats uses. Topics become
        <subject_prefix>.topic.<topic> (neutron listener topics
        <subject_prefix>.listeners, see listener_queue_group). Use a different
        prefix for each Dragonflow deployment sharing one NATS cluster.''')),
    cfg.BoolOpt('listener_queue_group', default=True, help=_text('''
        Send events addressed to any neutron listener topic (listener_<host>:
        port status from the compute nodes, sent only with [df]
        enable_neutron_notifier = True, off by default) to the one subject
        <subject_prefix>.listeners, which every subscriber that registers a
        listener topic receives as a member of one NATS queue group. Each
        update is then handled by one live neutron-server, whichever listener
        the compute node picked, instead of being lost when the picked one is
        dead; at most once: updates in flight to a neutron-server that dies are
        lost, and sequence numbers are not checked on that subject. False sends
        each listener topic to its own subject, as other topics. Every process
        of a deployment must use the same value.''')),
    cfg.FloatOpt('connect_timeout', default=2.0, min=0.1,
                 help='Seconds to wait for a single connection attempt.'),
    cfg.FloatOpt('initial_connect_wait', default=30.0, min=0.0, help=_text('''
        Seconds a publisher or subscriber waits for the first connection to
        NATS when it starts, trying every server, before it gives up with an
        error.''')),
    cfg.FloatOpt('reconnect_time_wait', default=1.0, min=0.0, help=_text('''
        First step of the reconnect backoff. After a connection is lost, the
        servers that failed least are tried first, at once while one of them
        has not failed yet (the one just lost last); once every server has
        failed, each attempt waits this many seconds first, doubling each time
        every server has failed once more, up to reconnect_time_wait_max; every
        attempt also waits up to reconnect_jitter at random. During the first
        connection of a process (initial_connect_wait), a server that failed
        less than this long ago is tried again after this pause.''')),
    cfg.IntOpt('max_reconnect_attempts', default=-1, min=-1, help=_text('''
        Failed attempts in a row after which a server is no longer tried: it is
        tried this many times plus one. When no server is left, the connection
        is closed for good. -1 or 0 tries forever.''')),
    # Failover: reconnect pacing and loss detection (see "Failover and
    # what recovery costs" in doc/source/operations.rst).
    cfg.FloatOpt('reconnect_time_wait_max', default=10.0, min=0.0,
                 help=_text('''
        Upper bound of the reconnect backoff: after every server was tried and
        failed, the wait before the next attempt doubles from
        reconnect_time_wait up to this many seconds.''')),
    cfg.FloatOpt('reconnect_jitter', default=0.1, min=0.0, help=_text('''
        Up to this many seconds of random delay added to every reconnect
        attempt, so that thousands of clients of a failed server do not all
        reconnect at the same instant.''')),
    cfg.IntOpt('sequence_streams', default=4096, min=1, help=_text('''
        Publisher streams (publisher, incarnation, topic) a subscriber tracks
        for gaps and duplicates; the least recently seen is forgotten beyond
        this. Streams of publishers known to be registered (with
        publisher_events) are counted apart, up to as many again, and never
        pushed out: not by others, nor by publishers registered after them;
        beyond, new ones are tracked with the others.''')),
    # Hostile input (see "Hostile input" in doc/source/design.rst).
    cfg.FloatOpt('resync_interval', default=5.0, help=_text('''
        Seconds between two resyncs a subscriber asks Dragonflow for (callback
        action "sync") for what it read on the wire: a sequence gap, a
        conflicting message, or a loss the capture stream cannot fill (a full
        delivery queue or a slow consumer past the catch-up rate); each one
        makes the controller reread its whole database. The first is delivered
        at once; those asked for within the interval are delivered as one at
        its end, never lost. A resync after a reconnect is never paced. 0
        delivers each at once. From 0 to %d.''', MAX_RESYNC_INTERVAL)),
    cfg.IntOpt('delivery_queue_size', default=64 * 1024 * 1024, help=_text('''
        Bytes of memory the received messages a subscriber holds for its
        callback may take: bodies, headers and the Python objects holding
        them (about 260 bytes a message besides its subject, 190 for its
        headers and 130 a header). A message arriving when it is full is
        dropped, counted (stats["overflow"]) and followed by a catch-up from
        the capture stream, or a resync without one. The live messages held
        during a catch-up are bounded by as much again. At least
        %d.''', MIN_DELIVERY_QUEUE_SIZE)),
    cfg.IntOpt('ping_interval', default=20, min=1, help=_text('''
        Seconds between client PINGs that detect a dead server.''')),
    cfg.IntOpt('max_outstanding_pings', default=3, min=1, help=_text('''
        Unanswered PINGs after which the connection is considered lost.''')),
    cfg.IntOpt('reconnect_buffer_size', default=8 * 1024 * 1024, min=0,
               help=_text('''
        Bytes of published events kept while disconnected and sent on
        reconnect. Publishing fails with an error when it is full.''')),
    cfg.FloatOpt('publish_linger', default=0.0, min=0.0, max=1.0,
                 help=_text('''
        Seconds a published event waits before it is sent, so that the
        events published meanwhile go out with it as one message. Each
        subscriber pays for every message it receives, however many
        events it holds: with hundreds of subscribers and a few hundred
        events a second, 0.01 to 0.02 cuts their CPU several times, for
        as much latency. 0 sends each event at once.''')),
    cfg.StrOpt('client_name', help=_text('''
        Connection name shown by "nats server report connections". Defaults to
        "df-nats:<process name>".''')),
    cfg.FloatOpt('close_timeout', default=5.0, min=0.0, help=_text('''
        Seconds close() waits for pending events to be flushed to the
        server.''')),
    cfg.BoolOpt('service_endpoint', default=True, help=_text('''
        Register this process as an instance of the NATS service "df-nats" (the
        NATS micro protocol), so that "nats micro ls", "nats micro stats
        df-nats" and "df-nats stats" list it with its role, host, pid,
        publisher id, version and counters. Its user needs permission to
        subscribe to $SRV.> and to publish to <service_inbox_prefix>.> (the
        replies). Without the subscription df-nats logs one warning and runs
        on without the service; a refused reply is counted
        (connection.service_replies_denied) and logged at most every 10
        s.''')),
    cfg.StrOpt('service_inbox_prefix', default='_INBOX', help=_text('''
        The service "df-nats" answers only requests whose reply subject is
        under <service_inbox_prefix>., the requesters' inboxes; others are
        counted (connection.service_replies_refused) and not answered, so
        that nobody can make it publish on a topic, registry or JetStream
        subject. Set it to the inbox prefix of the NATS clients that run
        "nats micro" or "df-nats stats" when they use a custom one.
        Dot-separated tokens without wildcards, not starting with $ and apart
        from subject_prefix.''')),
]

auth_opts = [
    cfg.StrOpt('user', help='User name for user/password authentication.'),
    cfg.StrOpt('password', secret=True,
               help='Password for user/password authentication.'),
    cfg.StrOpt('token', secret=True, help='Authentication token.'),
    cfg.StrOpt('nkey_seed_file', help=_text('''
        File holding an NKey seed (SU...) for NKey authentication.''')),
    cfg.StrOpt('creds_file', help=_text('''
        NATS credentials file (user JWT and NKey seed) for decentralized JWT
        authentication.''')),
]

tls_opts = [
    cfg.StrOpt('tls_ca_file', help=_text('''
        CA bundle that verifies the servers. Setting this or another TLS option
        (tls_cert_file, tls_key_file, tls_hostname, tls_handshake_first), or a
        tls:// URL, turns TLS on, and then TLS is required: a server that does
        not offer it is refused before any credential is sent, on every connect
        and reconnect.''')),
    cfg.StrOpt('tls_cert_file',
               help='Client certificate for mutual TLS.'),
    cfg.StrOpt('tls_key_file', help='Private key of tls_cert_file.'),
    cfg.StrOpt('tls_hostname', help=_text('''
        Host name expected in the server certificate, when it differs from the
        host in the server URL.''')),
    cfg.BoolOpt('tls_handshake_first', default=False, help=_text('''
        Start TLS before the NATS INFO exchange (servers configured with
        handshake_first).''')),
]

registry_opts = [
    cfg.BoolOpt('publisher_registry', default=True, help=_text('''
        Register every publisher in a JetStream key-value bucket, with a
        heartbeat, so that live publishers can be listed and watched and a dead
        one disappears after publisher_ttl. Needs JetStream; without it pub/sub
        works and an error is logged once.''')),
    cfg.StrOpt('registry_bucket', default='df_publishers', help=_text('''
        Name of the JetStream key-value bucket holding the publisher registry.
        Created when missing.''')),
    cfg.StrOpt('role', help=_text('''
        Role this process registers its publisher with, for listing and
        watching by role. Defaults to neutron-server or df-local-controller
        when the process is one of those, else to the process name.''')),
    cfg.FloatOpt('heartbeat_interval', default=3.0, min=0.5, help=_text('''
        Seconds between refreshes of a publisher's registry record. At most
        publisher_ttl / 2.''')),
    cfg.FloatOpt('publisher_ttl', default=10.0, min=2.0, help=_text('''
        Seconds after its last refresh that a publisher's record expires: the
        time in which a killed publisher is noticed. It is the max age of the
        registry bucket, so every process must use the same value.''')),
    cfg.IntOpt('kv_replicas', default=1, min=1, max=5, help=_text('''
        Replicas of the registry bucket when df-nats creates it: 1 on a single
        server, 3 in a cluster.''')),
    # Bounds of the registry (see the registry page of the docs): 5,000
    # hosts x 4 processes = 20,000 records of about 340 bytes, 450 with
    # the key and the store's overhead: 9 MiB. The limits leave 7x room
    # for that, and hold 15,000 records even at the largest size.
    cfg.IntOpt('registry_max_bytes', default=64 * 1024 * 1024, help=_text('''
        Bytes the registry bucket may hold (its max_bytes, set when df-nats
        creates it): a full bucket refuses new records, never a refresh. A
        record takes about 450 bytes with its key, so the default 64 MiB holds
        100,000 publishers, and 15,000 even of the largest records. A bucket
        found without this limit, or with a larger one, is used with a
        warning. From %d to %d.''', MIN_REGISTRY_BYTES, MAX_REGISTRY_BYTES)),
    cfg.IntOpt('registry_max_record_size', default=4096, help=_text('''
        Bytes of one registry record at most (the bucket's max_value_size, set
        when df-nats creates it). A record df-nats writes takes about 340
        bytes, 1,000 with the longest host names; a watcher drops (and counts)
        a larger one even from a bucket without this limit. From %d to
        %d.''', MIN_RECORD_SIZE, MAX_RECORD_SIZE)),
    cfg.IntOpt('registry_max_records', default=32768, help=_text('''
        Registry records a watcher (publisher_events, "df-nats publishers")
        holds at most, and at most %d of one host: records beyond are dropped
        and counted, never held. Sized for 20,000 publishers (5,000 hosts with
        4 processes each) and room to spare; a record held takes about 1 KiB
        of memory.
        From %d to %d.''', MAX_HOST_RECORDS, MIN_RECORDS, MAX_RECORDS)),
    cfg.BoolOpt('publisher_events', default=False, help=_text('''
        Also deliver publishers joining, changing and leaving the registry to
        the subscriber callback, as "publisher" table events shaped like
        Dragonflow's Publisher model.''')),
]

replay_opts = [
    cfg.StrOpt('replay_stream', default='DF_NATS_EVENTS', help=_text('''
        Name of the JetStream stream that captures every topic subject
        (<subject_prefix>.topic.>) for catch-up: a subscriber that lost
        messages (a reconnect; a slow consumer or a full delivery queue, at a
        bounded rate) fetches them from it instead of asking Dragonflow for a
        full resync. A gap in a publisher's numbers, which anyone allowed to
        publish can forge, is still answered by a resync paced by
        resync_interval. Publishers create or update the stream, and never
        delete it. Empty: no capture stream, every loss is a full resync.
        Needs JetStream; without it publishers warn at every connection,
        subscribers once, and losses are resynced as before.''')),
    cfg.BoolOpt('replay_stream_create', default=True, help=_text('''
        Whether this process's publishers create the capture stream and keep
        its replay_* settings (they never lower its replicas). False where the
        process's NATS user may only read the stream: compute nodes, whose
        publishers send port status only.''')),
    cfg.IntOpt('replay_replicas', default=0, min=0, max=5, help=_text('''
        Replicas of the capture stream; 0 takes kv_replicas.''')),
    cfg.IntOpt('replay_max_age', default=600, help=_text('''
        Seconds the capture stream keeps a message: the longest outage a
        subscriber catches up from without a full resync. From %d to
        %d.''', MIN_REPLAY_AGE, MAX_REPLAY_AGE)),
    cfg.IntOpt('replay_max_bytes', default=1024 * 1024 * 1024, help=_text('''
        Bytes the capture stream holds at most (each replica on its server);
        the oldest messages go first. From %d to
        %d.''', MIN_REPLAY_BYTES, MAX_REPLAY_BYTES)),
    cfg.IntOpt('replay_limit_events', default=50000, help=_text('''
        Events one catch-up fetches at most: past this a full resync is
        cheaper, and is asked for instead. From %d to
        %d.''', MIN_REPLAY_LIMIT_EVENTS, MAX_REPLAY_LIMIT_EVENTS)),
    cfg.IntOpt('replay_limit_bytes', default=32 * 1024 * 1024, help=_text('''
        Bytes one catch-up fetches at most (headers included), beyond which a
        full resync is asked for instead. The live messages held meanwhile
        are bounded by delivery_queue_size. From %d to
        %d.''', MIN_REPLAY_LIMIT_BYTES, MAX_REPLAY_LIMIT_BYTES)),
]

ALL_OPTS = (connection_opts + auth_opts + tls_opts + registry_opts
            + replay_opts)

cfg.CONF.register_opts(ALL_OPTS, group=GROUP)


def list_opts():
    """Options for oslo-config-generator (entry point oslo.config.opts)."""
    return [(GROUP, ALL_OPTS)]


def redact_url(url: str) -> str:
    """The URL with any user name and password replaced, for logs."""
    parts = parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ''
    if parts.port:
        host = '%s:%s' % (host, parts.port)
    return parse.urlunsplit(parts._replace(netloc='***@' + host))


def _check_servers(servers):
    if not servers:
        raise errors.ConfigError('servers', 'at least one NATS URL is needed')
    for url in servers:
        shown = redact_url(url)
        try:
            parts = parse.urlsplit(url)
            port = parts.port
        except ValueError:
            raise errors.ConfigError(
                'servers', '%r is not a valid URL' % shown) from None
        if parts.scheme not in _URL_SCHEMES:
            raise errors.ConfigError(
                'servers', '%r: the scheme must be one of %s' % (
                    shown, ', '.join(s + '://' for s in _URL_SCHEMES)))
        if not parts.hostname:
            raise errors.ConfigError('servers', '%r has no host' % shown)
        if port is None:
            raise errors.ConfigError('servers', '%r has no port' % shown)
        if parts.username is not None or parts.password is not None:
            # Shown by ps when given on a command line, and kept out of
            # sight only as the secret options they have of their own.
            raise errors.ConfigError(
                'servers', '%r holds credentials: set them with [%s] user'
                ' and password, or token, not in the URL' % (shown, GROUP))


def tls_wanted(conf) -> bool:
    """True when TLS is configured, and so required of every server."""
    return (any(url.startswith('tls://') for url in conf.servers)
            or any(conf[name] for name in _TLS_OPTIONS))


def _check_prefix(prefix):
    tokens = (prefix or '').split('.')
    if not all(_PREFIX_TOKEN.match(t) for t in tokens):
        raise errors.ConfigError(
            'subject_prefix',
            '%r must be dot-separated tokens of letters, digits, "_", "-"'
            ' or "="' % prefix)


def _check_inbox_prefix(conf):
    try:
        prefix = conf.service_inbox_prefix or ''
    except (cfg.Error, ValueError) as exc:
        # "$name" is oslo.config's interpolation ("$$" a dollar sign).
        raise errors.ConfigError(
            'service_inbox_prefix',
            'cannot be parsed (%s)' % type(exc).__name__) from None
    tokens = prefix.split('.')
    if not all(_INBOX_TOKEN.match(t) for t in tokens):
        raise errors.ConfigError(
            'service_inbox_prefix',
            '%r must be dot-separated tokens without wildcards or white'
            ' space' % prefix)
    if prefix.startswith('$'):
        raise errors.ConfigError(
            'service_inbox_prefix', '%r is a system subject space ($JS,'
            ' $KV, $SRV...), not inboxes' % prefix)
    data = conf.subject_prefix.split('.')
    shorter = min(len(tokens), len(data))
    if tokens[:shorter] == data[:shorter]:
        raise errors.ConfigError(
            'service_inbox_prefix', '%r overlaps subject_prefix %r: the'
            ' service would answer on Dragonflow\'s own subjects'
            % (prefix, conf.subject_prefix))


def _check_registry(conf):
    if not _BUCKET.match(conf.registry_bucket or ''):
        raise errors.ConfigError(
            'registry_bucket', '%r must be letters, digits, "_" or "-"'
            % conf.registry_bucket)
    if conf.role is not None and not _ROLE.match(conf.role):
        raise errors.ConfigError(
            'role', '%r must be 1 to 64 printable characters without'
            ' spaces' % conf.role)
    for name, low, high in (
            ('registry_max_bytes', MIN_REGISTRY_BYTES, MAX_REGISTRY_BYTES),
            ('registry_max_record_size', MIN_RECORD_SIZE, MAX_RECORD_SIZE),
            ('registry_max_records', MIN_RECORDS, MAX_RECORDS)):
        if not low <= conf[name] <= high:
            raise errors.ConfigError(name, '%d: must be from %d to %d'
                                     % (conf[name], low, high))
    if conf.registry_max_record_size > conf.registry_max_bytes:
        raise errors.ConfigError(
            'registry_max_record_size', '%d bytes is more than'
            ' registry_max_bytes (%d)' % (conf.registry_max_record_size,
                                          conf.registry_max_bytes))
    if conf.heartbeat_interval > conf.publisher_ttl / 2:
        raise errors.ConfigError(
            'heartbeat_interval',
            '%s s is more than half of publisher_ttl (%s s): one late'
            ' refresh would make a live publisher expire'
            % (conf.heartbeat_interval, conf.publisher_ttl))


def _check_reconnect(conf):
    if conf.reconnect_time_wait_max < conf.reconnect_time_wait:
        raise errors.ConfigError(
            'reconnect_time_wait_max',
            '%s is less than reconnect_time_wait (%s)' % (
                conf.reconnect_time_wait_max, conf.reconnect_time_wait))


def _check_subscriber(conf):
    interval = conf.resync_interval
    if not 0 <= interval <= MAX_RESYNC_INTERVAL:
        raise errors.ConfigError(
            'resync_interval', '%s s: must be from 0 to %d s (0: no limit)'
            % (interval, MAX_RESYNC_INTERVAL))
    if conf.delivery_queue_size < MIN_DELIVERY_QUEUE_SIZE:
        raise errors.ConfigError(
            'delivery_queue_size', '%d bytes: must be at least %d'
            % (conf.delivery_queue_size, MIN_DELIVERY_QUEUE_SIZE))


def _check_replay(conf):
    if conf.replay_stream and not _BUCKET.match(conf.replay_stream):
        raise errors.ConfigError(
            'replay_stream', '%r must be letters, digits, "_" or "-"'
            % conf.replay_stream)
    for name, low, high in (
            ('replay_max_age', MIN_REPLAY_AGE, MAX_REPLAY_AGE),
            ('replay_max_bytes', MIN_REPLAY_BYTES, MAX_REPLAY_BYTES),
            ('replay_limit_events', MIN_REPLAY_LIMIT_EVENTS,
             MAX_REPLAY_LIMIT_EVENTS),
            ('replay_limit_bytes', MIN_REPLAY_LIMIT_BYTES,
             MAX_REPLAY_LIMIT_BYTES)):
        if not low <= conf[name] <= high:
            raise errors.ConfigError(name, '%d: must be from %d to %d'
                                     % (conf[name], low, high))


def replay_replicas(conf) -> int:
    """Replicas of the capture stream: its own option, or kv_replicas."""
    return conf.replay_replicas or conf.kv_replicas


def validate(conf=None):
    """Check the ``[df_nats]`` options; raise ``ConfigError`` if unusable."""
    conf = (conf or cfg.CONF)[GROUP]
    try:
        servers = conf.servers
        prefix = conf.subject_prefix
    except (cfg.ConfigFileValueError, ValueError) as exc:
        # oslo.config's own message may quote the value; keep it out.
        raise errors.ConfigError(
            'servers/subject_prefix',
            'cannot be parsed (%s)' % type(exc).__name__) from None
    _check_servers(servers)
    _check_prefix(prefix)
    _check_inbox_prefix(conf)
    credential_files.check(conf, GROUP)
    _check_registry(conf)
    _check_reconnect(conf)
    _check_subscriber(conf)
    _check_replay(conf)
    return conf
