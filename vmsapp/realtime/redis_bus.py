"""The bus across workers and instances, on Redis pub/sub (as Flask-SocketIO's
message queue does it).

Everything is delivered to this process's own registry first, then published
for the others; each process skips what it published itself, so every
dashboard gets every message exactly once. Redis is never waited on by a
socket thread: publishing goes through a queue and one publisher thread, so
NVRs keep connecting and heartbeating while Redis is away. The publisher sends
whatever has queued up as one Redis message, a line per bus message, so a
reconnect storm's broadcasts and newest-wins closes cost every process one
PUBLISH and one read per batch instead of two per agent. Pub/sub replays
nothing, so when the listener gets its subscription back after a gap, every
dashboard of this process is sent a fresh snapshot."""

import json
import logging
import os
import queue
import threading
import uuid

import redis

from ..batching import take_batch
from ..clock import isoformat, now
from . import protocol

log = logging.getLogger(__name__)

BROADCAST = "b"
COMMAND = "c"
# A Redis message is the sender's origin, then one "<kind> <payload>" line per
# bus message. Payloads are json.dumps output, which escapes every control
# character, so never holds a raw newline.
LINE = "\n"
# Each process writes its connection counts to a key of its own every
# STATS_PERIOD; a key not refreshed expires, so a dead worker drops out of
# /api/stats within STATS_TTL seconds (and no clocks are compared).
STATS_PERIOD = 1.0
STATS_TTL = 4
OUTBOX_LIMIT = 10_000
# Bus messages sent as one Redis message at most.
PUBLISH_BATCH = 500
RETRY_FIRST, RETRY_CAP = 0.2, 5.0
# What a worker of an earlier release, still running during a rolling deploy,
# needs of a command: it closes every connection of the NVR but "keep"'s.
EARLIER_RELEASES = {"keep": None}


