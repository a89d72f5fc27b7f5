"""Several workers sharing Redis (SPEC §2 REDIS_URL): every change reaches every
dashboard once, commands reach every worker, one transition per change."""

import os
import re
import signal
import socket
import subprocess
from datetime import datetime, timezone

import pytest
import requests
from support import Client, auth, dashboard, free_port, nvr_agent, unique, wait_until

from vmsapp.realtime import protocol
from vmsapp.realtime.redis_bus import PUBLISH_BATCH, RedisBus
from vmsapp.realtime.registry import Registry
from vmsapp.realtime.sessions import DashboardSession

WORKERS = 2


@pytest.fixture
def cluster(make_server, redis_url):
    """A gunicorn with two workers on one Redis (with a prefix of its own)."""
    def start(url=redis_url, **environ):
        # Agents here stay silent while the test looks around: give them longer.
        return make_server(REDIS_URL=url, WEB_CONCURRENCY=str(WORKERS),
                           VMS_REDIS_PREFIX=unique("test"), VMS_HEARTBEAT_INTERVAL="2",
                           VMS_STALE_AFTER="8", **environ)
    return start


def workers(live):
    return live.api("GET", "/api/stats").json()["workers"]


def fresh_workers(live):
    """Both workers' rows, as reported after this call."""
    asked = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return wait_until(lambda: (rows := workers(live)) and len(rows) == WORKERS and all(
        row["reported_at"] > asked for row in rows) and rows, message="fresh worker reports")


def spread(live, connect, minimum=2):
    """Open connections until every worker holds at least one; returns them."""
    opened = []
    while len(opened) < 40:
        opened.extend(connect() for _ in range(minimum if not opened else 2))
        if all(row["nvr_connections"] + row["dashboard_clients"] > 0
               for row in fresh_workers(live)):
            return opened
    raise AssertionError(f"connections never reached both workers: {workers(live)}")


def spread_agents(live, count, minimum):
    """Agents for new NVRs until every worker holds one: (their NVRs, the agents)."""
    nvrs = [live.create_nvr() for _ in range(count)]
    pending = iter(nvrs)
    agents = spread(live, lambda: nvr_agent(live, next(pending)["hostname"])[0], minimum)
    return nvrs[:len(agents)], agents


def test_every_dashboard_on_every_worker_gets_each_change_exactly_once(cluster):
    live = cluster()
    dashboards = spread(live, lambda: dashboard(live), minimum=4)
    assert all(row["dashboard_clients"] > 0 for row in workers(live))
    nvrs = [live.create_nvr(cameras=1) for _ in range(6)]
    agents = [nvr_agent(live, nvr["hostname"])[0] for nvr in nvrs]
    marker = live.create_nvr()

    for dash in dashboards:
        dash.expect(lambda m: m.get("type") == "nvr_created" and m["nvr"]["id"] == marker["id"])
        for nvr in nvrs:
            dash.expect_type("nvr_status", nvr_id=nvr["id"], status="online")
    for dash in dashboards:
        # The marker came after every connect, so every broadcast is in by now.
        for nvr in nvrs:
            pushed = [m for m in dash.received if m.get("type") == "nvr_status"
                      and m["nvr_id"] == nvr["id"]]
            assert len(pushed) == 1, pushed
            created = [m for m in dash.received if m.get("type") == "nvr_created"
                       and m["nvr"]["id"] == nvr["id"]]
            assert len(created) == 1
    stats = wait_until(lambda: (stats := live.api("GET", "/api/stats").json())
                       ["nvr_connections"] == len(agents) and stats, message="the counts")
    assert stats["dashboard_clients"] == len(dashboards)
    assert sorted(stats["nvr_hostnames"]) == sorted(n["hostname"] for n in nvrs)


def test_the_newest_connection_wins_across_workers(cluster):
    live = cluster()
    held, firsts = spread_agents(live, count=16, minimum=6)
    before = holders(live, held)

    # The kernel picks each connection's worker, so a round of newer connections
    # all lands where the older ones are once in 2**len(held): take a few rounds.
    older, crossed = firsts, []
    for _ in range(5):
        newer = [nvr_agent(live, nvr["hostname"])[0] for nvr in held]
        for agent in older:
            assert agent.close_code() == 4000
        after = holders(live, held)
        crossed = [h for h in before if before[h] != after[h]]
        if crossed:
            break
        older, before = newer, after
    assert crossed, "no newer connection landed on the other worker"
    for nvr in held:
        stored = live.nvr(nvr["id"])
        assert (stored["status"], stored["status_version"]) == ("online", 1)
    for agent in newer:
        agent.close()


