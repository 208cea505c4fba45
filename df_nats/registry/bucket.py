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

"""The registry's key-value bucket: opened, created, checked (loop thread).

The bucket's max age is ``publisher_ttl``; every process that registers
must agree on it, so a bucket made with another value is a configuration
error that names the option.

The bucket is bounded, since whoever may write one key may write many:
``registry_max_bytes`` in all, ``registry_max_record_size`` per record,
one record per key (history 1). A full bucket refuses new keys but never
the refresh of a key it holds (nats-server replaces a message at its
subject's limit even then), so live publishers stay listed.

It is created without the two features that would let one writer undo
everybody else's records: rollup headers (``Nats-Rollup: all`` on any
key purges the whole bucket) and per-message TTLs (``Nats-TTL: never``
keeps a record past the max age). nats-server turns both on for a bucket
with limit markers, so there are none: watchers notice an expiry by
their own clock (``watch``). A bucket found with other limits (one made
by an earlier df-nats, or by hand) is used, with one warning naming the
options and saying how to have it made again; it is never changed or
made again silently.
"""

import asyncio
import time
from typing import List, Optional

from nats import errors as nats_errors
from nats.js import api as js_api
from nats.js import errors as js_errors

from df_nats.conf import timeouts
from df_nats import errors
from df_nats.loop import log
from df_nats.transport import client

LOG = log.get_logger(__name__)

# JetStream's error code for a stream created with another configuration.
_STREAM_NAME_IN_USE = 10058


# Bucket settings already warned about, per bucket: once per process.
_warned = {}


def _bucket_problem(status, conf) -> Optional[errors.ConfigError]:
    config = status.stream_info.config
    bucket = conf.registry_bucket
    if config.subjects != ['$KV.%s.>' % bucket]:
        return errors.ConfigError(
            'registry_bucket', 'stream KV_%s exists but is not a key-value'
                               ' bucket (subjects %s)' % (bucket,
                                                          config.subjects))
    if not status.ttl or abs(status.ttl - conf.publisher_ttl) > 0.001:
        return errors.ConfigError(
            'publisher_ttl',
            '%s s, but bucket %r exists with max age %s: every process must'
            ' use the bucket\'s value, or delete the bucket ("nats kv del'
            ' %s") to have it created again'
            % (conf.publisher_ttl, bucket,
               '%s s' % status.ttl if status.ttl else 'unlimited', bucket))
    return None


async def open_bucket(js, conf, create: bool = True, strict: bool = True):
    """The registry bucket, created when missing and ``create`` is set.

    Raises ``RegistryUnavailable`` without JetStream (or without the bucket
    and ``create``), and, when ``strict`` (for a process that registers),
    ``ConfigError`` if the bucket's settings disagree with ours. Runs on
    the loop thread.
    """
    bucket = conf.registry_bucket
    try:
        try:
            kv = await js.key_value(bucket)
        except js_errors.BucketNotFoundError:
            if not create:
                raise errors.RegistryUnavailable(
                    'bucket %r does not exist ([df_nats] registry_bucket):'
                    ' no publisher has registered yet' % bucket) from None
            kv = await _create_bucket(js, conf)
        status = await kv.status()
    except js_errors.ServiceUnavailableError:
        raise errors.RegistryUnavailable(
            'JetStream is not enabled on the NATS server') from None
    except (nats_errors.NoRespondersError, nats_errors.TimeoutError,
            asyncio.TimeoutError) as exc:
        raise errors.RegistryUnavailable(
            'JetStream did not answer (%s)' % type(exc).__name__) from None
    problem = _bucket_problem(status, conf)
    if problem and strict:
        raise problem
    _warn_limits(status.stream_info.config, conf)
    return kv


