"""The load benchmark (``python -m tools.bench``) as an operator runs it: a
small fleet against a server it starts itself, on each database. Its figures
are not asserted here (speed lives in BENCHMARKS.md); what it counts is."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT

from tools.bench import PRESET, agent_processes_for

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
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                children[int(stat.parent.name)] = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    return children


def test_sigterm_stops_the_server_it_started(tmp_path):
    bench = subprocess.Popen(
        [sys.executable, "-m", "tools.bench", "--start-server", "--nvrs", "5",
         "--dashboards", "1", "--heartbeat", "1", "--stale-after", "3", "--silent", "0",
         "--disconnects", "0",
         "--sweep-interval", "1", "--duration", "60", "--json", str(tmp_path / "r.json")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in bench.stdout:
            lines.append(line)
            if " steady " in line:
                break
        servers = [pid for pid, command in _children(bench.pid).items() if b"gunicorn" in command]
        assert len(servers) == 1, "".join(lines)
        bench.send_signal(signal.SIGTERM)
        lines.extend(bench.stdout)
        assert bench.wait(timeout=60) == 130, "".join(lines)
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
    # The bench reaped it: no such process any more, not even a zombie.
    assert not Path(f"/proc/{servers[0]}").exists(), "".join(lines)
    assert "stopping the server" in "".join(lines)