def holders(live, nvrs):
    """Which worker holds each NVR's connection, from reports made after this call."""
    def placed():
        rows = fresh_workers(live)
        found = {n["hostname"]: [r["worker"] for r in rows if n["hostname"] in r["nvr_hostnames"]]
                 for n in nvrs}
        if all(len(where) == 1 for where in found.values()):
            return {hostname: where[0] for hostname, where in found.items()}
        return None

    return wait_until(placed, message="every NVR on exactly one worker")


def test_deleting_or_rotating_closes_the_socket_wherever_it_is(cluster):
    live = cluster()
    held, agents = spread_agents(live, count=12, minimum=8)

    for nvr, agent in list(zip(held, agents))[::2]:
        assert live.api("DELETE", f"/api/nvrs/{nvr['id']}").status_code == 204
        assert agent.close_code() == 4004
    for nvr, agent in list(zip(held, agents))[1::2]:
        assert live.api("POST", f"/api/nvrs/{nvr['id']}/token").status_code == 200
        assert agent.close_code() == 1008


def test_failed_authentications_on_every_worker_count_against_one_limit(cluster):
    """Five failures from one address, spread over both workers, reach the
    limit of five: each worker refuses that address after, over REST and /ws."""
    live = cluster(VMS_AUTH_FAILURE_LIMIT="5 per minute", VMS_PROXY_HOPS="1")
    nvr = live.create_nvr()
    # The kernel picks each connection's worker: an address whose failures
    # all landed on one worker proves nothing, so take another.
    for attempt in range(1, 6):
        address = f"198.51.100.{attempt}"
        for _ in range(5):
            response = live.api("GET", "/api/nvrs", key="wrong",
                                headers={"X-Forwarded-For": address})
            assert response.status_code == 401
        if len(refusing_workers(live, address)) == WORKERS:
            break
    assert len(refusing_workers(live, address)) == WORKERS, "failures never reached both workers"

    # Neither worker saw five of the failures itself, whichever answers now.
    refused = live.api("GET", "/api/nvrs", headers={"X-Forwarded-For": address})
    assert refused.status_code == 429
    agent = Client(live.ws_url, additional_headers={"X-Forwarded-For": address})
    agent.send(auth(live, nvr["hostname"]))
    assert agent.expect_type("error")["code"] == "too_many_attempts"
    assert live.api("GET", "/api/nvrs").status_code == 200  # other addresses are not held back


def refusing_workers(live, address):
    """The pids of the workers that logged a refused REST auth from ``address``."""
    return set(re.findall(rf"\[(\d+)\] \S+: REST auth refused from {re.escape(address)}:",
                          live.log()))


def test_a_stale_nvr_makes_one_event_however_many_workers_sweep(cluster):
    live = cluster()
    dashboards = spread(live, lambda: dashboard(live), minimum=4)
    nvr = live.create_nvr(cameras=2)
    # Cameras first: the sweep leaves an offline NVR alone, while an NVR made
    # stale-looking first could be swept before its cameras came online.
    live.sql("UPDATE cameras SET status = 'online' WHERE nvr_id = :id", id=nvr["id"])
    live.sql("UPDATE nvrs SET status = 'online', status_version = 1, last_seen = :t "
             "WHERE id = :id", t="2020-01-01 00:00:00", id=nvr["id"])

    for dash in dashboards:
        dash.expect_type("nvr_status", nvr_id=nvr["id"], status="offline")
    marker = live.create_nvr()
    for dash in dashboards:
        dash.expect(lambda m: m.get("type") == "nvr_created" and m["nvr"]["id"] == marker["id"])
        assert len([m for m in dash.received if m.get("type") == "nvr_status"
                    and m["nvr_id"] == nvr["id"]]) == 1
    assert [e["reason"] for e in live.events(nvr["id"])] == ["stale"] * 3
    assert live.nvr(nvr["id"])["status_version"] == 2