def limit_problems(config, conf) -> List[str]:
    """What in the bucket's stream ``config`` is less safe than df-nats
    makes it, each naming the option or the feature; empty when nothing.
    """
    problems = []
    for name, have, want in (
            ('registry_max_bytes', config.max_bytes, conf.registry_max_bytes),
            ('registry_max_record_size', config.max_msg_size,
             conf.registry_max_record_size)):
        if not have or have < 0:
            problems.append('no size limit ([df_nats] %s = %d)'
                            % (name, want))
        elif have > want:
            problems.append('a limit of %d bytes, more than [df_nats] %s'
                            ' = %d' % (have, name, want))
    if (config.max_msgs_per_subject or 0) != 1:
        problems.append('a history of %s records per key, not 1'
                        % config.max_msgs_per_subject)
    if config.allow_rollup_hdrs:
        problems.append('rollup headers allowed (a writer of any key may'
                        ' purge every record)')
    if config.allow_msg_ttl:
        problems.append('per-message TTLs allowed (a writer may keep a'
                        ' record past publisher_ttl; watchers drop such'
                        ' records)')
    return problems


def _warn_limits(config, conf):
    problems = limit_problems(config, conf)
    bucket = conf.registry_bucket
    if not problems or _warned.get(bucket) == problems:
        return
    _warned[bucket] = problems
    LOG.warning('df-nats: registry bucket %s has %s. df-nats uses it, but'
                ' any process allowed to write one record can fill it or'
                ' undo the others\'. Once every process runs this'
                ' df-nats version, delete it ("nats kv del %s"): the'
                ' publishers create it again with the limits at their'
                ' next heartbeat', bucket, '; '.join(problems), bucket)


def stream_config(conf) -> js_api.StreamConfig:
    """The stream of the registry bucket, as df-nats creates it."""
    ttl = conf.publisher_ttl
    return js_api.StreamConfig(
        name='KV_%s' % conf.registry_bucket,
        description='df-nats publisher registry',
        subjects=['$KV.%s.>' % conf.registry_bucket],
        max_age=ttl, max_msgs_per_subject=1, max_msgs=-1,
        max_bytes=conf.registry_max_bytes,
        max_msg_size=conf.registry_max_record_size,
        max_consumers=-1, num_replicas=conf.kv_replicas,
        storage=js_api.StorageType.FILE,
        discard=js_api.DiscardPolicy.NEW,
        # As a KV bucket: duplicates detected for at most 2 minutes.
        duplicate_window=min(ttl, 120.0),
        deny_delete=True, allow_rollup_hdrs=False, allow_msg_ttl=False)


async def _create_bucket(js, conf):
    # Not create_key_value(): it turns rollups and message TTLs on.
    config = stream_config(conf)
    deadline = time.monotonic() + timeouts.BUCKET_PLACEMENT
    while True:
        try:
            await js.add_stream(config)
            break
        except js_errors.BadRequestError as exc:
            if exc.err_code == _STREAM_NAME_IN_USE:
                break  # created meanwhile by another process: check it
            raise
        except js_errors.APIError as exc:
            # "insufficient resources" / "no suitable peers" while a
            # fresh cluster still gathers its peers' statistics.
            if exc.code not in (500, 503) or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.25)
    return await js.key_value(conf.registry_bucket)


def _registry_subject(kind: str, subject: str) -> bool:
    # nats-py lower-cases the subjects of the server's errors.
    return subject.lower().startswith(('$js.', '$kv.', '_inbox.'))


async def fail_on_permission_denied(conn, coro):
    """Await ``coro``; a refusal of a JetStream, KV or inbox subject on
    ``conn`` meanwhile ends it at once with ``RegistryPermissionDenied``.

    Without this a refused JetStream request only times out
    (``timeouts.JETSTREAM_REQUEST``) and looks like JetStream being
    down.
    """
    denied = conn.refusals.permission_denied_on_loop(_registry_subject)
    task = asyncio.ensure_future(coro)
    try:
        await asyncio.wait({task, denied},
                           return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        if not denied.done():
            denied.cancel()
    if task.done():
        return task.result()
    task.cancel()
    kind, subject = denied.result()
    raise errors.RegistryPermissionDenied(kind, client.subject_as_sent(
        subject, conn.conf.registry_bucket))
