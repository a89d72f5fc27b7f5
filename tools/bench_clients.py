"""The benchmark's WebSocket clients (see ``tools.bench``).

NVR agents and dashboards run on asyncio in worker processes, a few hundred to
a thousand sockets each, never a thread per socket. The coordinator drives
each worker over a pipe (``tools.bench_pool``) with a handful of commands
(``ramp``, ``steady``, ``disconnect``, ``report``, ``stop``); workers send back
``ready``, a ``progress`` line every half second and, on ``report``, every raw
observation (the analysis happens in the coordinator).

All times are ``time.monotonic()``: CLOCK_MONOTONIC is one clock for every
process on the machine, so a send time taken in an agent process and a
receive time taken in a dashboard process can be subtracted."""

import asyncio
import gc
import json
import os
import random
import signal
import time
from array import array
from collections import Counter, deque

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

now = time.monotonic

OPEN_TIMEOUT = 30.0  # TCP connect + upgrade; handshakes queue when the server's threads are busy
AUTH_TIMEOUT = 30.0  # auth sent → auth_ok
CLOSE_TIMEOUT = 5.0
PROGRESS_EVERY = 0.5
LAG_PROBE_EVERY = 0.05
HEARTBEAT = json.dumps({"type": "heartbeat"})
NAN = float("nan")
CLOSE_STALE = 4001


def cpu_seconds():
    """CPU (user + system) this process has used so far."""
    times = os.times()
    return times.user + times.system


def describe(error):
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


async def sleep_until(moment):
    delay = moment - now()
    if delay > 0:
        await asyncio.sleep(delay)


# ---- NVR agents --------------------------------------------------------------

class HeartbeatLog:
    """Every heartbeat a worker sent: agent index, send time, ack time (NaN
    until acknowledged). Flat arrays: 100,000 heartbeats cost a few MB."""

    def __init__(self):
        self.agent = array("i")
        self.sent = array("d")
        self.acked = array("d")

    def add(self, index, moment):
        self.agent.append(index)
        self.sent.append(moment)
        self.acked.append(NAN)
        return len(self.sent) - 1

    def ack(self, position, moment):
        self.acked[position] = moment

    def as_dict(self):
        return {"agent": self.agent, "sent": self.sent, "acked": self.acked}


