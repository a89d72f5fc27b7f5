"""The command-line simulators (SPEC §6), run as real processes against a live server."""

import json
import os
import subprocess
import sys
import threading
from datetime import datetime

import pytest
from support import ADMIN_KEY, ROOT, free_port, nvr_agent, unique, wait_until

from tools.dashboard_sim import describe


def agent_sim(server, nvr, *args):
    """nvr_sim for an NVR that ``server.create_nvr`` made, with its token."""
    return Sim("nvr_sim", nvr["hostname"], "--url", server.ws_url,
               "--token", server.tokens[nvr["hostname"].lower()], *args)


def dashboard_sim(server, *args):
    """dashboard_sim with the test servers' admin key."""
    return Sim("dashboard_sim", "--url", server.ws_url, "--token", ADMIN_KEY, *args)


class Sim:
    """A simulator subprocess whose output (stdout and stderr) is collected line by line."""

    def __init__(self, module, *args):
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for name in ("VMS_URL", "VMS_TOKEN", "VMS_API_KEY"):
            env.pop(name, None)  # the command line alone configures the simulator
        command = [sys.executable, "-m", f"tools.{module}", *map(str, args)]
        self.name = module
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env,
            # Under pytest-xdist, stdin is the worker's channel: never hand it on.
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        self.lines = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self):
        return "\n".join(self.lines)

    def wait_for_line(self, *words, timeout=30.0):
        """The first output line containing all ``words``."""
        def found():
            return next((line for line in self.lines if all(w in line for w in words)), None)
        return wait_until(found, timeout=timeout,
                          message=f"a line with {words}; output so far:\n{self.output}")

    def count_lines(self, *words):
        return sum(1 for line in self.lines if all(w in line for w in words))

    def wait(self, timeout=30.0):
        """The exit status, once the process has ended by itself."""
        status = self.process.wait(timeout)
        self._reader.join(5)
        return status

    def stop(self):
        """Terminate (SIGTERM: a clean stop) if still running; kill if it hangs."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(5)
        # Shown by pytest when the test fails: what the simulator saw.
        print(f"--- {self.name} output ---\n{self.output}")
        return self.process.returncode


def parse_time(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def status_of(server, nvr_id):
    return server.nvr(nvr_id)["status"]


def camera_statuses(server, nvr_id):
    return sorted(camera["status"] for camera in server.nvr(nvr_id)["cameras"])


def test_it_brings_its_nvr_online_and_offline_again_when_terminated(server):
    nvr = server.create_nvr(cameras=2)
    sim = agent_sim(server, nvr)
    try:
        wait_until(lambda: status_of(server, nvr["id"]) == "online", message="NVR online")
        line = sim.wait_for_line(nvr["hostname"], "authenticated")
        assert f"NVR {nvr['id']}" in line and "2 camera(s)" in line
        # It stays online well past VMS_STALE_AFTER (1.5 s) because it keeps
        # heartbeating: last_seen moves only when the agent sends something.
        connected_at = parse_time(server.events(nvr["id"])[-1]["at"])
        wait_until(lambda: (parse_time(server.nvr(nvr["id"])["last_seen"]) - connected_at
                            ).total_seconds() >= 2.5, message="heartbeats for 2.5 s")
        assert status_of(server, nvr["id"]) == "online"
        assert not [e for e in server.events(nvr["id"]) if e["reason"] == "stale"]
        assert sim.process.poll() is None
        assert sim.stop() == 0
        wait_until(lambda: status_of(server, nvr["id"]) == "offline", message="NVR offline")
        assert server.events(nvr["id"])[0]["reason"] == "disconnected"
    finally:
        sim.stop()


def test_it_reports_the_first_k_cameras_offline(server):
    nvr = server.create_nvr(cameras=3)
    sim = agent_sim(server, nvr, "--offline-cameras", 1)
    try:
        wait_until(lambda: camera_statuses(server, nvr["id"]) == ["offline", "online", "online"],
                   message="one camera offline, two online")
        first = min(camera["id"] for camera in nvr["cameras"])
        cameras = {c["id"]: c["status"] for c in server.nvr(nvr["id"])["cameras"]}
        assert cameras[first] == "offline"
        assert status_of(server, nvr["id"]) == "online"
    finally:
        sim.stop()


def test_it_simulates_count_agents_named_after_the_prefix(server):
    prefix = unique("fleet")
    nvrs = [server.create_nvr(hostname=f"{prefix}-{n}") for n in (1, 2, 3)]
    tokens = [arg for n in nvrs for arg in ("--token", server.tokens[n["hostname"].lower()])]
    sim = Sim("nvr_sim", prefix, "--url", server.ws_url, "--count", 3, *tokens)
    try:
        wait_until(lambda: all(status_of(server, n["id"]) == "online" for n in nvrs),
                   message="three NVRs online")
        wait_until(lambda: sim.count_lines("authenticated") == 3, message="three log lines")
        assert {line.split()[2] for line in sim.lines if "authenticated" in line} == {
            f"{n['hostname']}:" for n in nvrs}
    finally:
        sim.stop()
        print("--- server log about them ---", *(
            line for line in server.log().splitlines() if prefix in line), sep="\n")
    wait_until(lambda: all(status_of(server, n["id"]) == "offline" for n in nvrs),
               message="three NVRs offline")


def test_it_exits_non_zero_on_an_unknown_hostname(server):
    sim = Sim("nvr_sim", unique("nobody"), "--url", server.ws_url, "--token", "some-token",
              "--duration", 30)
    try:
        assert sim.wait() != 0
        assert "invalid_hostname" in sim.output
        assert sim.count_lines("connected to") == 1  # gave up instead of retrying
    finally:
        sim.stop()


def test_it_exits_when_its_nvr_is_deleted(server):
    nvr = server.create_nvr()
    sim = agent_sim(server, nvr, "--duration", 30)
    try:
        sim.wait_for_line("authenticated")
        assert server.api("DELETE", f"/api/nvrs/{nvr['id']}").status_code == 204
        assert sim.wait() != 0
        assert "deleted" in sim.output
    finally:
        sim.stop()


def test_it_stops_by_itself_after_the_duration(server):
    nvr = server.create_nvr()
    sim = agent_sim(server, nvr, "--duration", 1)
    try:
        assert sim.wait() == 0
        assert sim.count_lines("authenticated") == 1
        wait_until(lambda: status_of(server, nvr["id"]) == "offline", message="NVR offline")
    finally:
        sim.stop()


def test_it_reconnects_when_the_server_restarts(make_server):
    live = make_server()
    nvr = live.create_nvr()
    sim = agent_sim(live, nvr)
    try:
        sim.wait_for_line("authenticated")
        live.stop()  # graceful: closes with 1001, the NVR stays online
        sim.wait_for_line("disconnected", "1001")
        live.start()  # same port
        wait_until(lambda: sim.count_lines("authenticated") == 2, timeout=30,
                   message=f"a second authentication; output:\n{sim.output}")
        assert sim.count_lines("reconnecting in") >= 1
        assert status_of(live, nvr["id"]) == "online"
    finally:
        sim.stop()


def test_it_keeps_retrying_while_the_server_is_unreachable():
    url = f"ws://127.0.0.1:{free_port()}/ws"  # nothing listens there
    sim = Sim("nvr_sim", unique(), "--url", url, "--duration", 2)
    try:
        assert sim.wait() == 0
        assert sim.count_lines("cannot connect") >= 2
        assert sim.count_lines("reconnecting in") >= 2
    finally:
        sim.stop()


def test_it_prints_a_snapshot_and_then_each_status_change(server):
    nvr = server.create_nvr(cameras=2)
    dash = dashboard_sim(server)
    agent = None
    try:
        dash.wait_for_line("snapshot", "NVRs (", "cameras (")
        agent, _ = nvr_agent(server, nvr["hostname"])
        line = dash.wait_for_line("nvr_status", nvr["hostname"], "offline -> online")
        assert f"(id {nvr['id']})" in line and "(connected)" in line
        ids = ",".join(str(c["id"]) for c in nvr["cameras"])
        assert f"cameras [{ids}]" in line
        agent.close()
        dash.wait_for_line("nvr_status", nvr["hostname"], "online -> offline", "(disconnected)")
    finally:
        if agent:
            agent.close()
        dash.stop()


def test_it_prints_raw_json_lines_with_the_json_flag(server):
    dash = dashboard_sim(server, "--json", "--duration", 1)
    try:
        assert dash.wait() == 0
        messages = [json.loads(line) for line in dash.lines if line.startswith("{")]
        assert [m["type"] for m in messages[:2]] == ["dashboard_ok", "snapshot"]
    finally:
        dash.stop()


def test_it_exits_non_zero_when_its_token_is_refused(server):
    nvr = server.create_nvr()
    sim = Sim("nvr_sim", nvr["hostname"], "--url", server.ws_url, "--token", "wrong",
              "--duration", 30)
    try:
        assert sim.wait() != 0
        assert "invalid_token" in sim.output
        assert sim.count_lines("connected to") == 1
        assert status_of(server, nvr["id"]) == "offline"
    finally:
        sim.stop()


def test_it_gives_up_when_the_dashboard_key_is_refused(server):
    dash = Sim("dashboard_sim", "--url", server.ws_url, "--token", "wrong", "--duration", 30)
    try:
        assert dash.wait() != 0
        assert "unauthorized" in dash.output
        assert dash.count_lines("connected to") == 1
    finally:
        dash.stop()


def test_it_resubscribes_the_dashboard_when_the_server_restarts(make_server):
    live = make_server()
    dash = dashboard_sim(live)
    try:
        dash.wait_for_line("snapshot")
        live.stop()
        dash.wait_for_line("disconnected", "1001")
        live.start()
        wait_until(lambda: dash.count_lines("snapshot") == 2, timeout=30,
                   message=f"a second snapshot; output:\n{dash.output}")
    finally:
        dash.stop()


@pytest.mark.parametrize("message, expected", [
    ({"type": "nvr_status", "nvr_id": 1, "hostname": "nvr-lobby", "name": "Lobby",
      "status": "online", "previous_status": "offline", "reason": "connected",
      "status_version": 3, "last_seen": None, "camera_ids": [1, 2, 3, 4], "at": None},
     "nvr_status     nvr-lobby (id 1) offline -> online (connected) v3 cameras [1,2,3,4]"),
    ({"type": "snapshot", "nvrs": [{"status": "online"}, {"status": "offline"}],
      "cameras": [{"status": "online"}, {"status": "offline"}, {"status": "offline"}]},
     "snapshot       2 NVRs (1 online), 3 cameras (1 online)"),
    ({"type": "camera_status", "camera_id": 5, "nvr_id": 2, "status": "offline",
      "previous_status": "online", "reason": "reported", "at": None},
     "camera_status  camera 5 of NVR 2 online -> offline (reported)"),
    ({"type": "nvr_deleted", "nvr_id": 7}, "nvr_deleted    NVR 7"),
    ({"type": "error", "code": "unauthorized", "message": "No key."},
     "error          unauthorized: No key."),
    ({"type": "something_new", "x": 1}, '{"type":"something_new","x":1}'),
    ({"type": "nvr_status"}, '{"type":"nvr_status"}'),
])
def test_it_describes_each_message_on_one_readable_line(message, expected):
    at = datetime(2024, 1, 1, 12, 1, 2, 345000)
    assert describe(message, at=at) == f"12:01:02.345 {expected}"
