"""Fleet-scale benchmark of vmsapp, driven from outside: REST for set-up,
real WebSockets for everything else.

    python -m tools.bench --start-server                      # the preset (what `make bench` runs)
    python -m tools.bench --start-server --nvrs 50 --dashboards 2 --duration 5 \\
        --disconnects 5 --silent 5                            # a quick smoke run
    python -m tools.bench --start-server --database-url postgresql://root@127.0.0.1:5432/test
    python -m tools.bench --start-server --workers 2 --redis-url redis://127.0.0.1:6379/0
    python -m tools.bench --url http://127.0.0.1:3000 --key vms_… --server-pid 1234 \\
        --heartbeat 10 --stale-after 30 --nvrs 200            # a server you started yourself
    python -m tools.bench --peer-node /tmp/peer-node          # the Node.js reference peer

A run: create the NVRs and their cameras over REST (8 keep-alive sessions);
subscribe the dashboards; connect the agents at the ramp's pace (or all at
once with --burst); once every agent is in and every dashboard has heard of
it, hold the steady state for --duration seconds, during which the --silent
agents stop heartbeating (socket left open, still reading) and must be
detected as stale; then the --disconnects agents close cleanly. Agents and
dashboards are asyncio clients in a few worker processes; the server's
process tree is sampled from /proc; write transactions come from PostgreSQL's
statistics or, for SQLite, from watching the file's data_version.

--start-server makes a fresh database (a SQLite file, or a new database on
the PostgreSQL server of --database-url, dropped afterwards), migrates it,
runs gunicorn with gunicorn.conf.py on a free port with compressed intervals,
and stops it with SIGTERM at the end. Without it, point --url and --key at a
running server and give it the same --heartbeat and --stale-after it runs
with; add --server-pid for CPU and memory, and --database-url (its database)
for write transactions. NVRs the run created there are deleted afterwards
unless --keep-fleet. --key may be left out for a server that takes none.

--peer-node DIR runs the Node.js reference peer instead (a copy of it with
its node_modules: `npm install` there) on a free port and a fresh SQLite file
with the scenario's intervals, as --start-server runs vmsapp: the same
scenario against both, in one session on one machine, gives vmsapp's figures
as ratios to the peer's. The peer has no GET /api/nvrs: its last_seen lag is
n/a.

Prints progress while it runs, then a table (figure, value, target, result)
and writes every figure, the scenario and the machine to a JSON file
(default bench-results/bench-<time>.json). Exit status: 0 when every target
passes, 1 when one fails, 2 when the run could not be made, 130 after Ctrl-C
and 128 + the signal's number after SIGTERM or SIGHUP; in every case a server
the bench started is stopped and its database dropped."""

import argparse
import json
import math
import os
import random
import secrets
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from .bench_clients import AUTH_TIMEOUT, OPEN_TIMEOUT, cpu_seconds
from .bench_fleet import Fleet, NotServed, RestClient
from .bench_monitor import MachineCpu, ProcessTreeMonitor, machine_info, python_speed
from .bench_pool import ClientPool
from .bench_report import Report
from .bench_server import BenchDatabase, ServerProcess, SqliteProbe, database_kind, make_probe
from .bench_stats import Analysis, Observations
from .common import non_negative_int, positive_int
from .peer_node import PeerNodeProcess

ROOT = Path(__file__).resolve().parent.parent
now = time.monotonic

# What one client process drives before the agents are split over several:
# sockets, heartbeats a second and, while ramping, connects a second. No more
# processes than that: on a shared machine each one's wake-ups and handshakes
# take CPU from the server under test.
AGENTS_PER_PROCESS = 1500
HEARTBEATS_PER_PROCESS = 500
CONNECTS_PER_PROCESS = 250
# What else stops a run as Ctrl-C (SIGINT) does: kill, a CI timeout, a closed terminal.
TERMINATING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
STOP_SIGNALS = (signal.SIGINT, *TERMINATING_SIGNALS)
# How long dashboards may trail the agents before a phase moves on anyway.
SETTLE_TIMEOUT = 10.0

PRESET = {"nvrs": 1000, "cameras": 4, "dashboards": 10, "heartbeat": 1.0, "duration": 60.0,
          "ramp": 500.0, "disconnects": 100, "silent": 50, "stale_after": 3.0,
          "sweep_interval": 1.0}


