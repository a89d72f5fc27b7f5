"""The worker classes gunicorn.conf.py offers serve the same /ws contract.

gthread, the default, is what every other server test runs; under gevent
simple-websocket's reader is a greenlet and every wait yields to the event
loop, so the life of a connection is checked under both here."""

import os
import subprocess
import sys
import time

import pytest
from support import ROOT, dashboard, nvr_agent, raw_upgrade, wait_until


@pytest.mark.parametrize("worker_class", ["gthread", "gevent"])
def test_a_connection_lives_the_same_life_under_each_worker_class(make_server, worker_class):
    live = make_server(VMS_WORKER_CLASS=worker_class)
    nvr = live.create_nvr(cameras=1)
    # Upgrades wsproto cannot answer: refused in JSON before it sees them.
    key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="
    assert raw_upgrade(live, [key, "Sec-WebSocket-Version: 13"], host=False)[0] == 400
    assert raw_upgrade(live, [key, "Sec-WebSocket-Version: 12"])[0] == 426
    dash = dashboard(live)

    first, ok = nvr_agent(live, nvr["hostname"])
    assert [c["id"] for c in ok["cameras"]] == [nvr["cameras"][0]["id"]]
    dash.expect_type("nvr_status", nvr_id=nvr["id"], reason="connected")
    first.send({"type": "heartbeat"})
    first.expect_type("heartbeat_ack")

    # Newest wins (4000), then the newer one falls silent (4001, stale).
    second, _ = nvr_agent(live, nvr["hostname"])
    assert first.close_code() == 4000
    assert second.close_code() == 4001
    dash.expect_type("nvr_status", nvr_id=nvr["id"], reason="stale")

    # A clean close is a disconnect; a graceful stop closes everyone with 1001.
    third, _ = nvr_agent(live, nvr["hostname"])
    dash.expect_type("nvr_status", nvr_id=nvr["id"], status_version=3)
    third.close()
    dash.expect_type("nvr_status", nvr_id=nvr["id"], reason="disconnected")
    wait_until(lambda: live.nvr(nvr["id"])["status"] == "offline", message="offline")
    fourth, _ = nvr_agent(live, nvr["hostname"])
    live.stop()
    assert fourth.close_code() == 1001
    assert dash.close_code() == 1001


@pytest.mark.parametrize("worker_class", ["gthread", "gevent"])
def test_connections_outlive_several_ping_intervals_under_each_worker_class(make_server,
                                                                            worker_class):
    # simple-websocket's reader pings agents and dashboards every second;
    # both answer, and neither is closed for it.
    live = make_server(VMS_WORKER_CLASS=worker_class, VMS_WS_PING_INTERVAL="1")
    nvr = live.create_nvr()
    dash = dashboard(live)
    agent, _ = nvr_agent(live, nvr["hostname"])
    dash.expect_type("nvr_status", nvr_id=nvr["id"], reason="connected")

    for _ in range(10):  # 2.5 s of heartbeats, past two pings
        agent.send({"type": "heartbeat"})
        agent.expect_type("heartbeat_ack")
        time.sleep(0.25)  # the agent's pace, not a wait for the server

    assert live.nvr(nvr["id"])["status"] == "online"
    agent.close()
    dash.expect_type("nvr_status", nvr_id=nvr["id"], reason="disconnected")
    assert "Traceback" not in live.log()


def test_an_unknown_worker_class_is_refused_at_start():
    env = {**os.environ, "VMS_WORKER_CLASS": "sync"}
    done = subprocess.run([sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py",
                           "--check-config", "wsgi:app"], cwd=ROOT, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)

    assert done.returncode != 0
    assert "VMS_WORKER_CLASS='sync': use one of gthread, gevent" in done.stdout + done.stderr
