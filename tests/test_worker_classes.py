"""The worker classes gunicorn.conf.py offers serve the same /ws contract.

gevent, the default, is what every other server test runs; gthread reads each
socket on a reader thread of simple-websocket's instead of in the connection's
own greenlet, so the life of a connection is checked under both here."""

import os
import subprocess
import sys
import threading
import time

import pytest
from support import ADMIN_KEY, ROOT, RawPeer, auth, dashboard, nvr_agent, raw_upgrade, wait_until


@pytest.mark.parametrize("worker_class", ["gevent", "gthread"])
def test_a_connection_lives_the_same_life_under_each_worker_class(make_server, worker_class):
    live = make_server(VMS_WORKER_CLASS=worker_class)
    nvr = live.create_nvr(cameras=1)
    # An upgrade wsproto would answer under gthread and the server itself under
    # gevent: refused alike, before either.
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


@pytest.mark.parametrize("worker_class", ["gevent", "gthread"])
def test_connections_outlive_several_ping_intervals_under_each_worker_class(make_server,
                                                                            worker_class):
    # Agents heartbeat every 0.5 s, more often than the 1 s pings: under
    # gevent they get none, under gthread simple-websocket's reader pings them
    # anyway. Dashboards are pinged under both, and answer.
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


def test_under_gevent_agents_heartbeating_often_get_no_pings_and_dashboards_do(make_server):
    live = make_server(VMS_WS_PING_INTERVAL="0.6")  # heartbeats every 0.5 s
    nvr = live.create_nvr()
    agent, watcher = RawPeer(live), RawPeer(live)
    agent.send(auth(live, nvr["hostname"]))
    watcher.send({"type": "dashboard", "token": ADMIN_KEY})

    watching = threading.Thread(target=watcher.serve, args=(2.0,))
    watching.start()
    agent.serve(2.0, heartbeat_every=0.25)
    watching.join()

    assert [m["type"] for m in agent.messages][:2] == ["auth_ok", "heartbeat_ack"]
    assert agent.pings == 0
    assert watcher.pings >= 2


def test_an_unknown_worker_class_is_refused_at_start():
    env = {**os.environ, "VMS_WORKER_CLASS": "sync"}
    done = subprocess.run([sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py",
                           "--check-config", "wsgi:app"], cwd=ROOT, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)

    assert done.returncode != 0
    assert "VMS_WORKER_CLASS='sync': use one of gevent, gthread" in done.stdout + done.stderr
