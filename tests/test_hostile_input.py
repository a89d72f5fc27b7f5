"""Whatever a client sends: never a 5xx, never a crashed worker or a dropped
bystander, never a changed row where the request was refused (property-based)."""

import json
import threading
import time

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import Client, auth, dashboard, nvr_agent, raw_upgrade, unique, wait_until
from websockets.exceptions import ConnectionClosed

# Hypothesis keeps one server per test across its examples.
EXAMPLES = settings(deadline=None, max_examples=80,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
# No rate limit, and silence long enough for a bystander to sit through every example.
UNLIMITED = {"VMS_MESSAGE_RATE": "1000000", "VMS_MESSAGE_BURST": "1000000",
             "VMS_HEARTBEAT_INTERVAL": "5", "VMS_STALE_AFTER": "120"}

scalars = (st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
           | st.floats(allow_nan=False) | st.text(max_size=40))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=12)
camera_reports = st.lists(st.fixed_dictionaries(
    {"id": json_values | st.integers(),
     "status": json_values | st.sampled_from(["online", "offline"])}),
    max_size=4)
protocol_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["auth", "dashboard", "heartbeat", "heartbeat_ack", "snapshot", ""])},
    optional={"hostname": json_values, "token": json_values,
              "cameras": json_values | camera_reports, "extra": json_values})
frames = st.one_of(
    protocol_like.map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=300),
    st.binary(max_size=300),
    st.integers(min_value=1, max_value=40).map(lambda depth: "[" * depth * 100),
)


def state_of(server, nvr_id):
    nvr = server.nvr(nvr_id)
    return (nvr["status"], nvr["status_version"], nvr["name"], nvr["hostname"],
            len(server.events(nvr_id)))


def test_an_agent_survives_any_frame_and_refused_frames_change_nothing(make_server):
    live = make_server(**UNLIMITED)
    nvr = live.create_nvr()  # no cameras: nothing it sends may change any row
    bystander_nvr = live.create_nvr()
    bystander, _ = nvr_agent(live, bystander_nvr["hostname"])
    agent, _ = nvr_agent(live, nvr["hostname"])
    before = state_of(live, nvr["id"])

    @EXAMPLES
    @given(frame=frames)
    def send(frame):
        agent.send(frame)
        agent.send({"type": "heartbeat"})
        # Every frame is answered (an error, or an ack for a valid heartbeat),
        # and the agent is still connected and heard.
        agent.expect_type("heartbeat_ack")
        agent.received.clear()

    send()
    assert state_of(live, nvr["id"]) == before
    bystander.send({"type": "heartbeat"})
    bystander.expect_type("heartbeat_ack")
    assert "Traceback" not in live.log()


def test_any_first_frame_is_answered_and_closed_without_harm(make_server):
    live = make_server(**UNLIMITED)
    nvr = live.create_nvr(cameras=1)
    before = state_of(live, nvr["id"])

    @settings(EXAMPLES, max_examples=40)
    @given(frame=frames)
    def first(frame):
        client = Client(live.ws_url)
        client.send(frame)
        try:
            message = client.recv()
        except ConnectionClosed:
            return  # a frame over the limits is closed without an answer
        assert message["type"] in ("error", "dashboard_ok"), message
        client.close()

    first()
    assert state_of(live, nvr["id"]) == before
    agent, _ = nvr_agent(live, nvr["hostname"])  # the worker still serves
    agent.close()
    assert "Traceback" not in live.log()


nvr_fields = st.fixed_dictionaries({}, optional={
    "name": json_values, "hostname": json_values | st.just(""), "ip_address": json_values,
    "location": json_values, "status": json_values, "last_seen": json_values,
    "status_version": json_values, "token": json_values, "cameras": json_values})
camera_fields = st.fixed_dictionaries({}, optional={
    "nvr_id": json_values, "name": json_values, "channel": json_values,
    "status": json_values, "id": json_values})
bodies = st.one_of(nvr_fields.map(json.dumps), camera_fields.map(json.dumps),
                   json_values.map(json.dumps), st.binary(max_size=200))