@dataclass
class Scenario:
    nvrs: int
    cameras: int
    dashboards: int
    heartbeat: float
    duration: float
    ramp: float | None  # connections per second; None with burst
    burst: bool
    disconnects: int
    silent: int
    stale_after: float
    sweep_interval: float
    agent_processes: int
    agent_compression: bool
    seed: int


class Benchmark:
    """One run, phase by phase: server, fleet, clients, ramp, steady state,
    disconnects; then the analysis and the report."""

    def __init__(self, args, scenario):
        self.args = args
        self.scenario = scenario
        self.run_id = secrets.token_hex(3)
        self.started_at = datetime.now(timezone.utc)
        self.origin = now()
        self.load_at_start = os.getloadavg()
        self.python_speed_ms = python_speed()
        self.workdir = None  # the started server's database file and log
        self.database = None
        self.server = None
        self.monitor = None
        self.probe = None
        self.machine_cpu = MachineCpu()
        self.pool = None
        self.fleet = None
        self.roles = {}
        self.timeline = dict.fromkeys(("setup_start", "setup_end", "dashboards_ready",
                                       "ramp_start", "ramp_end", "steady_start", "steady_end",
                                       "disconnect_start", "end"))
        self.coordinator_cpu = {}
        self.last_seen = None
        self.base_url = args.url
        self.key = args.key
        self._last_status = 0.0
        self._last_acks = None

    # ---- output --------------------------------------------------------------
    def say(self, phase, text):
        print(f"[{now() - self.origin:7.1f}s] {phase:<10} {text}", flush=True)

    def status(self, phase):
        pool = self.pool
        moment = now()
        acked = pool.total("heartbeats_acked")
        rate = ""
        if self._last_acks is not None and moment > self._last_acks[0]:
            rate = f", {(acked - self._last_acks[1]) / (moment - self._last_acks[0]):.0f} acks/s"
        self._last_acks = (moment, acked)
        parts = [f"agents {pool.total('authenticated')}/{self.scenario.nvrs} in, "
                 f"{pool.total('failed')} failed, {pool.total('open')} open{rate}",
                 "dashboards got " + "/".join(str(pool.received(r)) for r in
                                              ("connected", "disconnected", "stale"))
                 + " conn/disc/stale"]
        if self.monitor is not None:
            share, latest = self.monitor.cpu_share(), self.monitor.latest()
            if share is not None and latest is not None:
                parts.append(f"server {share * 100:.0f}% CPU {latest['rss'] / 2 ** 20:.0f} MB")
        shares = []
        for process in pool.processes:
            samples = process.cpu_samples
            if len(samples) >= 3:
                (t0, c0), (t1, c1) = samples[-3], samples[-1]
                shares.append(f"{(c1 - c0) / (t1 - t0) * 100:.0f}%")
        if shares:
            parts.append("client " + " ".join(shares))
        self.say(phase, " | ".join(parts))

    def wait(self, phase, done, until, every=1.0):
        """Pump client messages until ``done()`` or the monotonic ``until``,
        printing a status line every ``every`` seconds; whether done."""
        while True:
            if done():
                return True
            moment = now()
            if moment >= until:
                return False
            if moment - self._last_status >= every:
                self._last_status = moment
                self.status(phase)
            self.pool.pump(min(0.1, until - moment))

    def sleep_until(self, moment):
        while now() < moment:
            self.pool.pump(moment - now())

    # ---- phases --------------------------------------------------------------
    def run(self):
        try:
            self.prepare_server()
            self.setup_fleet()
            self.start_clients()
            self.ramp()
            self.steady_state()
            self.disconnects()
            self.pool.collect()
            self.timeline["end"] = now()
        finally:
            self.teardown()
        return self.report()

    def prepare_server(self):
        s, args = self.scenario, self.args
        if args.start_server:
            self.workdir = Path(tempfile.mkdtemp(prefix="vmsapp-bench-"))
            self.database = BenchDatabase(self.workdir, args.database_url)
            url = self.database.create()
            self.key = "vms_bench_" + secrets.token_urlsafe(24)
            self.server = ServerProcess(url, self.workdir / "server.log", s, self.key,
                                        workers=args.workers, redis_url=args.redis_url,
                                        log_level=args.server_log_level,
                                        worker_class=args.worker_class,
                                        compression=args.server_compression)
            self.say("server", f"starting gunicorn ({args.worker_class}) on {self.server.url} "
                     f"({self.database.kind} {self.database.name}); "
                     f"log {self.server.log_path}")
            self.server.start()
            self.base_url = self.server.url
            pid = self.server.pid
            self.probe = make_probe(url, admin_url=args.database_url, database=self.database.name)
        elif args.peer_node:
            self.workdir = Path(tempfile.mkdtemp(prefix="vmsapp-bench-peer-"))
            self.server = PeerNodeProcess(args.peer_node, self.workdir, s)
            self.key = None
            self.say("server", f"starting the Node.js peer ({self.server.directory}) on "
                     f"{self.server.url} (sqlite {self.server.database_path}); "
                     f"log {self.server.log_path}")
            self.server.start()
            self.base_url = self.server.url
            pid = self.server.pid
            self.probe = SqliteProbe(self.server.database_path)
        else:
            pid = args.server_pid
            if args.database_url:
                self.probe = make_probe(args.database_url)
        if pid:
            self.monitor = ProcessTreeMonitor(pid).start()
        if self.probe is not None:
            try:
                self.probe.start()
            except Exception as error:  # noqa: BLE001 — the figure is n/a, not the run
                self.say("database", f"cannot watch the database ({error}): write "
                         "transactions are n/a")
                self.probe = None
        self.say("server", f"ready at {self.base_url}"
                 + ("" if pid else " (no --server-pid: server CPU and memory are n/a)"))

    def setup_fleet(self):
        s = self.scenario
        self.timeline["setup_start"] = now()
        self.coordinator_cpu["setup_start"] = cpu_seconds()
        self.fleet = Fleet(RestClient(self.base_url, self.key), self.run_id)
        self.say("setup", f"creating {s.nvrs} NVRs × {s.cameras} cameras over REST")
        self.fleet.create(s.nvrs, s.cameras, progress=lambda done, total, seconds: self.say(
            "setup", f"{done}/{total} NVRs with cameras ({done * (1 + s.cameras) / seconds:.0f} "
                     "requests/s)") if done % max(100, total // 5) == 0 else None)
        self.timeline["setup_end"] = now()
        self.coordinator_cpu["setup_end"] = cpu_seconds()
        chosen = random.Random(s.seed).sample(range(s.nvrs), s.silent + s.disconnects)
        self.roles = {i: "silent" for i in chosen[:s.silent]}
        self.roles.update({i: "disconnect" for i in chosen[s.silent:]})
        for nvr in self.fleet.nvrs:
            nvr["role"] = self.roles.get(nvr["index"], "normal")
        self.say("setup", f"done in {self.fleet.seconds:.1f} s "
                 f"({self.fleet.requests / self.fleet.seconds:.0f} requests/s)")

    def start_clients(self):
        s = self.scenario
        ws_url = self.args.ws_url or self.base_url.replace("http", "ws", 1).rstrip("/") + "/ws"
        self.pool = ClientPool()
        self.pool.start("dashboards", {
            "kind": "dashboards", "ws_url": ws_url, "key": self.key,
            "dashboards": list(range(1, s.dashboards + 1)),
            "nvr_ids": [nvr["nvr_id"] for nvr in self.fleet.nvrs]})
        for n in range(s.agent_processes):
            self.pool.start(f"agents-{n + 1}", {
                "kind": "agents", "ws_url": ws_url, "interval": s.heartbeat, "seed": s.seed + n,
                "compression": "deflate" if s.agent_compression else None,
                "agents": [{k: nvr[k] for k in ("index", "nvr_id", "hostname", "token", "role")}
                           for nvr in self.fleet.nvrs[n::s.agent_processes]]})
        self.say("clients", f"{s.agent_processes} agent process(es), 1 dashboard process; "
                 f"subscribing {s.dashboards} dashboards")
        ready = self.wait("clients", lambda: all(p.ready is not None or p.stopped
                                                 for p in self.pool.processes),
                          now() + OPEN_TIMEOUT + AUTH_TIMEOUT + 10)
        if not ready or any(p.stopped for p in self.pool.processes):
            raise RuntimeError("client processes did not start")
        self.timeline["dashboards_ready"] = now()
        failures = [d["failure"] for p in self.pool.dashboards
                    for d in p.ready.get("dashboards", []) if d["failure"]]
        self.say("clients", f"{s.dashboards - len(failures)}/{s.dashboards} dashboards "
                 "subscribed" + (f"; failures: {failures[:3]}" if failures else ""))

    def ramp(self):
        s = self.scenario
        start = now() + 0.5
        self.pool.send("ramp", start, s.ramp, to=self.pool.agents)
        self.sleep_until(start)
        self.timeline["ramp_start"] = start
        self._mark("ramp_start")
        self.say("ramp", f"connecting {s.nvrs} agents "
                 + ("at once (burst)" if s.burst else f"at {s.ramp:g}/s"))
        pool = self.pool
        def resolved():  # every agent is in, or has given up
            return pool.total("authenticated") + pool.total("failed") >= s.nvrs

        pace = 0 if s.burst else s.nvrs / s.ramp
        self.wait("ramp", resolved, start + pace + OPEN_TIMEOUT + AUTH_TIMEOUT + 5)
        settled = self.wait("ramp", lambda: pool.received("connected")
                            >= pool.total("authenticated"), now() + SETTLE_TIMEOUT)
        self.timeline["ramp_end"] = now()
        self._mark("ramp_end")
        self.say("ramp", f"done: {pool.total('authenticated')} authenticated, "
                 f"{pool.total('failed')} failed; dashboards "
                 + ("have every connected broadcast" if settled else
                    f"have {pool.received('connected')} connected broadcasts (timed out)"))

    def steady_state(self):
        s = self.scenario
        start = now() + 0.3
        self.pool.send("steady", start, to=self.pool.agents)
        self.sleep_until(start)
        self.timeline["steady_start"] = start
        self._mark("steady_start")
        end = start + s.duration
        self.say("steady", f"{s.duration:g} s; {s.silent} agents go silent now")
        every = 5.0 if s.duration >= 20 else 1.0
        if self.probe is not None:
            # PostgreSQL publishes a backend's counters up to seconds late: the
            # ramp's commits must not land in the window.
            self.wait("steady", lambda: False, start + min(self.probe.settle, s.duration / 3),
                      every)
            self._mark_database("database_start")
        self.wait("steady", lambda: False, end, every)
        self.sleep_until(end)
        self.timeline["steady_end"] = now()
        self._mark("steady_end")
        self.status("steady")
        try:
            self.last_seen = self.fleet.last_seen()
        except NotServed as error:
            self.last_seen = None
            self.say("steady", f"last_seen not read: {error}")
        except Exception as error:  # noqa: BLE001 — a failed read is reported, not fatal
            self.last_seen = str(error)[:200]
            self.say("steady", f"could not read last_seen: {error}")

    def disconnects(self):
        s = self.scenario
        pool = self.pool
        indexes = sorted(i for i, role in self.roles.items() if role == "disconnect")
        start = now() + 0.3
        if indexes:
            pool.send("disconnect", start, s.ramp, indexes, to=pool.agents)
            self.say("disconnect", f"{len(indexes)} agents close cleanly")
        self.timeline["disconnect_start"] = start
        pace = 0 if s.burst or not indexes else len(indexes) / s.ramp
        # Every close is sent and every silent agent is past its stale deadline …
        earliest = max(start + pace, self.timeline["steady_start"] + s.stale_after) + 0.75
        # … and every dashboard has heard of them (agents the server already
        # dropped cannot disconnect: only the closes actually sent count).
        done = self.wait("disconnect", lambda: now() >= earliest
                         and pool.received("disconnected") >= pool.total("disconnects_sent")
                         and pool.received("stale") >= pool.total("silent_authenticated"),
                         earliest + SETTLE_TIMEOUT)
        self.status("disconnect")
        if not done:
            self.say("disconnect", "timed out waiting for every disconnected/stale broadcast")

    def _mark(self, name):
        self.coordinator_cpu[name] = cpu_seconds()
        self.machine_cpu.mark(name)
        if self.monitor is not None:
            self.monitor.mark(name)
        if name == "steady_end":
            self._mark_database(name)

    def _mark_database(self, name):
        if self.probe is not None:
            try:
                self.probe.mark(name)
            except Exception as error:  # noqa: BLE001
                self.say("database", f"cannot read write counters: {error}")

    def teardown(self):
        # A second Ctrl-C or signal must not leave a server or a database behind.
        previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in STOP_SIGNALS}
        try:
            self._teardown()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _teardown(self):
        if self.monitor is not None:
            self._attempt("stop the server monitor", self.monitor.stop)
        if self.probe is not None:
            self._attempt("stop the database probe", self.probe.stop)
        if self.pool is not None:
            self._attempt("close the dashboards", self.pool.stop, self.pool.dashboards)
        if self.server is not None:
            self.say("teardown", "stopping the server (SIGTERM)")
            self._attempt("stop the server", self.server.stop)
        if self.pool is not None:
            self._attempt("stop the client processes", self.pool.stop)
        if self.server is None and self.fleet is not None and self.fleet.nvrs:
            if self.args.keep_fleet:
                self.say("teardown", f"keeping the {len(self.fleet.nvrs)} bench NVRs "
                         f"(bench-{self.run_id}-*)")
            else:
                self.say("teardown", f"deleting the {len(self.fleet.nvrs)} bench NVRs")
                self._attempt("delete every bench NVR", self._delete_fleet)
        if self.database is not None:
            self._attempt(f"drop {self.database.name}", self.database.drop)

    def _delete_fleet(self):
        deleted = self.fleet.delete()
        if deleted < len(self.fleet.nvrs):
            self.say("teardown", f"the server deleted {deleted} of them")

    def _attempt(self, what, step, *args):
        """One teardown step: a failure is said, and the steps after it still
        run, so no server or database is left behind."""
        try:
            step(*args)
        except Exception as error:  # noqa: BLE001
            self.say("teardown", f"could not {what}: {error}")

    # ---- results -------------------------------------------------------------
    def report(self):
        database = None
        if self.probe is not None:
            try:
                database = self.probe.window("database_start", "steady_end")
            except KeyError:
                database = None
        observations = Observations(
            self.scenario, self.fleet.nvrs, self.timeline, self.pool.processes,
            monitor=self.monitor, machine_cpu=self.machine_cpu, database=database,
            last_seen=self.last_seen, wall_offset=time.time() - time.monotonic(),
            coordinator_cpu=self.coordinator_cpu)
        figures = Analysis(observations).figures()
        report = Report(self.scenario, figures, self.context())
        print()
        print(report.table())
        print()
        print(report.summary())
        path = Path(self.args.json) if self.args.json else (
            ROOT / "bench-results" / f"bench-{self.started_at:%Y%m%d-%H%M%S}.json")
        print(f"JSON: {report.write_json(path)}")
        if self.args.raw:
            print(f"raw observations: {self.write_raw(Path(self.args.raw))}")
        return 0 if report.passed else 1

    def write_raw(self, path):
        """Every observation (agents, heartbeats, dashboards' events), to
        look into a surprising figure; times are monotonic seconds."""
        workers = [{"name": p.name, "kind": p.kind, "cpu_samples": p.cpu_samples,
                    **{k: (list(v) if k == "lags" else v) for k, v in p.result.items()
                       if k != "heartbeats"},
                    "heartbeats": {k: list(v) for k, v in p.result["heartbeats"].items()}}
                   for p in self.pool.processes if p.result]
        document = {"timeline": self.timeline, "fleet": [
            {k: v for k, v in nvr.items() if k != "token"} for nvr in self.fleet.nvrs],
            "server_samples": self.monitor.samples if self.monitor else None,
            "workers": workers}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, default=str))
        return path

    def context(self):
        mode = ("external" if self.server is None else
                "peer-node" if isinstance(self.server, PeerNodeProcess) else "started")
        server = {"mode": mode, "url": self.base_url, "pid_watched": self.monitor is not None}
        if self.server is not None:
            server.update(settings=self.server.public_settings(),
                          log=str(self.server.log_path), exit_code=self.server.process.returncode,
                          log_counts=self.server.log_counts())
        kind = (self.database.kind if self.database else
                getattr(self.server, "database_kind", None)
                or database_kind(self.args.database_url))
        # Read again now the run is over: a shared machine's speed can change by
        # half within minutes, and one reading would hide it.
        machine = {**machine_info(), "python_loop_ms": self.python_speed_ms,
                   "python_loop_ms_at_end": python_speed(),
                   "load_average_at_start": self.load_at_start,
                   "load_average_at_end": os.getloadavg()}
        return {"started_at": self.started_at.isoformat().replace("+00:00", "Z"),
                "command": " ".join(sys.argv), "machine": machine, "server": server,
                "database_kind": kind or "unknown"}


