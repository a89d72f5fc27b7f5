"""One writer per socket, and a handler woken by a close from another thread
(``vmsapp.realtime.peer``), on a live server under each worker class."""

import threading
import time

import pytest
from support import ADMIN_KEY, Client, RawPeer, auth, wait_until

# The peer does not touch the database: one backend is enough.
one_backend = pytest.mark.parametrize("own_database_url", ["sqlite"], indirect=True)
WORKER_CLASSES = pytest.mark.parametrize("worker_class", ["gthread", "gevent"])
# Long enough that a handler left waiting for its agent's next message would
# outlast every wait in these tests.
SLOW = {"VMS_HEARTBEAT_INTERVAL": "10", "VMS_STALE_AFTER": "60"}


def silent_agent(live, hostname):
    """An authenticated agent that never answers a close (or a ping) again."""
    agent = RawPeer(live, answering=False)
    agent.send(auth(live, hostname))
    agent.expect_message("auth_ok")
    return agent


def nvr_connections(live):
    return live.api("GET", "/api/stats").json()["nvr_connections"]


@one_backend
@WORKER_CLASSES
def test_a_replaced_connection_that_never_answers_leaves_at_once(make_server, worker_class):
    live = make_server(VMS_WORKER_CLASS=worker_class, **SLOW)
    nvr = live.create_nvr()
    older = silent_agent(live, nvr["hostname"])
    newer = Client(live.ws_url)
    newer.send(auth(live, nvr["hostname"]))
    newer.expect_type("auth_ok")

    assert older.close_code() == 4000
    # Its handler was waiting for a message due in 60 s: the close woke it.
    wait_until(lambda: nvr_connections(live) == 1, timeout=5, message="one connection left")
    newer.close()
    older.close()


@one_backend
@WORKER_CLASSES
def test_a_graceful_stop_does_not_wait_for_agents_that_never_answer(make_server, worker_class):
    live = make_server(VMS_WORKER_CLASS=worker_class, **SLOW)
    agents = [silent_agent(live, live.create_nvr()["hostname"]) for _ in range(3)]

    started = time.monotonic()
    live.stop()

    # Well inside gunicorn's 20 s grace: no handler waited out its agent.
    assert time.monotonic() - started < 10
    assert [agent.close_code() for agent in agents] == [1001] * 3
    assert "Traceback" not in live.log()


@one_backend
@WORKER_CLASSES
def test_pongs_and_pings_never_break_the_frames_of_a_burst_of_broadcasts(make_server,
                                                                         worker_class):
    # Compressed, so a frame cut into by another writer would fail to inflate;
    # the server pings every second meanwhile.
    live = make_server(VMS_WORKER_CLASS=worker_class, VMS_WS_COMPRESSION="true",
                       VMS_WS_PING_INTERVAL="1")
    nvr = live.create_nvr()
    watcher = Client(live.ws_url)  # answers the server's pings as they come
    watcher.send({"type": "dashboard", "token": ADMIN_KEY})
    watcher.expect_type("snapshot")
    assert [e.name for e in watcher.ws.protocol.extensions] == ["permessage-deflate"]
    pinging = threading.Event()

    def ping_the_server():
        while not pinging.is_set():  # the reader thread answers each with a pong
            watcher.ws.ping().wait(5)
            time.sleep(0.002)

    pinger = threading.Thread(target=ping_the_server)
    pinger.start()
    try:
        for n in range(40):  # 40 updates, each broadcast to the watcher
            response = live.api("PATCH", f"/api/nvrs/{nvr['id']}",
                                json={"location": f"{n} " + "x" * 190})
            assert response.status_code == 200
        for n in range(40):
            update = watcher.expect_type("nvr_updated", timeout=15)
            watcher.received.remove(update)
            assert update["nvr"]["location"].startswith(f"{n} ")
    finally:
        pinging.set()
        pinger.join()
    watcher.send({"type": "heartbeat"})  # still open: refused as out of place
    assert watcher.expect_type("error")["code"] == "unexpected_message"
    watcher.close()