def test_rest_never_fails_and_a_refused_write_changes_nothing(server):
    nvr = server.create_nvr(cameras=1)
    camera = nvr["cameras"][0]
    marker = unique("untouched")
    targets = [("PATCH", f"/api/nvrs/{nvr['id']}"), ("PATCH", f"/api/cameras/{camera['id']}"),
               ("POST", "/api/nvrs"), ("POST", "/api/cameras"),
               ("POST", f"/api/nvrs/{nvr['id']}/token"), ("GET", f"/api/nvrs?q={marker}")]

    def snapshot():
        return (server.api("GET", f"/api/nvrs/{nvr['id']}").json(),
                server.api("GET", "/api/nvrs?limit=1").json()["total"],
                server.api("GET", "/api/cameras?limit=1").json()["total"])

    @settings(EXAMPLES, max_examples=100)
    @given(target=st.sampled_from(targets), body=bodies,
           content_type=st.sampled_from(["application/json", "text/plain", None]))
    def call(target, body, content_type):
        method, path = target
        before = snapshot()
        headers = {"Content-Type": content_type} if content_type else {}
        response = server.api(method, path, data=body, headers=headers)
        assert response.status_code < 500, response.text
        assert response.headers["Content-Type"].startswith("application/json")
        if response.status_code >= 400:
            assert set(response.json()["error"]) >= {"code", "message"}
            assert snapshot() == before
        elif method == "POST" and path == "/api/nvrs":  # a valid NVR: put it back
            server.api("DELETE", f"/api/nvrs/{response.json()['id']}")
        elif method == "POST" and path == "/api/cameras":
            server.api("DELETE", f"/api/cameras/{response.json()['id']}")

    call()


def test_a_garbage_flood_does_not_hold_up_heartbeats_or_broadcasts(server):
    """Bystanders' heartbeats and broadcasts stay prompt while one peer floods
    (the bound is generous: this is about not being starved, not speed)."""
    flooder_nvr = server.create_nvr()
    victim_nvr = server.create_nvr()
    victim, _ = nvr_agent(server, victim_nvr["hostname"])
    watcher = dashboard(server)
    stop = threading.Event()
    sent = []

    def flood():
        while not stop.is_set():
            try:
                client = Client(server.ws_url)
                client.send(auth(server, flooder_nvr["hostname"]))
                while not stop.is_set():
                    client.send("garbage " * 50)
                    sent.append(1)
            except (ConnectionClosed, OSError):
                continue  # closed for misbehaving: come back and do it again

    flooder = threading.Thread(target=flood)
    flooder.start()
    round_trips = []
    try:
        wait_until(lambda: len(sent) > 200, message="the flood to start")
        for _ in range(20):
            started = time.monotonic()
            victim.send({"type": "heartbeat"})
            victim.expect_type("heartbeat_ack")
            victim.received.clear()
            round_trips.append(time.monotonic() - started)
        started = time.monotonic()
        created = server.create_nvr()
        watcher.expect(lambda m: m.get("type") == "nvr_created" and
                       m["nvr"]["id"] == created["id"], what="the broadcast")
        broadcast = time.monotonic() - started
    finally:
        stop.set()
        flooder.join()

    assert max(round_trips) < 1.0, round_trips
    assert broadcast < 1.0
    assert len(sent) > 200


# RFC 6455 §1.3's example: this key's accept value.
RFC_KEY, RFC_ACCEPT = "dGhlIHNhbXBsZSBub25jZQ==", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
VERSION_13 = "Sec-WebSocket-Version: 13"


@pytest.mark.parametrize("headers, status", [
    ([f"Sec-WebSocket-Key: {RFC_KEY}"], 426),
    ([f"Sec-WebSocket-Key: {RFC_KEY}", "Sec-WebSocket-Version: 8"], 426),
    ([VERSION_13], 400),
    (["Sec-WebSocket-Key: not base64!", VERSION_13], 400),
    (["Sec-WebSocket-Key: c2hvcnQ=", VERSION_13], 400),
    (["Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ\xe9=", VERSION_13], 400),
    ([f"Sec-WebSocket-Key: {RFC_KEY}", f"Sec-WebSocket-Key: {RFC_KEY}", VERSION_13], 400),
])
def test_an_upgrade_that_cannot_be_answered_is_refused_in_json(server, headers, status):
    logged_before = len(server.log())
    answered, fields, body = raw_upgrade(server, headers)
    assert answered == status
    assert fields["Content-Type"] == "application/json"
    assert set(json.loads(body)["error"]) >= {"code", "message"}
    if status == 426:  # RFC 6455 §4.4: what to upgrade to
        assert fields["Upgrade"] == "websocket"
        assert fields["Sec-WebSocket-Version"] == "13"
    assert "Traceback" not in server.log()[logged_before:]


def test_a_plain_request_to_the_socket_is_refused_in_json(server):
    response = requests.get(server.url + "/ws", timeout=5)
    assert response.status_code == 400
    assert set(response.json()["error"]) >= {"code", "message"}


def test_an_upgrade_is_answered_with_the_accept_key_and_no_extension(server):
    status, fields, _ = raw_upgrade(server, [
        f"Sec-WebSocket-Key: {RFC_KEY}", VERSION_13,
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"])
    assert status == 101
    assert fields["Sec-WebSocket-Accept"] == RFC_ACCEPT
    assert fields["Upgrade"].lower() == "websocket"
    assert "Sec-WebSocket-Extensions" not in fields  # compression is off by default