class RedisBus:
    """Same interface as ``LocalBus``, shared through Redis."""

    def __init__(self, registry, url, prefix="vmsapp"):
        self.registry = registry
        self.redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2,
                                          health_check_interval=10)
        self.channel = f"{prefix}:bus"
        self.origin = uuid.uuid4().hex[:12]
        self.stats_pattern = f"{prefix}:worker:*"
        self.stats_key = f"{prefix}:worker:{self.origin}"
        self._outbox = queue.Queue(maxsize=OUTBOX_LIMIT)
        self._stopping = threading.Event()
        self._threads = []
        self._healthy = True  # logs one line per outage, not one per message

    # -- the bus interface ------------------------------------------------------
    def publish(self, message):
        """Send ``message`` to every dashboard of every process, encoded once."""
        text = protocol.encode(message)
        self.registry.deliver(text)
        self._send(BROADCAST, text)

    def close_nvr(self, nvr_id, code, reason):
        """Close every connection of ``nvr_id``, wherever it is."""
        self.registry.close_nvr(nvr_id, code, reason)
        self._send(COMMAND, json.dumps({"nvr_id": nvr_id, "code": code, "reason": reason,
                                        **EARLIER_RELEASES}))

    def close_older(self, nvr_id, claim, code, reason):
        """Close the connections of ``nvr_id`` whose claim number is lower than
        ``claim``, wherever they are (``Registry.close_older``)."""
        self.registry.close_older(nvr_id, claim, code, reason)
        self._send(COMMAND, json.dumps({"nvr_id": nvr_id, "code": code, "reason": reason,
                                        "claim": claim, **EARLIER_RELEASES}))

    def stats(self):
        """Connection counts summed over every live process, with one row per process."""
        try:
            keys = list(self.redis.scan_iter(match=self.stats_pattern, count=1000))
            rows = [json.loads(raw) for raw in self.redis.mget(keys) if raw] if keys else []
        except redis.RedisError as error:
            log.warning("Redis unavailable for stats (%s); counting this process only", error)
            return {**self.registry.stats(), "workers": [self._own_row()], "partial": True}
        return {
            "nvr_connections": sum(row["nvr_connections"] for row in rows),
            "dashboard_clients": sum(row["dashboard_clients"] for row in rows),
            "nvr_hostnames": sorted({h for row in rows for h in row["nvr_hostnames"]}),
            "workers": rows,
        }

    # -- threads, started by the web process only -------------------------------
    def start(self):
        for target in (self._publisher, self._listener, self._reporter):
            thread = threading.Thread(target=target, name=f"vmsapp-redis{target.__name__}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self):
        self._stopping.set()
        try:
            self.redis.delete(self.stats_key)
        except redis.RedisError:
            pass  # the entry expires by itself

    def _send(self, kind, payload):
        try:
            self._outbox.put_nowait(f"{kind} {payload}")
        except queue.Full:
            self._outage("outbox full, dropping messages for other workers")

    def _publisher(self):
        while not self._stopping.is_set():
            lines = take_batch(self._outbox, 0.5, PUBLISH_BATCH)
            if not lines:
                continue
            try:
                self.redis.publish(self.channel, LINE.join([self.origin, *lines]))
            except redis.RedisError as error:
                # Lost for the other processes: their listeners fail too and
                # resynchronise their dashboards when Redis is back.
                self._outage(f"cannot publish: {error}")

    def _listener(self):
        delay = RETRY_FIRST
        resync = False
        while not self._stopping.is_set():
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.channel)
                if resync:
                    self._resync_dashboards()
                delay = RETRY_FIRST
                while not self._stopping.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._receive(message["data"].decode())
            except redis.RedisError as error:
                if not resync:
                    log.error("Redis subscription lost (%s); retrying with backoff", error)
                resync = True
                self._stopping.wait(delay)
                delay = min(delay * 2, RETRY_CAP)
            finally:
                pubsub.close()

    def _receive(self, data):
        # A worker of an earlier release, still running during a deploy, sends
        # one "<origin> <kind> <payload>" per Redis message, with no newline.
        origin, _, lines = data.partition(LINE if LINE in data else " ")
        if origin == self.origin:
            return
        for line in lines.split(LINE):
            try:
                self._carry_out(line)
            except Exception:  # noqa: BLE001 — one bad line must not end the listener
                log.exception("Redis bus: cannot carry out %r", line[:200])

    def _carry_out(self, line):
        kind, _, payload = line.partition(" ")
        if kind == BROADCAST:
            self.registry.deliver(payload)
        elif kind == COMMAND:
            command = json.loads(payload)
            if command.get("claim") is None:
                # A command without a claim closes every connection: deletes,
                # token replacements, stale sweeps, and an earlier release's
                # replacements (their "keep" is a connection of the sender).
                self.registry.close_nvr(command["nvr_id"], command["code"], command["reason"])
            else:
                self.registry.close_older(command["nvr_id"], command["claim"],
                                          command["code"], command["reason"])
        else:
            raise ValueError(f"unknown kind {kind!r}")

    def _reporter(self):
        while not self._stopping.wait(STATS_PERIOD):
            try:
                self.redis.set(self.stats_key, json.dumps(self._own_row()), ex=STATS_TTL)
            except redis.RedisError as error:
                self._outage(f"cannot report stats: {error}")
            else:
                if not self._healthy:
                    self._healthy = True
                    log.warning("Redis is back")

    def _own_row(self):
        return {"worker": self.origin, "pid": os.getpid(), "reported_at": isoformat(now()),
                **self.registry.stats()}

    def _resync_dashboards(self):
        dashboards = self.registry.dashboards()
        log.warning("Redis subscription back: sending %d dashboard(s) a fresh snapshot",
                    len(dashboards))
        for session in dashboards:
            session.request_snapshot()

    def _outage(self, what):
        if self._healthy:
            self._healthy = False
            log.error("Redis: %s", what)