# ---- command line ---------------------------------------------------------------

def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench", description=" ".join(__doc__.split("\n")[:2]),
        epilog="Every scenario option defaults to the preset (1,000 NVRs × 4 cameras, "
               "10 dashboards, 1 s heartbeats, stale after 3 s, sweep every 1 s, ramp "
               "500/s, 60 s steady state, 100 clean disconnects, 50 silent agents).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_argument_group("server")
    where.add_argument("--url", default=os.environ.get("VMS_BENCH_URL", "http://127.0.0.1:3000"),
                       help="a running server's base URL (default: %(default)s)")
    where.add_argument("--ws-url", metavar="URL",
                       help="the WebSocket endpoint, when not <url>/ws (ws://…/ws)")
    where.add_argument("--key", default=os.environ.get("VMS_ADMIN_API_KEY"),
                       help="an admin API key (default: $VMS_ADMIN_API_KEY; none for a "
                            "server that takes none, as the Node.js peer)")
    where.add_argument("--server-pid", type=int, metavar="PID",
                       help="the server's root process (gunicorn's master, node): CPU and "
                            "memory of its process tree")
    where.add_argument("--start-server", action="store_true",
                       help="start a server of its own on a fresh database, stop it after")
    where.add_argument("--peer-node", metavar="DIR",
                       help="start the Node.js reference peer in DIR (with its node_modules) "
                            "on a fresh SQLite file instead, stop it after")
    where.add_argument("--database-url", metavar="URL",
                       help="with --start-server: a PostgreSQL server to create a fresh "
                            "database on (default: a SQLite file); otherwise the running "
                            "server's database, for write transactions per second")
    where.add_argument("--workers", type=int, metavar="W", help="WEB_CONCURRENCY (needs Redis)")
    where.add_argument("--redis-url", metavar="URL", help="REDIS_URL for the started server")
    where.add_argument("--worker-class", choices=("gthread", "gevent"), default="gthread",
                       help="VMS_WORKER_CLASS for the started server (gthread)")
    where.add_argument("--server-log-level", default="INFO", help="VMS_LOG_LEVEL (INFO)")
    where.add_argument("--server-compression", action="store_true",
                       help="VMS_WS_COMPRESSION=true for the started server: it accepts "
                            "permessage-deflate (dashboards offer it; agents with "
                            "--agent-compression)")
    where.add_argument("--keep-fleet", action="store_true",
                       help="with --url: leave the bench's NVRs on the server")
    shape = parser.add_argument_group("scenario")
    shape.add_argument("--preset", action="store_true",
                       help="the preset for every option not given (the default anyway)")
    shape.add_argument("--nvrs", type=positive_int, default=PRESET["nvrs"], metavar="N")
    shape.add_argument("--cameras-per-nvr", dest="cameras", type=non_negative_int,
                       default=PRESET["cameras"], metavar="C")
    shape.add_argument("--dashboards", type=positive_int, default=PRESET["dashboards"],
                       metavar="M")
    shape.add_argument("--heartbeat", type=positive_float, default=PRESET["heartbeat"],
                       metavar="S", help="seconds between an agent's heartbeats")
    shape.add_argument("--duration", type=positive_float, default=PRESET["duration"],
                       metavar="S", help="seconds of steady state")
    pace = shape.add_mutually_exclusive_group()
    pace.add_argument("--ramp", type=positive_float, default=PRESET["ramp"], metavar="RATE",
                      help="connections per second while ramping up (and closing)")
    pace.add_argument("--burst", action="store_true", help="connect every agent at once")
    shape.add_argument("--disconnects", type=non_negative_int, default=PRESET["disconnects"],
                       metavar="D", help="agents that close cleanly after the steady state")
    shape.add_argument("--silent", type=non_negative_int, default=PRESET["silent"], metavar="K",
                       help="agents that stop heartbeating (socket open) at the steady state")
    shape.add_argument("--stale-after", type=positive_float, default=PRESET["stale_after"],
                       metavar="S", help="VMS_STALE_AFTER (the target of stale detection)")
    shape.add_argument("--sweep-interval", type=positive_float,
                       default=PRESET["sweep_interval"], metavar="S", help="VMS_SWEEP_INTERVAL")
    client = parser.add_argument_group("client")
    client.add_argument("--agent-processes", type=positive_int, metavar="P",
                        help=f"client processes for the agents (default: enough for "
                             f"{AGENTS_PER_PROCESS} agents, {HEARTBEATS_PER_PROCESS} "
                             f"heartbeats/s and {CONNECTS_PER_PROCESS} connects/s each)")
    client.add_argument("--agent-compression", action="store_true",
                        help="agents offer permessage-deflate (dashboards always do; the "
                             "server accepts it with VMS_WS_COMPRESSION)")
    client.add_argument("--seed", type=int, default=1, help="picks the silent and disconnecting "
                        "agents and heartbeat phases")
    client.add_argument("--raw", metavar="PATH",
                        help="also write every raw observation to this JSON file")
    client.add_argument("--json", metavar="PATH",
                        help="where to write the results (default bench-results/bench-<time>.json)")
    args = parser.parse_args(argv)
    if args.silent + args.disconnects > args.nvrs:
        parser.error("--silent + --disconnects must not exceed --nvrs")
    if args.stale_after <= args.heartbeat:
        parser.error("--stale-after must be longer than --heartbeat")
    if args.peer_node:
        given = [name for name, value in (("--start-server", args.start_server),
                                          ("--database-url", args.database_url),
                                          ("--workers", args.workers),
                                          ("--redis-url", args.redis_url),
                                          ("--server-compression", args.server_compression))
                 if value]
        if given:
            parser.error(f"--peer-node runs the peer on its own SQLite file, one process: "
                         f"leave out {', '.join(given)}")
    if args.database_url and database_kind(args.database_url) is None:
        parser.error("--database-url must be postgresql://… (or sqlite:///… with --url)")
    if args.start_server and database_kind(args.database_url) == "sqlite":
        parser.error("with --start-server, --database-url names a PostgreSQL server; "
                     "leave it out for a fresh SQLite file")
    return args