def test_a_killed_worker_leaves_nothing_online_and_drops_out_of_the_stats(cluster):
    live = cluster()
    nvrs = [live.create_nvr() for _ in range(12)]
    pending = iter(nvrs)
    agents = spread(live, lambda: nvr_agent(live, next(pending)["hostname"])[0], minimum=6)
    victim = next(row for row in workers(live) if row["nvr_connections"] > 0)
    held = [n for n in nvrs if n["hostname"] in victim["nvr_hostnames"]]

    os.kill(victim["pid"], signal.SIGKILL)
    # Until gunicorn replaces it, connections the kernel hands to the dead
    # worker's socket are reset: ask again, as a client would.
    live.api = retrying(live.api)

    # Its agents lose their connection; with no worker to say so, the sweep does.
    for nvr in held:
        wait_until(lambda: live.nvr(nvr["id"])["status"] == "offline", timeout=30,
                   message=f"{nvr['hostname']} offline")
        assert live.events(nvr["id"])[0]["reason"] == "stale"
    wait_until(lambda: victim["pid"] not in [r["pid"] for r in workers(live)],
               message="the dead worker to drop out of the stats")
    # gunicorn replaces it; the fleet keeps working on both.
    wait_until(lambda: len(workers(live)) == WORKERS, message="a replacement worker")
    for agent in agents:
        agent.close()


def retrying(call):
    def again(*args, **kwargs):
        return wait_until(lambda: _or_none(call, *args, **kwargs), message="an answer")
    return again


def _or_none(call, *args, **kwargs):
    try:
        return call(*args, **kwargs)
    except requests.ConnectionError:
        return None


def test_without_redis_it_runs_one_worker_and_says_why(make_server):
    live = make_server(WEB_CONCURRENCY="2")
    log = live.log()
    assert log.count("Booting worker") == 1
    assert "WARNING" in log and "REDIS_URL" in log
    assert len(workers(live)) == 1


# -- Redis going away ----------------------------------------------------------------