class Agent:
    """One simulated NVR: connect at its start time, authenticate, heartbeat
    on schedule, read everything the server sends. Its role decides the rest:
    ``normal`` runs to the end, ``silent`` stops heartbeating (socket open,
    still reading) when the steady state starts, ``disconnect`` closes
    cleanly when told to. It never reconnects: every close is recorded."""

    def __init__(self, spec, worker):
        self.worker = worker
        self.index = spec["index"]
        self.role = spec["role"]
        self.auth_message = json.dumps({"type": "auth", "hostname": spec["hostname"],
                                        "token": spec["token"]})
        self.ws = None
        self.pending = deque()  # positions in the heartbeat log awaiting their ack
        self.heartbeats = None
        self.errors = Counter()
        self.record = {
            "index": self.index, "nvr_id": spec["nvr_id"], "role": self.role,
            "connect_start": None, "upgraded": None, "auth_sent": None, "auth_ok": None,
            "failure": None, "close_code": None, "close_at": None, "closed_by_us": None,
            "close_sent": None, "last_heartbeat": None, "heartbeat_interval": None,
            "heartbeats_sent": 0, "heartbeats_acked": 0, "late_heartbeats": 0,
        }

    @property
    def authenticated(self):
        return self.record["auth_ok"] is not None

    @property
    def open(self):
        return self.ws is not None and self.record["close_at"] is None

    async def run(self, start_at):
        await sleep_until(start_at)
        record = self.record
        record["connect_start"] = now()
        try:
            self.ws = await connect(
                self.worker.ws_url, compression=self.worker.compression,
                open_timeout=OPEN_TIMEOUT, close_timeout=CLOSE_TIMEOUT,
                ping_interval=None, proxy=None, user_agent_header=None)
        except Exception as error:  # noqa: BLE001 — any failure to connect is a result
            self._fail(f"connect: {describe(error)}")
            return
        record["upgraded"] = now()
        if not await self._authenticate():
            return
        self.heartbeats = asyncio.create_task(self._heartbeat_loop(record["auth_ok"]))
        await self._read()

    async def _authenticate(self):
        record = self.record
        try:
            record["auth_sent"] = now()
            await self.ws.send(self.auth_message)
            raw = await asyncio.wait_for(self.ws.recv(), AUTH_TIMEOUT)
        except TimeoutError:
            self._fail("no auth_ok in time")
            await self._abort()
            return False
        except ConnectionClosed:
            self._fail(f"closed before auth_ok ({self.ws.close_code})")
            self._closed()
            return False
        moment = now()
        message = json.loads(raw)
        if message.get("type") != "auth_ok":
            self._fail(f"refused: {message.get('code') or message.get('type')}")
            await self._abort()
            return False
        record["auth_ok"] = moment
        record["heartbeat_interval"] = message.get("heartbeat_interval")
        self.worker.authenticated += 1
        return True

    async def _heartbeat_loop(self, since):
        """Heartbeats every interval on a fixed grid (no drift), starting at a
        random phase so agents that authenticated together do not beat together."""
        worker, record = self.worker, self.record
        interval = worker.interval
        next_at = since + worker.random.uniform(0, interval)
        try:
            while True:
                await sleep_until(next_at)
                moment = now()
                if (self.role == "silent" and worker.silence_at is not None
                        and moment >= worker.silence_at):
                    return  # silent from here on: the socket stays open and read
                self.pending.append(worker.log.add(self.index, moment))
                record["last_heartbeat"] = moment
                record["heartbeats_sent"] += 1
                await self.ws.send(HEARTBEAT)
                next_at += interval
                if next_at <= now():  # the event loop fell behind: skip, don't burst
                    record["late_heartbeats"] += 1
                    next_at = now() + interval
        except ConnectionClosed:
            return

    async def _read(self):
        log, record = self.worker.log, self.record
        try:
            async for raw in self.ws:
                moment = now()
                message = json.loads(raw)
                kind = message.get("type")
                if kind == "heartbeat_ack":
                    if self.pending:
                        log.ack(self.pending.popleft(), moment)
                        record["heartbeats_acked"] += 1
                    else:
                        self.errors["ack without heartbeat"] += 1
                elif kind == "error":
                    self.errors[f"error {message.get('code')}"] += 1
                else:
                    self.errors[f"unexpected {kind}"] += 1
        except ConnectionClosed:
            pass
        self._closed()

    def _closed(self):
        record = self.record
        if record["close_at"] is None:
            record["close_at"] = now()
            record["close_code"] = self.ws.close_code
            if record["closed_by_us"] is None:
                record["closed_by_us"] = False
                self.worker.closes[self.ws.close_code] += 1
        if self.heartbeats is not None:
            self.heartbeats.cancel()

    def _fail(self, reason):
        self.record["failure"] = reason
        self.worker.failed += 1

    async def _abort(self):
        self.record["closed_by_us"] = "failure"
        try:
            await self.ws.close()
        except Exception:  # noqa: BLE001
            pass
        self._closed()

    async def disconnect(self, at, why):
        """Close cleanly (1000) at ``at``; ``why`` is recorded (disconnect, teardown)."""
        await sleep_until(at)
        if not self.open:
            return
        if self.heartbeats is not None:
            self.heartbeats.cancel()
        self.record["closed_by_us"] = why
        self.record["close_sent"] = now()
        try:
            await self.ws.close()
        except Exception:  # noqa: BLE001
            pass

    def result(self):
        return {**self.record, "errors": dict(self.errors)}


# ---- dashboards --------------------------------------------------------------

