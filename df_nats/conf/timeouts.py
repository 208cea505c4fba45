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

"""Every internal time limit of df-nats, in seconds, in one place.

The limits an operator sets are options (``connect_timeout``,
``initial_connect_wait``, ``close_timeout``, ``heartbeat_interval``...);
these are the ones df-nats sets for itself.

How long ``initialize()`` may block a Dragonflow process, at worst:

* a publisher: ``initial_connect_wait`` (the first connection; 0 when the
  process is connected already) + ``REGISTER_WAIT`` + ``REGISTER_GRACE``
  (the registration; with ``[df_nats] publisher_registry = false``, none).
  With the defaults 30 + 8 + 5 = 43 s;
* a subscriber's ``daemonize()``: ``initial_connect_wait`` +
  ``CONTROL`` per registered topic + ``SNAPSHOT`` + ``GRACE`` for the
  registry snapshot with ``[df_nats] publisher_events`` (+ ``SNAPSHOT``
  to stop the watch when that failed).

doc/source/design.rst ("How long a call may block") states the same;
change both (tests/unit/conf/test_timeouts.py checks it).
"""

# A subscribe or unsubscribe, confirmed by a PING/PONG round trip.
CONTROL = 10.0
# That round trip alone.
CONFIRM = CONTROL / 2

# A JetStream API request (key-value reads and writes).
JETSTREAM_REQUEST = 5.0

# How long initialize() waits for the registration; after that the
# publisher starts anyway and registration goes on in the background.
REGISTER_WAIT = 8.0
# While a fresh cluster gathers its peers, the bucket's creation is retried
# this long.
BUCKET_PLACEMENT = 5.0

# A call into the loop thread that bounds its own work waits this much
# longer than the work's own deadline, so that the work's own error (which
# says what was not done) reaches the caller rather than a bare time-out.
GRACE = 1.0
# The same for the registration, whose start also sets up the heartbeat.
REGISTER_GRACE = 5.0

# The registry watch: its snapshot of the bucket, and its other calls.
SNAPSHOT = 10.0
# A record unrefreshed for its TTL + this is expired by the watchers'
# clocks (the bucket has no limit markers). The server removed it at the
# TTL after its last write, which a watcher sees no earlier than that.
CLOCK_GRACE = 1.0

# A subscriber's work on received messages that deliver nothing or hold
# malformed events (sequence check and decoding), in one slice of its
# delivery queue: beyond it, what is queued is dropped as an overflow and
# a resync follows, so a flood of messages expensive to decode delays
# real events by about this much at most. Work, not waiting: the
# thread's CPU time in the slice must pass it too.
DELIVERY_WORK_BUDGET = 1.0

# At interpreter exit, queued events get at most this long (or
# close_timeout, if shorter) to reach the server.
EXIT_FLUSH = 2.0

# Catch-up from the capture stream (``replay_stream``). A catch-up starts
# this long before the last message received: clocks of other hosts and
# messages in flight then are covered (what came twice is dropped).
REPLAY_MARGIN = 2.0
# A catch-up's fetch waits this long for a connection coming back.
REPLAY_REQUEST = 2.0
# A page of a fetch that got no reply for this long, and none with a
# round trip to the server after it (which reads what the server had
# sent, in a process that reads its socket late on a loaded machine):
# JetStream is taken as silent, the fetch is asked for again once, then
# a full resync is asked for instead.
REPLAY_SILENCE = 3.0
# A catch-up that found a hole in the stream (not stored while it had
# no leader, or not routed before a server died) asks again every
# REPLAY_RETRY, for at most REPLAY_HOLE_WAIT, before it gives up on a
# full resync: long enough for a publisher's resend after its own
# reconnect to be stored, short enough to resync within a second.
REPLAY_RETRY = 0.25
REPLAY_HOLE_WAIT = 1.0
# After a reconnect the catch-up waits this long first, so that the
# subscription's interest has reached the other servers and messages in
# flight have reached the stream.
REPLAY_SETTLE = 0.3
# Catch-ups triggered from the wire (a gap, which anyone who may publish
# can forge): at most one per this many seconds, a burst of REPLAY_BURST.
GAP_REPLAY_INTERVAL = 1.0
REPLAY_BURST = 3

# A publisher that could not make the capture stream (a cluster still
# starting: no JetStream peers yet) tries again after STREAM_RETRY, then
# twice as long each time, up to STREAM_RETRY_MAX, while connected.
STREAM_RETRY = 2.0
STREAM_RETRY_MAX = 60.0

# A publisher resends, after its connection comes back, what it sent in
# the last RESEND_WINDOW before the loss (what a dead server had not
# routed yet), under the original numbers.
RESEND_WINDOW = 2.0