def agent_processes_for(nvrs, heartbeat, ramp):
    """The default number of agent processes; ``ramp`` is None for a burst."""
    loads = [nvrs / AGENTS_PER_PROCESS, nvrs / heartbeat / HEARTBEATS_PER_PROCESS]
    if ramp is not None:
        loads.append(ramp / CONNECTS_PER_PROCESS)
    # Rounded first: 700 agents at 0.7 s are 1,000.0000000000001 heartbeats a second.
    return max(1, math.ceil(round(max(loads), 6)))


def scenario_from(args):
    processes = args.agent_processes or agent_processes_for(
        args.nvrs, args.heartbeat, None if args.burst else args.ramp)
    return Scenario(nvrs=args.nvrs, cameras=args.cameras, dashboards=args.dashboards,
                    heartbeat=args.heartbeat, duration=args.duration,
                    ramp=None if args.burst else args.ramp, burst=args.burst,
                    disconnects=args.disconnects, silent=args.silent,
                    stale_after=args.stale_after, sweep_interval=args.sweep_interval,
                    agent_processes=min(processes, args.nvrs),
                    agent_compression=args.agent_compression, seed=args.seed)


def positive_float(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


class Stopped(KeyboardInterrupt):
    """SIGTERM (``kill``, a CI job's timeout) or SIGHUP (a closed terminal)."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stop(signum, frame):
    """Stop as Ctrl-C does, so the server the bench started and its database
    go with it. The first signal wins: later ones are ignored."""
    for other in STOP_SIGNALS:
        signal.signal(other, signal.SIG_IGN)
    raise Stopped(signum)


def main(argv=None):
    args = parse_args(argv)
    scenario = scenario_from(args)
    print("vmsapp bench: " + ", ".join(f"{k}={v}" for k, v in asdict(scenario).items()),
          flush=True)
    bench = None
    for signum in TERMINATING_SIGNALS:
        signal.signal(signum, _stop)
    try:
        bench = Benchmark(args, scenario)
        return bench.run()
    except Stopped as stopped:
        print(f"stopped by {stopped}", file=sys.stderr)
        return 128 + stopped.signum
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 — the run could not be made: say why
        traceback.print_exc()
        print(f"bench: the run could not be made: {error}", file=sys.stderr)
        if bench is not None and bench.server is not None:
            print(f"server log: {bench.server.log_path}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