class Dashboard:
    """One dashboard client: subscribes, keeps the snapshot's size and every
    ``nvr_status`` it receives with its arrival time."""

    def __init__(self, number, worker):
        self.number = number
        self.worker = worker
        self.ws = None
        self.events = []  # (received, nvr_id, reason, status, status_version, camera count)
        self.counts = Counter()  # reason → broadcasts about the bench's NVRs
        self.others = Counter()  # other message types
        self.record = {"number": number, "connect_start": None, "snapshot_at": None,
                       "snapshot_bytes": None, "snapshot_nvrs": None, "failure": None,
                       "close_code": None, "close_at": None}

    async def run(self):
        record = self.record
        record["connect_start"] = now()
        try:
            # Browsers offer permessage-deflate (the server takes it with VMS_WS_COMPRESSION).
            self.ws = await connect(self.worker.ws_url, compression="deflate",
                                    open_timeout=OPEN_TIMEOUT, close_timeout=CLOSE_TIMEOUT,
                                    ping_interval=None, proxy=None, max_size=None,
                                    user_agent_header=None)
            await self.ws.send(json.dumps({"type": "dashboard", "token": self.worker.key}))
            while record["snapshot_at"] is None:
                raw = await asyncio.wait_for(self.ws.recv(), AUTH_TIMEOUT)
                message = json.loads(raw)
                if message.get("type") == "snapshot":
                    record["snapshot_at"] = now()
                    record["snapshot_bytes"] = len(raw)
                    record["snapshot_nvrs"] = len(message.get("nvrs", []))
                elif message.get("type") == "error":
                    raise RuntimeError(f"refused: {message.get('code')}")
        except Exception as error:  # noqa: BLE001 — a dashboard that cannot subscribe is a result
            record["failure"] = describe(error)
            return
        finally:
            self.worker.dashboard_ready()
        await self._read()

    async def _read(self):
        ours = self.worker.nvr_ids
        events, counts = self.events, self.counts
        try:
            async for raw in self.ws:
                moment = now()
                message = json.loads(raw)
                kind = message.get("type")
                if kind != "nvr_status":
                    self.others[kind] += 1
                    continue
                nvr_id = message.get("nvr_id")
                events.append((moment, nvr_id, message.get("reason"), message.get("status"),
                               message.get("status_version"),
                               len(message.get("camera_ids") or ())))
                if nvr_id in ours:
                    counts[message.get("reason")] += 1
        except ConnectionClosed:
            pass
        self.record["close_at"] = now()
        self.record["close_code"] = self.ws.close_code

    async def close(self):
        if self.ws is not None:
            try:
                await self.ws.close()
            except Exception:  # noqa: BLE001
                pass

    def result(self):
        return {**self.record, "events": self.events, "others": dict(self.others)}


# ---- a worker process --------------------------------------------------------

