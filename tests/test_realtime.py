"""/ws end to end: a real gunicorn, real WebSocket clients (SPEC §4, rules 1-6)."""

import json
import re
import signal
import time

import pytest
from support import ADMIN_KEY, Client, auth, dashboard, nvr_agent, unique, wait_until
from websockets.exceptions import InvalidStatus, WebSocketException


def marker(server, dash):
    """Make one more broadcast and wait for it: everything sent before it has arrived."""
    nvr = server.create_nvr(hostname=unique("marker"))
    dash.expect(lambda m: m.get("type") == "nvr_created" and m["nvr"]["id"] == nvr["id"],
                what="the marker")


def statuses(dash, nvr_id):
    return [m for m in dash.received if m.get("type") == "nvr_status" and m["nvr_id"] == nvr_id]


# -- auth and presence --------------------------------------------------------

def test_it_authenticates_an_agent_and_marks_the_nvr_and_cameras_online(server):
    nvr = server.create_nvr(cameras=2)
    dash = dashboard(server)

    agent, ok = nvr_agent(server, nvr["hostname"].upper())  # hostnames match in any case

    assert ok == {"type": "auth_ok", "nvr_id": nvr["id"], "hostname": nvr["hostname"],
                  "name": nvr["name"], "heartbeat_interval": 0.5,
                  "cameras": [{"id": c["id"], "name": c["name"], "channel": c["channel"]}
                              for c in nvr["cameras"]]}
    pushed = dash.expect_type("nvr_status", nvr_id=nvr["id"])
    assert set(pushed) == {"type", "nvr_id", "hostname", "name", "status", "previous_status",
                           "reason", "status_version", "last_seen", "camera_ids", "at"}
    assert (pushed["status"], pushed["previous_status"], pushed["reason"],
            pushed["status_version"]) == ("online", "offline", "connected", 1)
    assert pushed["camera_ids"] == [c["id"] for c in nvr["cameras"]]
    assert pushed["at"].endswith("Z") and pushed["last_seen"].endswith("Z")
    stored = server.nvr(nvr["id"])
    assert stored["status"] == "online"
    assert {c["status"] for c in stored["cameras"]} == {"online"}
    agent.close()


def test_agents_authenticating_together_each_get_their_own_nvr(server):
    """Auths arriving at once share one lookup: each still gets its own answer."""
    nvrs = [server.create_nvr(cameras=n % 3) for n in range(6)]
    clients = [Client(server.ws_url) for _ in range(len(nvrs) + 1)]
    for client, nvr in zip(clients, nvrs):
        client.send(auth(server, nvr["hostname"].upper()))
    clients[-1].send({"type": "auth", "hostname": unique("nobody")})

    for client, nvr in zip(clients, nvrs):
        ok = client.expect_type("auth_ok")
        assert (ok["nvr_id"], ok["hostname"]) == (nvr["id"], nvr["hostname"])
        assert ok["cameras"] == [{"id": c["id"], "name": c["name"], "channel": c["channel"]}
                                 for c in nvr["cameras"]]
    assert clients[-1].expect_type("error")["code"] == "invalid_hostname"
    for client in clients:
        client.close()


@pytest.mark.parametrize("own_database_url", ["sqlite"], indirect=True)  # not storage
def test_sockets_are_uncompressed_unless_compression_is_turned_on(make_server):
    """Clients (websockets, browsers) offer permessage-deflate; it is accepted
    only with VMS_WS_COMPRESSION on."""
    for setting, compressed in (({}, False), ({"VMS_WS_COMPRESSION": "true"}, True)):
        live = make_server(**setting)
        agent, _ = nvr_agent(live, live.create_nvr()["hostname"])
        offered = agent.ws.response.headers.get("Sec-WebSocket-Extensions") or ""
        assert ("permessage-deflate" in offered) is compressed
        agent.send({"type": "heartbeat"})
        agent.expect_type("heartbeat_ack")
        agent.close()
        live.stop()


def test_it_refuses_an_unknown_hostname_with_1008(server):
    client = Client(server.ws_url)
    client.send({"type": "auth", "hostname": unique("nobody")})
    assert client.expect_type("error")["code"] == "invalid_hostname"
    assert client.close_code() == 1008


