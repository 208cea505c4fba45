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
"""

import asyncio
import time
from typing import Optional

from nats import errors as nats_errors
from nats.js import api as js_api
from nats.js import errors as js_errors

from df_nats.conf import timeouts
from df_nats import errors
from df_nats.loop import log
from df_nats.transport import client

LOG = log.get_logger(__name__)


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
    if status.marker_ttl is None:
        LOG.warning('df-nats: bucket %s has no limit markers (nats-server'
                    ' < 2.11 or created by hand): watchers notice expiries'
                    ' by their own clock', bucket)
    return kv


async def _create_bucket(js, conf):
    config = js_api.KeyValueConfig(
        bucket=conf.registry_bucket,
        description='df-nats publisher registry',
        history=1, ttl=conf.publisher_ttl, replicas=conf.kv_replicas,
        limit_marker_ttl=max(1.0, conf.heartbeat_interval))
    deadline = time.monotonic() + timeouts.BUCKET_PLACEMENT
    while True:
        try:
            return await js.create_key_value(config=config)
        except js_errors.KeyValueLimitMarkerTTLNotSupportedError:
            config.limit_marker_ttl = None
        except js_errors.APIError as exc:
            # "insufficient resources" / "no suitable peers" while a
            # fresh cluster still gathers its peers' statistics.
            if exc.code not in (500, 503) or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.25)


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