class ClientWorker:
    """The event loop of one client process: its agents or its dashboards,
    the commands from the coordinator, progress reports and a probe of its
    own event-loop lag (a loop that runs late inflates every latency)."""

    def __init__(self, conn, setup):
        self.conn = conn
        self.kind = setup["kind"]  # "agents" or "dashboards"
        self.ws_url = setup["ws_url"]
        self.key = setup.get("key")
        self.interval = setup.get("interval", 1.0)
        self.compression = setup.get("compression")
        self.random = random.Random(setup.get("seed", 0))
        self.log = HeartbeatLog()
        self.silence_at = None
        self.authenticated = 0
        self.failed = 0
        self.closes = Counter()
        self.lags = array("d")  # pairs: probe time, lateness
        self.gc_pauses = array("d")  # pairs: start time, duration, of collections over 1 ms
        self._gc_started = None
        self.commands = None
        self.tasks = set()
        self.agents = [Agent(spec, self) for spec in setup.get("agents", [])]
        self.nvr_ids = frozenset(setup.get("nvr_ids", []))
        self.dashboards = [Dashboard(n, self) for n in setup.get("dashboards", [])]
        self.dashboards_ready = 0

    def send(self, *message):
        self.conn.send(message)

    def spawn(self, coroutine):
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def main(self):
        loop = asyncio.get_running_loop()
        self.commands = asyncio.Queue()
        loop.add_reader(self.conn.fileno(), self._on_pipe)
        self.spawn(self._progress_loop())
        self.spawn(self._lag_probe())
        for dashboard in self.dashboards:
            self.spawn(dashboard.run())
        if not self.dashboards:
            self.send("ready", {})
        gc.callbacks.append(self._on_gc)
        gc.freeze()  # the long-lived set-up objects need no more collecting
        while True:
            command, *args = await self.commands.get()
            if command == "ramp":
                start, rate = args
                for position, agent in enumerate(self.agents):
                    offset = 0.0 if rate is None else agent.index / rate
                    self.spawn(agent.run(start + offset))
            elif command == "steady":
                self.silence_at = args[0]
                # Thousands of connections are long-lived now: keep full
                # collections from walking them all (pauses of 100+ ms).
                gc.collect()
                gc.freeze()
            elif command == "disconnect":
                start, rate, indexes = args
                wanted = set(indexes)
                for agent in self.agents:
                    if agent.index in wanted:
                        offset = 0.0 if rate is None else indexes.index(agent.index) / rate
                        self.spawn(agent.disconnect(start + offset, "disconnect"))
            elif command == "report":
                self.send("result", self.result())
            elif command == "stop":
                await self._stop()
                self.send("stopped", {})
                return

    def _on_pipe(self):
        try:
            while self.conn.poll():
                self.commands.put_nowait(self.conn.recv())
        except (EOFError, OSError):  # the coordinator is gone: stop
            asyncio.get_running_loop().remove_reader(self.conn.fileno())
            self.commands.put_nowait(("stop",))

    async def _stop(self):
        closing = [agent.disconnect(0, "teardown") for agent in self.agents if agent.open]
        closing += [dashboard.close() for dashboard in self.dashboards]
        if closing:
            await asyncio.wait([asyncio.ensure_future(c) for c in closing],
                               timeout=CLOSE_TIMEOUT + 2)

    def dashboard_ready(self):
        self.dashboards_ready += 1
        if self.dashboards_ready == len(self.dashboards):
            self.send("ready", {"dashboards": [d.record for d in self.dashboards]})

    async def _progress_loop(self):
        while True:
            await asyncio.sleep(PROGRESS_EVERY)
            self.send("progress", self.progress())

    def progress(self):
        line = {"t": now(), "cpu": cpu_seconds()}
        if self.agents:
            line.update(started=sum(a.record["connect_start"] is not None for a in self.agents),
                        authenticated=self.authenticated, failed=self.failed,
                        heartbeats_sent=len(self.log.sent),
                        heartbeats_acked=sum(a.record["heartbeats_acked"] for a in self.agents),
                        closes=dict(self.closes),
                        open=sum(a.open for a in self.agents),
                        disconnects_sent=sum(a.record["closed_by_us"] == "disconnect"
                                             for a in self.agents),
                        silent_authenticated=sum(a.role == "silent" and a.authenticated
                                                 for a in self.agents))
        if self.dashboards:
            live = [d for d in self.dashboards if d.record["failure"] is None] or self.dashboards
            line.update(subscribed=sum(d.record["snapshot_at"] is not None
                                       for d in self.dashboards),
                        received={reason: min(d.counts[reason] for d in live)
                                  for reason in ("connected", "disconnected", "stale")})
        return line

    def _on_gc(self, phase, info):
        if phase == "start":
            self._gc_started = now()
        elif self._gc_started is not None:
            duration = now() - self._gc_started
            if duration > 0.001:
                self.gc_pauses.append(self._gc_started)
                self.gc_pauses.append(duration)

    async def _lag_probe(self):
        while True:
            before = now()
            await asyncio.sleep(LAG_PROBE_EVERY)
            self.lags.append(before)
            self.lags.append(now() - before - LAG_PROBE_EVERY)

    def result(self):
        return {"kind": self.kind, "pid": os.getpid(),
                "agents": [agent.result() for agent in self.agents],
                "heartbeats": self.log.as_dict(),
                "dashboards": [dashboard.result() for dashboard in self.dashboards],
                "lags": self.lags, "gc_pauses": self.gc_pauses, "progress": self.progress()}


def worker_main(conn, setup):
    """Entry point of a client process (multiprocessing, spawn)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator handles Ctrl-C
    asyncio.run(ClientWorker(conn, setup).main())
