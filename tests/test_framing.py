"""WebSocket framing as RFC 6455 asks, frame by frame, from a raw socket: what
a client library would never send (fragments around a ping, broken UTF-8,
unmasked frames) and what it does for you (pongs, close replies)."""

import json

import pytest
from support import ADMIN_KEY, RawPeer, auth, dashboard, nvr_agent, raw_upgrade
from websockets.frames import Close, Opcode

from vmsapp.realtime.routes import CLOSE_REPLY_WAIT


@pytest.fixture
def raw(server):
    peers = []

    def connect():
        peers.append(RawPeer(server))
        return peers[-1]

    yield connect
    for peer in peers:
        peer.close()


def authenticated(server, raw):
    nvr = server.create_nvr()
    agent = raw()
    agent.send_text(json.dumps(auth(server, nvr["hostname"])))
    agent.expect_message("auth_ok")
    return agent


def test_a_message_in_fragments_around_a_ping_is_read_whole_and_the_ping_answered(server, raw):
    nvr = server.create_nvr()
    agent = raw()
    text = json.dumps(auth(server, nvr["hostname"]))

    agent.send_frame(Opcode.TEXT, text[:7], fin=False)
    agent.send_frame(Opcode.PING, b"between")  # control frames may come between fragments
    agent.send_frame(Opcode.CONT, text[7:20], fin=False)
    agent.send_frame(Opcode.CONT, text[20:])

    pong = agent.expect(lambda f: f.opcode is Opcode.PONG, what="a pong")
    assert pong.data == b"between"
    assert agent.expect_message("auth_ok")["hostname"] == nvr["hostname"]


def test_a_character_split_between_fragments_is_read_whole(server, raw):
    agent = authenticated(server, raw)
    encoded = '{"type": "h\u00e9artbeat"}'.encode()
    split = encoded.index(b"\xc3") + 1  # between the two bytes of "é"

    agent.send_frame(Opcode.TEXT, encoded[:split], fin=False)
    agent.send_frame(Opcode.CONT, encoded[split:])

    error = agent.expect_message("error")
    assert "h\u00e9artbeat" in error["message"]
    agent.send_text('{"type": "heartbeat"}')
    agent.expect_message("heartbeat_ack")


@pytest.mark.parametrize("frames", [
    [(Opcode.TEXT, b'{"type": "heartbeat"}\xff', True)],
    [(Opcode.TEXT, b'{"type": "\xc3', False), (Opcode.CONT, b'(heartbeat"}', True)],
], ids=["whole", "fragmented"])
def test_text_that_is_not_utf8_is_closed_with_1007(server, raw, frames):
    agent = authenticated(server, raw)

    for opcode, data, fin in frames:
        agent.send_frame(opcode, data, fin)

    assert agent.close_code() == 1007


def hand_made_frame(opcode, payload, fin=True, mask=True):
    """A short frame built byte by byte: websockets refuses to build broken ones."""
    assert len(payload) < 126
    head = bytes([(0x80 if fin else 0) | opcode, (0x80 if mask else 0) | len(payload)])
    return head + (b"\0\0\0\0" if mask else b"") + payload  # a zero mask changes nothing


@pytest.mark.parametrize("frame", [
    hand_made_frame(Opcode.TEXT, b'{"type": "heartbeat"}', mask=False),  # clients must mask
    hand_made_frame(Opcode.CONT, b'{"type": "heartbeat"}'),  # continues nothing
    hand_made_frame(Opcode.PING, b"", fin=False),  # control frames cannot be fragmented
    hand_made_frame(0x3, b"x"),  # a reserved opcode
], ids=["unmasked", "stray continuation", "fragmented ping", "reserved opcode"])
def test_a_frame_breaking_the_protocol_is_closed_with_1002(server, raw, frame):
    agent = authenticated(server, raw)

    agent.sock.sendall(frame)

    assert agent.close_code() == 1002
    # The server shuts its side at once: it does not wait out its wait for our
    # close frame, which it no longer reads.
    assert agent.ended_within(CLOSE_REPLY_WAIT / 2)


def test_a_close_is_echoed_then_the_server_ends_the_connection(server, raw):
    agent = authenticated(server, raw)

    agent.send_frame(Opcode.CLOSE, Close(1000, "bye").serialize())

    assert agent.close_code() == 1000
    assert agent.ended_within(5)


# Framing does not touch the database: a server of their own on one backend is enough.
one_backend = pytest.mark.parametrize("own_database_url", ["sqlite"], indirect=True)


@one_backend
def test_a_dashboard_that_stops_answering_pings_is_closed_and_one_that_answers_is_not(
        make_server):
    live = make_server(VMS_WS_PING_INTERVAL="0.5")
    silent, answering = RawPeer(live, answering=False), RawPeer(live)
    try:
        # The answering one last, so that it reads from here on without a pause.
        for dash in silent, answering:
            dash.send_text(json.dumps({"type": "dashboard", "token": ADMIN_KEY}))
            dash.expect_message("snapshot")

        # Reading (and so answering) until the third ping: well past the
        # second, when the silent dashboard's missing pong closes it.
        answering.expect(lambda _: sum(f.opcode is Opcode.PING for f in answering.frames) >= 3,
                         what="three pings")

        assert silent.close_code() == 1008
        assert not any(frame.opcode is Opcode.CLOSE for frame in answering.frames)
    finally:
        answering.close()
        silent.close()


def test_compression_is_declined_unless_turned_on(server):
    nvr = server.create_nvr()
    agent, _ = nvr_agent(server, nvr["hostname"])  # offers permessage-deflate

    assert agent.ws.protocol.extensions == []
    agent.close()


@one_backend
def test_with_compression_on_frames_flow_compressed(make_server):
    live = make_server(VMS_WS_COMPRESSION="true")
    nvr = live.create_nvr()
    dash = dashboard(live)
    agent, _ = nvr_agent(live, nvr["hostname"])

    assert [extension.name for extension in agent.ws.protocol.extensions] == \
        ["permessage-deflate"]
    agent.send({"type": "heartbeat"})
    agent.expect_type("heartbeat_ack")
    dash.expect_type("nvr_status", nvr_id=nvr["id"], status="online")
    newer, _ = nvr_agent(live, nvr["hostname"])
    assert agent.close_code() == 4000
    newer.close()
    dash.close()


@one_backend
def test_with_compression_on_an_offer_it_cannot_parse_is_refused_before_the_upgrade(
        make_server):
    live = make_server(VMS_WS_COMPRESSION="true")

    status, _, body = raw_upgrade(live, [
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=x"])

    assert status == 400
    assert json.loads(body)["error"]["code"] == "bad_request"
    assert "Traceback" not in live.log()
