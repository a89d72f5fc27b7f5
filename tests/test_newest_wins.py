"""Newest wins (SPEC §4 rules 3 and 5), end to end: agents of one NVR
authenticating at the same moment leave exactly one connection open, closing
the others 4000, with one transition and one broadcast, on one worker and on
two sharing Redis."""

import threading

import pytest
from support import Client, auth, dashboard, unique, wait_until
from websockets.exceptions import ConnectionClosed

from vmsapp.realtime import protocol

ROUNDS = 20
AGENTS = 5
# Long enough that the connection a round leaves open is not stale by the
# next round, however busy the machine.
SLOW_HEARTBEATS = {"VMS_HEARTBEAT_INTERVAL": "2", "VMS_STALE_AFTER": "8"}


@pytest.fixture(params=["1 worker", "2 workers on Redis"])
def live(request, make_server):
    """One server for all the rounds of a test, with one worker or two."""
    if request.param == "1 worker":
        return make_server(**SLOW_HEARTBEATS)
    redis_url = request.getfixturevalue("redis_url")
    return make_server(REDIS_URL=redis_url, WEB_CONCURRENCY="2",
                       VMS_REDIS_PREFIX=unique("test"), **SLOW_HEARTBEATS)


def test_agents_of_one_nvr_authenticating_together_leave_exactly_one_connection(live):
    watcher = dashboard(live)
    nvr = live.create_nvr()
    went_online = [nvr]  # the NVRs each expected to move online exactly once
    held = None          # the connection the last round left open
    failed = []
    for round_number in range(1, ROUNDS + 1):
        try:
            held = _round(live, nvr, held)
        except (AssertionError, ConnectionClosed) as error:
            failed.append(f"round {round_number}: {error}")
            # What a failed round left behind is unknown: go on with a fresh NVR.
            nvr, held = live.create_nvr(), None
            went_online.append(nvr)
    assert not failed, f"{len(failed)} of {ROUNDS} rounds failed:\n" + "\n".join(failed)

    marker = live.create_nvr()
    # Every broadcast of the rounds was published before the marker's.
    watcher.expect(lambda m: m.get("type") == "nvr_created" and m["nvr"]["id"] == marker["id"])
    for online in went_online:
        pushed = [(m["status"], m["reason"]) for m in watcher.received
                  if m.get("type") == "nvr_status" and m["nvr_id"] == online["id"]]
        assert pushed == [("online", "connected")]
    held.close()
    # Every connection closed, whenever in its auth: none left counted.
    wait_until(lambda: live.api("GET", "/api/stats").json()["nvr_connections"] == 0,
               message="no NVR connection left")
    watcher.close()


def _round(live, nvr, held):
    """``AGENTS`` agents of ``nvr`` authenticate at once while ``held`` (the
    previous round's survivor, or None) is open; the one left open."""
    agents = [Client(live.ws_url) for _ in range(AGENTS)]
    start = threading.Barrier(AGENTS)

    def send_auth(agent):
        start.wait()
        agent.send(auth(live, nvr["hostname"]))

    senders = [threading.Thread(target=send_auth, args=(agent,)) for agent in agents]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()

    watched = agents + ([held] if held else [])
    codes = _until_all_but_one_closed(watched)
    open_now = [agent for agent in watched if agent not in codes]
    if len(open_now) > 1:
        for agent in open_now:
            agent.close()  # a failed round leaves nothing behind
    assert len(open_now) == 1, f"{len(open_now)} left open; close codes {list(codes.values())}"
    assert sorted(codes.values()) == [protocol.CLOSE_REPLACED] * (len(watched) - 1), codes
    [survivor] = open_now
    assert survivor in agents, "the previous round's connection outlived a newer one"
    survivor.expect_type("auth_ok", timeout=2)
    survivor.send({"type": "heartbeat"})
    survivor.expect_type("heartbeat_ack", timeout=2)

    stored = live.nvr(nvr["id"])
    assert (stored["status"], stored["status_version"]) == ("online", 1)
    # One move online, the first round's; a reconnect while online adds none.
    events = [(e["to_status"], e["reason"]) for e in live.events(nvr["id"])]
    assert events == [("online", "connected")], events
    return survivor


def _until_all_but_one_closed(clients, timeout=5.0):
    """Read every client until all but one have been closed by the server (or
    ``timeout`` passes); the close code of each closed one."""
    codes = {}

    def all_but_one_closed():
        for client in clients:
            if client in codes:
                continue
            try:
                client.recv(timeout=0.01)
            except TimeoutError:
                pass
            except ConnectionClosed as closed:
                codes[client] = closed.rcvd.code if closed.rcvd else None
        return len(codes) >= len(clients) - 1

    try:
        wait_until(all_but_one_closed, timeout=timeout, interval=0,
                   message="all connections but one to close")
    except AssertionError:
        pass  # two or more left open: the caller says so
    return codes