class RedisServer:
    """A real redis-server of the test's own, to stop and start again."""

    def __init__(self, tmp_path):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.tmp_path = tmp_path
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.tmp_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._listening, message="redis-server")
        return self

    def _listening(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def own_redis(tmp_path):
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


def test_nvrs_keep_working_while_redis_is_away_and_dashboards_resync_after(cluster, own_redis):
    live = cluster(url=own_redis.url)
    dashboards = spread(live, lambda: dashboard(live), minimum=4)
    nvr = live.create_nvr()

    own_redis.stop()
    agent, ok = nvr_agent(live, nvr["hostname"])  # the database stays right
    agent.send({"type": "heartbeat"})
    agent.expect_type("heartbeat_ack")
    assert live.nvr(nvr["id"])["status"] == "online"
    wait_until(lambda: live.log().count("Redis subscription lost") >= WORKERS,
               message="both workers noticing the outage")
    own_redis.start()

    for dash in dashboards:
        # Whatever was missed, a fresh snapshot shows the fleet as it is now.
        fresh = dash.expect(lambda m: m.get("type") == "snapshot" and any(
            n["id"] == nvr["id"] and n["status"] == "online" for n in m["nvrs"]),
            timeout=20, what="a fresh snapshot")
        assert fresh
    wait_until(lambda: live.log().count("a fresh snapshot") >= WORKERS,
               message="the recovery in the log")
    agent.close()


def drain_until(watcher, count):
    """What ``watcher`` was sent, once it holds ``count`` messages."""
    received = []
    wait_until(lambda: received.extend(watcher.take(0)) or len(received) >= count,
               message=f"{count} broadcasts")
    return received + watcher.take(0)


def watched_bus(redis_url, prefix):
    """A bus on a registry of its own, not started, and the one dashboard
    session that registry holds: ``(bus, watcher)``."""
    registry = Registry()
    watcher = DashboardSession(peer=None)
    registry.add_dashboard(watcher)
    return RedisBus(registry, redis_url, prefix=prefix), watcher


def subscribers(bus):
    """How many listeners Redis counts on ``bus``'s channel."""
    return bus.redis.pubsub_numsub(bus.channel)[0][1]


def test_a_burst_of_broadcasts_reaches_the_other_workers_dashboards_whole_and_in_order(
        redis_url):
    """The publisher sends what has queued up as one Redis message: nothing
    lost, nothing reordered, nothing echoed back to the sender."""
    prefix = unique("vmsapp-test-burst")
    (sender, at_sender_watcher), (receiver, at_receiver_watcher) = (
        watched_bus(redis_url, prefix) for _ in range(2))
    buses = (sender, receiver)
    for bus in buses:
        bus.start()
    try:
        wait_until(lambda: subscribers(sender) == 2, message="both listeners subscribed")
        # Newlines in a payload's strings must not split a bus message.
        messages = [{"type": "marker", "n": n, "text": "a\nb\r\n"} for n in range(2000)]
        for message in messages:
            sender.publish(message)
        sent = [protocol.encode(message) for message in messages]

        at_receiver = drain_until(at_receiver_watcher, len(sent))
        assert at_receiver == sent
        # The receiver's answer reaches the sender after any echo of its own burst.
        receiver.publish({"type": "marker", "n": "last"})
        at_sender = drain_until(at_sender_watcher, len(sent) + 1)
        assert at_sender == sent + [protocol.encode({"type": "marker", "n": "last"})]
    finally:
        for bus in buses:
            bus.stop()


class ClosedRecorder:
    """An NVR session whose peer only records how it was closed."""

    def __init__(self, nvr_id, connection_id, claim=1):
        self.nvr_id = nvr_id
        self.connection_id = connection_id
        self.claim = claim
        self.peer = self
        self.closes = []

    def close(self, code, reason):
        self.closes.append((code, reason))


def test_a_queued_burst_travels_as_one_redis_message_per_batch(redis_url):
    """What queued up while the publisher was busy goes out together: a
    reconnect storm costs Redis and every other worker a read per batch, not
    two per agent. A command in the batch is carried out too."""
    prefix = unique("vmsapp-test-batch")
    receiver, watcher = watched_bus(redis_url, prefix)
    older = ClosedRecorder(nvr_id=7, connection_id="older")
    receiver.registry.add_nvr(older)
    sender, _ = watched_bus(redis_url, prefix)
    counter = sender.redis.pubsub(ignore_subscribe_messages=True)
    counter.subscribe(sender.channel)
    receiver.start()
    try:
        wait_until(lambda: subscribers(sender) == 2,
                   message="the receiver and the counter subscribed")
        # Queued before the sender's publisher starts, so its batches are full.
        total = 2 * PUBLISH_BATCH + 1
        for n in range(total):
            sender.publish({"type": "marker", "n": n})
            if n == PUBLISH_BATCH // 2:
                sender.close_older(7, 2, protocol.CLOSE_REPLACED, "replaced")
        sender.start()
        received = drain_until(watcher, total)
        assert received == [protocol.encode({"type": "marker", "n": n}) for n in range(total)]
        assert older.closes == [(protocol.CLOSE_REPLACED, "replaced")]

        # 2 * PUBLISH_BATCH + 2 bus messages: two full batches and the rest.
        redis_messages = []

        def three_received():
            message = counter.get_message(timeout=0.1)
            if message is not None:
                redis_messages.append(message)
            return len(redis_messages) >= 3

        wait_until(three_received, message="three Redis messages")
        assert counter.get_message(timeout=0.2) is None
        assert len(redis_messages) == 3
    finally:
        counter.close()
        for bus in (sender, receiver):
            bus.stop()


def test_a_line_the_listener_cannot_carry_out_costs_that_line_only(redis_url):
    """A malformed command (a bug, a newer release) is logged and skipped; the
    rest of its batch and later messages still arrive, and so do messages in the
    format of the release before batching."""
    receiver, watcher = watched_bus(redis_url, unique("vmsapp-test-bad-line"))
    receiver.start()
    try:
        wait_until(lambda: subscribers(receiver) == 1, message="the receiver subscribed")
        receiver.redis.publish(receiver.channel, "\n".join([
            "elsewhere", 'b {"n":1}', "c not-json", "x what", 'b {"n":2}']))
        receiver.redis.publish(receiver.channel, 'elsewhere\nb {"n":3}')
        # As a worker of the release before batching sends it, during a deploy.
        receiver.redis.publish(receiver.channel, 'older b {"n":4}')

        assert drain_until(watcher, 4) == ['{"n":1}', '{"n":2}', '{"n":3}', '{"n":4}']
    finally:
        receiver.stop()
