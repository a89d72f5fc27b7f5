"""The load benchmark (``python -m tools.bench``) as an operator runs it: a
small fleet against a server it starts itself, on each database. Its figures
are not asserted here (speed lives in BENCHMARKS.md); what it counts is."""

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from support import ROOT

from tools.bench import PRESET, agent_processes_for, parse_args, scenario_from
from tools.bench_fleet import Fleet, NotServed, RestClient
from tools.bench_monitor import children_by_parent, stat_fields
from tools.bench_server import ServerProcess, SqliteProbe
from tools.peer_node import PeerNodeProcess, check_peer_directory

# Correctness, whatever the machine's speed: every agent and dashboard in,
# every broadcast exactly once, no transition nobody caused.
COUNTED = ("agents authenticated", "dashboards subscribed",
           "missing broadcasts (conn / disc / stale)",
           "duplicate broadcasts (conn / disc / stale)", "unexpected transitions")


def test_a_small_run_counts_every_agent_and_broadcast(database_server_url, tmp_path):
    database = ["--database-url", database_server_url] if database_server_url else []
    result_path = tmp_path / "result.json"
    bench = subprocess.Popen(
        [sys.executable, "-m", "tools.bench", "--start-server", *database, "--nvrs", "30",
         "--cameras-per-nvr", "2", "--dashboards", "2", "--heartbeat", "1",
         "--stale-after", "3", "--sweep-interval", "1", "--duration", "2",
         "--ramp", "100", "--disconnects", "3", "--silent", "2", "--json", str(result_path)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = bench.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        # Ctrl-C: the bench stops its server and drops its database.
        bench.send_signal(signal.SIGINT)
        output, _ = bench.communicate(timeout=30)
        pytest.fail(f"the bench did not finish in 90 s:\n{output}")

    # 1: a figure missed its target, which a loaded test machine may do.
    assert bench.returncode in (0, 1), output
    result = json.loads(result_path.read_text())
    checks = {check["figure"]: check for check in result["checks"]}
    for figure in COUNTED:
        assert checks[figure]["result"] == "PASS", checks[figure]
    assert result["scenario"]["agent_processes"] == 1
    assert result["database_kind"] == ("postgresql" if database_server_url else "sqlite")
    # It measured the server it started.
    assert result["figures"]["server"]["cpu_per_heartbeat_ms"] > 0
    assert result["figures"]["server"]["peak_rss_mb"] > 0
    # The machine's speed, read before and after the run.
    assert result["machine"]["python_loop_ms"] > 0
    assert result["machine"]["python_loop_ms_at_end"] > 0
    assert "ms at the end (lower is faster)" in output
    # How busy the whole machine was while the agents connected.
    busy = result["figures"]["client"]["machine_busy_cores_ramp"]
    assert 0 < busy <= result["machine"]["nproc"]
    assert checks["machine CPU busy (ramp)"]["result"] in ("ok", "WARN")


@pytest.mark.parametrize("nvrs, heartbeat, ramp, processes", [
    (PRESET["nvrs"], PRESET["heartbeat"], PRESET["ramp"], 2),  # heartbeats and connects
    (5000, 10.0, 500.0, 4),    # sockets
    (8000, 10.0, 500.0, 6),
    (1000, 10.0, 100.0, 1),
    (30000, 10.0, None, 20),   # a burst: no connect rate to split
    (1000, 0.5, None, 4),      # 2,000 heartbeats a second
    (700, 0.7, None, 2),       # 1,000 heartbeats a second, not 1,000.0000000000001
])
def test_agents_are_split_over_as_few_processes_as_the_load_allows(nvrs, heartbeat, ramp,
                                                                   processes):
    assert agent_processes_for(nvrs, heartbeat, ramp) == processes


def _children(pid):
    """Processes whose parent is ``pid``, as {pid: command line}."""
    children = {}
    for child in children_by_parent().get(pid, ()):
        try:
            children[child] = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
    return children


def _alive(pid):
    """Running, not exited (a zombie is an exited process nobody reaped yet:
    the bench's children go to this machine's init when the bench exits)."""
    try:
        return stat_fields(pid)[0] != b"Z"
    except (OSError, ValueError, IndexError):
        return False


# Both signals take one path, and each backend drops its database its own way:
# each signal once, on one backend each, keeps the suite's time.
@pytest.mark.parametrize("signum, database_server_url",
                         [(signal.SIGTERM, "sqlite"), (signal.SIGHUP, "postgresql")],
                         indirect=["database_server_url"])
def test_a_stopped_run_leaves_no_server_or_database(signum, database_server_url, tmp_path):
    database = ["--database-url", database_server_url] if database_server_url else []
    bench = subprocess.Popen(
        [sys.executable, "-m", "tools.bench", "--start-server", *database, "--nvrs", "5",
         "--dashboards", "1", "--heartbeat", "1", "--stale-after", "3", "--silent", "0",
         "--disconnects", "0", "--sweep-interval", "1", "--duration", "60",
         "--json", str(tmp_path / "r.json")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, children = [], {}
    try:
        # Each line ends within seconds; the run itself would last a minute more.
        for line in bench.stdout:
            lines.append(line)
            if " steady " in line:
                break
        children = _children(bench.pid)
        bench.send_signal(signum)
        output, _ = bench.communicate(timeout=60)
        lines.append(output)
    finally:
        if bench.poll() is None:
            bench.send_signal(signal.SIGINT)
            bench.communicate(timeout=60)
        for pid, command in children.items():
            if b"gunicorn" in command and _alive(pid):
                os.killpg(pid, signal.SIGKILL)  # its own session: the bench's kill misses it
    output = "".join(lines)
    assert bench.returncode == 128 + signum, output
    assert sum(b"gunicorn" in command for command in children.values()) == 1, output
    assert len(children) >= 3, output  # the server, the dashboards' and agents' processes
    # Processes the bench left may take a moment to notice it is gone.
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [children[pid] for pid in children if _alive(pid)], output
    name = re.search(r"\((?:sqlite|postgresql) (\S+)\);", output).group(1)
    if database_server_url:
        with psycopg.connect(database_server_url, autocommit=True) as admin:
            assert admin.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                 (name,)).fetchone() is None
    else:
        assert not Path(name).exists()


def test_a_started_gthread_server_has_a_pool_thread_for_every_socket_and_rest(tmp_path):
    args = parse_args(["--start-server", "--nvrs", "3000", "--dashboards", "10"])
    assert args.worker_class == "gthread"  # the default
    for workers in (None, 2):
        server = ServerProcess("sqlite:///unused", tmp_path / "log", scenario_from(args), "key",
                               workers=workers, redis_url="redis://unused" if workers else None)
        # One pool thread per agent and dashboard on each worker (the kernel
        # may hand one worker most of them), with room for REST calls.
        assert int(server.settings["VMS_THREADS"]) >= 3000 + 10 + 8
        assert server.settings["VMS_WORKER_CLASS"] == "gthread"
    gevent = ServerProcess("sqlite:///unused", tmp_path / "log", scenario_from(args), "key",
                           worker_class="gevent")
    assert "VMS_THREADS" not in gevent.settings


def test_a_server_that_takes_no_key_needs_none_and_the_peer_takes_no_server_options(
        monkeypatch, capsys):
    monkeypatch.delenv("VMS_ADMIN_API_KEY", raising=False)
    assert parse_args(["--url", "http://127.0.0.1:3900"]).key is None
    for extra in (["--start-server"], ["--database-url", "postgresql://root@127.0.0.1/x"],
                  ["--workers", "2"]):
        with pytest.raises(SystemExit):
            parse_args(["--peer-node", "/tmp/peer-node", *extra])
        assert "--peer-node runs the peer" in capsys.readouterr().err


def test_a_database_the_bench_cannot_read_fails_the_probe_at_its_start(tmp_path):
    with pytest.raises(sqlite3.OperationalError):
        SqliteProbe(tmp_path / "missing.sqlite").start()


# A stand-in for `node server.js`: the peer's set-up calls (no keys, no
# tokens, no GET /api/nvrs, no deletes), its environment written beside its
# database, SIGTERM a clean stop.
FAKE_NODE = """\
import json, os, signal, sqlite3, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

db = os.environ["DB_PATH"]
assert not os.path.exists(db), "the database is not fresh"
sqlite3.connect(db).execute("CREATE TABLE nvrs (id INTEGER PRIMARY KEY)").connection.commit()
with open(db + ".env.json", "w") as f:
    json.dump({"argv": sys.argv[1:], "cwd": os.getcwd(), **os.environ}, f)
ids = iter(range(1, 10 ** 6))

class Handler(BaseHTTPRequestHandler):
    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/healthz":
            return self.answer(200, {"status": "ok"})
        self.answer(404, {"error": {"code": "not_found"}})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.headers.get("Authorization"):
            return self.answer(400, {"error": {"code": "unexpected_key"}})
        if self.path in ("/api/nvrs", "/api/cameras"):
            return self.answer(201, {"id": next(ids), **body})
        self.answer(404, {"error": {"code": "not_found"}})

    do_DELETE = do_GET

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
server.serve_forever()
"""


def test_the_peer_runs_on_a_fresh_database_with_the_scenario_intervals(tmp_path):
    peer = tmp_path / "peer-node"
    assert "no server.js" in check_peer_directory(peer, sys.executable)
    peer.mkdir()
    (peer / "server.js").write_text("// the peer\n")
    assert "npm install" in check_peer_directory(peer, sys.executable)
    (peer / "node_modules").mkdir()
    assert "not on PATH" in check_peer_directory(peer, "no-such-node-binary")
    node = tmp_path / "node"
    node.write_text(f"#!{sys.executable}\n{FAKE_NODE}")
    node.chmod(0o755)
    assert check_peer_directory(peer, str(node)) is None
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "peer.sqlite").write_text("a previous run's")
    args = parse_args(["--peer-node", str(peer), "--nvrs", "3", "--silent", "0",
                       "--disconnects", "0", "--heartbeat", "2",
                       "--stale-after", "7", "--sweep-interval", "0.5"])
    server = PeerNodeProcess(args.peer_node, workdir, scenario_from(args), node=str(node))
    server.start()
    try:
        env = json.loads((workdir / "peer.sqlite.env.json").read_text())
        assert env["argv"] == ["server.js"] and env["cwd"] == str(peer.resolve())
        assert (env["PORT"], env["HOST"]) == (str(server.port), "127.0.0.1")
        assert env["DB_PATH"] == str(workdir / "peer.sqlite")
        assert (env["VMS_HEARTBEAT_INTERVAL"], env["VMS_STALE_AFTER"],
                env["VMS_SWEEP_INTERVAL"]) == ("2", "7", "0.5")
        # The bench's set-up without a key, the peer's answers without tokens.
        fleet = Fleet(RestClient(server.url, None), "peer")
        nvrs = fleet.create(3, 2)
        assert [nvr["token"] for nvr in nvrs] == [None] * 3
        assert all(len(nvr["camera_ids"]) == 2 for nvr in nvrs)
        with pytest.raises(NotServed):
            fleet.last_seen()
        assert fleet.delete() == 0
        # Its database is where the bench's write probe looks.
        probe = SqliteProbe(server.database_path).start()
        probe.stop()
    finally:
        assert server.stop() == 0
    assert not (workdir / "peer.sqlite").exists()
    assert server.log_counts()["errors"] == 0