def test_it_acknowledges_heartbeats_and_keeps_last_seen_current(server):
    nvr = server.create_nvr()
    agent, _ = nvr_agent(server, nvr["hostname"])
    first_seen = server.nvr(nvr["id"])["last_seen"]

    agent.send({"type": "heartbeat"})
    ack = agent.expect_type("heartbeat_ack")

    assert set(ack) == {"type", "server_time"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", ack["server_time"])
    # last_seen is written in batches, at most one heartbeat interval behind.
    wait_until(lambda: server.nvr(nvr["id"])["last_seen"] > first_seen, timeout=10,
               message="last_seen to advance")
    agent.close()


def test_it_applies_camera_statuses_reported_in_heartbeats(server):
    nvr = server.create_nvr(cameras=2)
    dash = dashboard(server)
    agent, _ = nvr_agent(server, nvr["hostname"])
    cam = nvr["cameras"][0]

    agent.send({"type": "heartbeat", "cameras": [{"id": cam["id"], "status": "offline"}]})

    agent.expect_type("heartbeat_ack")
    pushed = dash.expect_type("camera_status", camera_id=cam["id"])
    assert pushed == {"type": "camera_status", "camera_id": cam["id"], "nvr_id": nvr["id"],
                      "status": "offline", "previous_status": "online", "reason": "reported",
                      "at": pushed["at"]}
    assert server.api("GET", f"/api/cameras/{cam['id']}").json()["status"] == "offline"
    agent.close()


def test_it_marks_offline_on_disconnect_with_one_event_and_one_broadcast(server):
    nvr = server.create_nvr(cameras=1)
    dash = dashboard(server)
    agent, _ = nvr_agent(server, nvr["hostname"])
    dash.expect_type("nvr_status", nvr_id=nvr["id"], status="online")

    agent.close()

    offline = dash.expect_type("nvr_status", nvr_id=nvr["id"], status="offline")
    assert (offline["reason"], offline["status_version"]) == ("disconnected", 2)
    marker(server, dash)
    assert len(statuses(dash, nvr["id"])) == 2
    events = server.events(nvr["id"])
    assert [(e["camera_id"] is None, e["to_status"], e["reason"]) for e in events] == [
        (False, "offline", "disconnected"), (True, "offline", "disconnected"),
        (False, "online", "connected"), (True, "online", "connected")]
    assert server.nvr(nvr["id"])["status_version"] == 2


def test_a_dashboard_snapshot_lists_nvrs_and_cameras(server):
    nvr = server.create_nvr(cameras=1)
    client = Client(server.ws_url)
    client.send({"type": "dashboard", "token": ADMIN_KEY})

    assert client.recv() == {"type": "dashboard_ok"}
    snapshot = client.recv()
    assert snapshot["type"] == "snapshot"
    [listed] = [n for n in snapshot["nvrs"] if n["id"] == nvr["id"]]
    # An NVR as the REST API gives it, without its cameras.
    assert listed == {k: v for k, v in server.nvr(nvr["id"]).items() if k != "cameras"}
    assert listed["status"] == "offline"
    assert {"id": nvr["cameras"][0]["id"], "nvr_id": nvr["id"], "status": "offline"} in \
        snapshot["cameras"]


def test_dashboards_subscribing_together_each_see_every_change_after_their_snapshot(server):
    """Snapshots asked for at once are read once and shared: each dashboard's
    snapshot plus what it is sent afterwards is still the whole story."""
    nvrs = [server.create_nvr(cameras=1) for _ in range(4)]
    clients = [Client(server.ws_url) for _ in range(6)]
    for client in clients:
        client.send({"type": "dashboard", "token": ADMIN_KEY})
    agents = [nvr_agent(server, nvr["hostname"])[0] for nvr in nvrs]

    for client in clients:
        snapshot = client.expect_type("snapshot")
        status = {n["id"]: n["status"] for n in snapshot["nvrs"]}
        for nvr in nvrs:
            if status[nvr["id"]] == "offline":
                client.expect_type("nvr_status", nvr_id=nvr["id"], status="online")
        client.close()
    for agent in agents:
        agent.close()


# -- rule 1: the first message -------------------------------------------------

def test_it_closes_a_socket_that_does_not_authenticate_in_time(server):
    client = Client(server.ws_url)
    assert client.close_code() == 1008
    assert client.received[-1]["code"] == "auth_timeout"


@pytest.mark.parametrize("first", [{"type": "heartbeat"}, "not json", {"type": "nonsense"},
                                   {"type": "auth"}, [1, 2]])
def test_it_closes_a_socket_whose_first_message_is_not_auth_or_dashboard(server, first):
    client = Client(server.ws_url)
    client.send(first if isinstance(first, str) else json.dumps(first))
    assert client.expect_type("error")["code"]
    assert client.close_code() == 1008


# -- rule 2: bad messages --------------------------------------------------------

@pytest.mark.parametrize("message, code", [
    ("{not json", "invalid_json"),
    ("[]", "invalid_message"),
    ('{"type": 5}', "invalid_message"),
    ('{"type": "teleport"}', "unknown_type"),
    ('{"type": "auth", "hostname": "again"}', "unexpected_message"),
    ('{"type": "heartbeat", "cameras": "all"}', "invalid_message"),
    ('{"type": "heartbeat", "cameras": [{"id": "1", "status": "online"}]}', "invalid_message"),
    ('{"type": "heartbeat", "cameras": [{"id": 1, "status": "on fire"}]}', "invalid_message"),
    ('{"type": "heartbeat", "cameras": [{"id": 2147483648, "status": "online"}]}',
     "invalid_message"),
    ('{"type": "heartbeat", "cameras": [{"id": 1180591620717411303424, "status": "online"}]}',
     "invalid_message"),
    (b"\x00\x01binary", "binary_not_supported"),
])
def test_it_answers_a_bad_message_with_an_error_and_stays_open(server, message, code):
    nvr = server.create_nvr()
    agent, _ = nvr_agent(server, nvr["hostname"])
    logged_before = len(server.log())

    agent.send(message)

    assert agent.expect_type("error")["code"] == code
    agent.send({"type": "heartbeat"})
    agent.expect_type("heartbeat_ack")
    assert server.nvr(nvr["id"])["status"] == "online"
    assert "Traceback" not in server.log()[logged_before:]
    agent.close()


def test_it_closes_a_peer_that_keeps_misbehaving(server):
    nvr = server.create_nvr()
    agent, _ = nvr_agent(server, nvr["hostname"])
    for _ in range(10):
        agent.send("garbage")
    assert agent.close_code() == 1008


def test_it_closes_a_frame_over_64_kib_with_1009_and_others_carry_on(server):
    bystander_nvr = server.create_nvr()
    bystander, _ = nvr_agent(server, bystander_nvr["hostname"])
    nvr = server.create_nvr()
    agent, _ = nvr_agent(server, nvr["hostname"])

    agent.send(json.dumps({"type": "heartbeat", "pad": "x" * (64 * 1024)}))

    assert agent.close_code() == 1009
    bystander.send({"type": "heartbeat"})
    bystander.expect_type("heartbeat_ack")
    bystander.close()


# -- rule 3: newest connection wins --------------------------------------------

def test_a_newer_connection_replaces_the_older_with_4000_and_the_nvr_stays_online(server):
    nvr = server.create_nvr()
    dash = dashboard(server)
    old, _ = nvr_agent(server, nvr["hostname"])

    new, _ = nvr_agent(server, nvr["hostname"])

    assert old.close_code() == 4000
    new.send({"type": "heartbeat"})
    new.expect_type("heartbeat_ack")
    marker(server, dash)
    assert [m["status"] for m in statuses(dash, nvr["id"])] == ["online"]
    stored = server.nvr(nvr["id"])
    assert (stored["status"], stored["status_version"]) == ("online", 1)
    new.close()


def test_racing_reconnects_leave_a_consistent_history(server):
    """Rule 5: however connections overlap, events alternate and match status_version."""
    nvr = server.create_nvr(cameras=1)
    clients = []
    for _ in range(6):
        client = Client(server.ws_url)
        client.send(auth(server, nvr["hostname"]))
        clients.append(client)
        if len(clients) % 2 == 0:
            clients[-2].close()
    # Which auth the server handles last is a race too: any may end up the holder.
    clients[-1].expect_type("auth_ok")

    def settled():
        """NVR row and history read with no transition in between."""
        before = server.nvr(nvr["id"])
        history = [e for e in reversed(server.events(nvr["id"])) if e["camera_id"] is None]
        return (before, history) if server.nvr(nvr["id"]) == before else None

    stored, nvr_events = wait_until(settled, message="a quiet moment")
    assert len(nvr_events) == stored["status_version"]
    for before, after in zip(nvr_events, nvr_events[1:], strict=False):
        assert before["to_status"] == after["from_status"]
    assert nvr_events[-1]["to_status"] == stored["status"]
    for client in clients:
        client.close()


# -- rule 4: silence ------------------------------------------------------------

def test_a_silent_agent_is_marked_stale_and_closed_with_4001(server):
    nvr = server.create_nvr()
    dash = dashboard(server)
    # The client library keeps answering and sending pings: they must not count.
    agent, _ = nvr_agent(server, nvr["hostname"], ping_interval=0.2)
    started = time.monotonic()

    assert agent.close_code() == 4001

    elapsed = time.monotonic() - started
    stale = dash.expect_type("nvr_status", nvr_id=nvr["id"], status="offline")
    assert stale["reason"] == "stale"
    assert 1.4 <= elapsed <= 1.5 + 1.5, elapsed


def test_the_sweep_catches_an_nvr_whose_worker_died(server):
    nvr = server.create_nvr()
    dash = dashboard(server)
    # As a dead worker leaves it: online, nobody connected, last_seen going old.
    server.sql("UPDATE nvrs SET status = 'online', status_version = 1, last_seen = :t "
               "WHERE id = :id", t="2020-01-01 00:00:00", id=nvr["id"])

    stale = dash.expect_type("nvr_status", nvr_id=nvr["id"], status="offline", timeout=10)

    assert (stale["reason"], stale["status_version"]) == ("stale", 2)
    assert server.nvr(nvr["id"])["status"] == "offline"


# -- rule 6: graceful stop --------------------------------------------------------

def test_a_graceful_stop_closes_with_1001_and_marks_nobody_offline(make_server):
    first = make_server()
    nvr = first.create_nvr(cameras=1)
    agent, _ = nvr_agent(first, nvr["hostname"])
    dash = dashboard(first)

    first.stop()

    assert agent.close_code() == 1001
    assert dash.close_code() == 1001
    [stored] = first.sql("SELECT status, status_version FROM nvrs WHERE id = :id", id=nvr["id"])
    assert (stored["status"], stored["status_version"]) == ("online", 1)
    # The agent reconnects to the new process in time: still online, no transition.
    second = make_server(VMS_HEARTBEAT_INTERVAL="2", VMS_STALE_AFTER="20")
    agent, _ = nvr_agent(second, nvr["hostname"])
    assert second.nvr(nvr["id"])["status_version"] == 1
    agent.close()
    wait_until(lambda: second.nvr(nvr["id"])["status"] == "offline", message="offline")


def test_a_stopping_server_refuses_new_sockets_instead_of_accepting_them(make_server):
    live = make_server()
    nvr = live.create_nvr()
    agent, _ = nvr_agent(live, nvr["hostname"])
    live.process.send_signal(signal.SIGTERM)
    assert agent.close_code() == 1001

    accepted, refused = 0, set()
    while live.process.poll() is None:  # until the process is gone: every attempt counts
        try:
            Client(live.ws_url).close()
            accepted += 1
        except InvalidStatus as error:
            refused.add(error.response.status_code)
        except (OSError, WebSocketException):
            refused.add("no connection")  # refused, or reset as the process exits
        time.sleep(0.01)

    assert accepted == 0
    assert refused <= {503, "no connection"}


def test_an_agent_that_does_not_come_back_after_a_restart_is_caught_stale(make_server):
    first = make_server()
    nvr = first.create_nvr()
    agent, _ = nvr_agent(first, nvr["hostname"])
    first.stop()
    assert agent.close_code() == 1001

    second = make_server()

    wait_until(lambda: second.nvr(nvr["id"])["status"] == "offline",
               message="the sweep to catch the NVR")
    assert second.events(nvr["id"])[0]["reason"] == "stale"


# -- transactions ----------------------------------------------------------------

@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # pg_stat_activity
def test_no_transaction_stays_open_while_connections_wait(server):
    nvrs = [server.create_nvr(cameras=1) for _ in range(3)]
    agents = [nvr_agent(server, n["hostname"])[0] for n in nvrs]
    dash = dashboard(server)
    for agent in agents:
        agent.send({"type": "heartbeat", "cameras": []})
        agent.expect_type("heartbeat_ack")

    # A transaction caught between its statement and its commit (the last_seen
    # flush, every 0.25 s) is not one left open: only a wait of a second counts.
    time.sleep(1.5)
    [row] = server.sql(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() "
        "AND state LIKE 'idle in transaction%' AND state_change < now() - interval '1 second' "
        "AND pid <> pg_backend_pid()")
    assert row["n"] == 0
    for agent in agents:
        agent.close()
    dash.close()
