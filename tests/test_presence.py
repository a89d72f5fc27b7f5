"""The transition logic, below the socket: compare-and-set, events, broadcasts."""

import json
import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from vmsapp import admission, credentials, presence
from vmsapp.clock import now
from vmsapp.extensions import db
from vmsapp.models import Camera, Nvr, StatusEvent
from vmsapp.realtime.registry import current_registry
from vmsapp.realtime.sessions import DashboardSession


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app


@pytest.fixture
def listener(ctx):
    """A dashboard session in the registry, with no socket: we read its outbox."""
    session = DashboardSession(peer=None)
    current_registry().add_dashboard(session)

    def messages():
        out = []
        while not session.outbox.empty():
            out.append(json.loads(session.outbox.get_nowait()))
        return out

    return messages


def make_nvr(cameras=2, hostname="nvr-a"):
    t = now()
    nvr = Nvr(name="A", hostname=hostname, created_at=t, updated_at=t)
    nvr.cameras = [Camera(name=f"c{i}", channel=i, created_at=t, updated_at=t)
                   for i in range(cameras)]
    db.session.add(nvr)
    db.session.commit()
    return nvr.id, [c.id for c in nvr.cameras]


def events(nvr_id):
    return db.session.scalars(sa.select(StatusEvent).where(StatusEvent.nvr_id == nvr_id)
                              .order_by(StatusEvent.id)).all()


def nvr_row(nvr_id):
    db.session.expire_all()
    return db.session.get(Nvr, nvr_id)


def race(app, count, work):
    """Run ``work(index)`` in ``count`` threads started together, each in its
    own app context; the exceptions they raised."""
    start = threading.Barrier(count)
    errors = []

    def contender(index):
        with app.app_context():
            try:
                start.wait()
                work(index)
            except Exception as error:  # collected: a thread cannot fail the test itself
                errors.append(error)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=contender, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_it_marks_the_nvr_and_its_cameras_online_on_connect(ctx, listener):
    nvr_id, camera_ids = make_nvr()
    t = now()
    transition = presence.connect(nvr_id, "c1", t)

    assert transition.status == "online" and transition.camera_ids == camera_ids
    nvr = nvr_row(nvr_id)
    assert (nvr.status, nvr.status_version, nvr.last_seen) == ("online", 1, t)
    assert {c.status for c in nvr.cameras} == {"online"}
    assert [(e.camera_id, e.from_status, e.to_status, e.reason) for e in events(nvr_id)] == [
        (None, "offline", "online", "connected")] + [
        (c, "offline", "online", "connected") for c in camera_ids]
    [message] = listener()
    assert message["type"] == "nvr_status" and message["status_version"] == 1
    assert message["camera_ids"] == camera_ids


def test_it_keeps_a_reconnecting_nvr_online_without_a_transition(ctx, listener):
    nvr_id, _ = make_nvr()
    presence.connect(nvr_id, "old", now())
    assert presence.connect(nvr_id, "new", now()) is None
    # The replaced connection's close does not count (rule 3).
    assert presence.disconnect(nvr_id, "old", presence.DISCONNECTED, now()) is None

    nvr = nvr_row(nvr_id)
    assert (nvr.status, nvr.status_version, nvr.connection_id) == ("online", 1, "new")
    assert len(listener()) == 1


@pytest.mark.parametrize("reason", [presence.DISCONNECTED, presence.STALE])
def test_it_marks_offline_when_the_current_connection_ends(ctx, listener, reason):
    nvr_id, camera_ids = make_nvr()
    presence.connect(nvr_id, "c1", now())
    transition = presence.disconnect(nvr_id, "c1", reason, now())

    assert (transition.status, transition.reason, transition.status_version) == (
        "offline", reason, 2)
    assert transition.camera_ids == camera_ids
    assert nvr_row(nvr_id).status == "offline"
    assert [m["reason"] for m in listener()] == ["connected", reason]


def test_it_sweeps_only_nvrs_silent_for_longer_than_stale_after(ctx, listener):
    silent, silent_cameras = make_nvr(hostname="silent")
    alive, _ = make_nvr(hostname="alive")
    t = now()
    presence.connect(silent, "s", t - timedelta(seconds=10))
    presence.connect(alive, "a", t - timedelta(seconds=1))
    listener()

    transitions = presence.sweep_stale(t, stale_after=5)

    assert [(x.nvr_id, x.reason, x.at) for x in transitions] == [(silent, "stale", t)]
    assert (nvr_row(silent).status, nvr_row(alive).status) == ("offline", "online")
    assert [(e.camera_id, e.reason, e.at) for e in events(silent) if e.to_status == "offline"] == [
        (None, "stale", t)] + [(camera_id, "stale", t) for camera_id in silent_cameras]
    assert [m["nvr_id"] for m in listener()] == [silent]


def test_it_records_one_transition_when_disconnect_and_sweeps_race(app):
    """Rule 5: many threads, each with its own session, one winner."""
    with app.app_context():
        nvr_id, camera_ids = make_nvr(cameras=3)
        presence.connect(nvr_id, "c1", now() - timedelta(seconds=60))
        watcher = DashboardSession(peer=None)
        current_registry().add_dashboard(watcher)

    def contend(index):
        if index % 2:
            presence.sweep_stale(now(), stale_after=5)
        else:
            presence.disconnect(nvr_id, "c1", presence.DISCONNECTED, now())

    errors = race(app, 8, contend)

    assert errors == []
    with app.app_context():
        offline = [e for e in events(nvr_id) if e.to_status == "offline"]
        assert len(offline) == 1 + len(camera_ids)
        assert nvr_row(nvr_id).status_version == 2
    broadcasts = [json.loads(watcher.outbox.get_nowait()) for _ in range(watcher.outbox.qsize())]
    assert [(m["type"], m["status"]) for m in broadcasts] == [("nvr_status", "offline")]


def make_agent(cameras=2, hostname="nvr-a"):
    """An NVR with cameras and a token: ``(nvr_id, camera_ids, token)``."""
    nvr_id, camera_ids = make_nvr(cameras, hostname)
    token = credentials.issue_nvr_token(db.session.get(Nvr, nvr_id))
    db.session.commit()
    return nvr_id, camera_ids, token


def test_agents_admitted_together_each_get_their_own_nvr_and_transition(app):
    with app.app_context():
        agents = [make_agent(cameras=index % 3, hostname=f"Agent-{index}") for index in range(12)]
    results = {}
    # Each its own moment: a batch must not give one connect another's time.
    moments = [now() + timedelta(seconds=index) for index in range(len(agents))]

    def admit(index):
        # Any case of the hostname finds its NVR.
        hostname = f"AGENT-{index}" if index % 2 else f"agent-{index}"
        results[index] = admission.admit(hostname, agents[index][2], f"c{index}", moments[index])

    assert race(app, len(agents), admit) == []
    with app.app_context():
        for index, (nvr_id, camera_ids, _) in enumerate(agents):
            nvr, refused, transition = results[index]
            assert (nvr.id, nvr.hostname, refused) == (nvr_id, f"Agent-{index}", None)
            assert [camera.id for camera in nvr.cameras] == camera_ids
            assert (transition.nvr_id, transition.camera_ids, transition.at) == (
                nvr_id, camera_ids, moments[index])
            row = nvr_row(nvr_id)
            assert (row.status, row.status_version, row.connection_id, row.last_seen) == (
                "online", 1, f"c{index}", moments[index])
            assert [(e.camera_id, e.to_status, e.at) for e in events(nvr_id)] == [
                (None, "online", moments[index])] + [
                (c, "online", moments[index]) for c in camera_ids]


def test_a_batch_of_admissions_refuses_only_the_agents_that_fail(ctx, listener):
    """One batch, as the combiner hands it over: an unknown hostname and a
    wrong or missing token are refused and change nothing, beside two
    agents admitted, one of them online already."""
    admitted, camera_ids, token = make_agent(cameras=2, hostname="Admitted")
    online, _, online_token = make_agent(cameras=1, hostname="online")
    wrong, _, _ = make_agent(cameras=1, hostname="wrong")
    missing, _, _ = make_agent(cameras=1, hostname="missing")
    presence.connect(online, "earlier", now())
    listener()
    t = now()
    batch = [("admitted", token, "c1", t), ("no-such-nvr", token, "c2", t),
             ("wrong", token, "c3", t), ("missing", None, "c4", t),
             ("online", online_token, "c5", t)]

    results = admission._admit_all(batch)

    assert [(nvr and nvr.id, refused) for nvr, refused, _ in results] == [
        (admitted, None), (None, admission.INVALID_HOSTNAME), (wrong, admission.INVALID_TOKEN),
        (missing, admission.INVALID_TOKEN), (online, None)]
    assert results[0].transition.camera_ids == camera_ids
    assert results[4].transition is None  # online already: the claim alone
    assert [m["nvr_id"] for m in listener()] == [admitted]
    for nvr_id in (wrong, missing):
        row = nvr_row(nvr_id)
        assert (row.status, row.connection_id, events(nvr_id)) == ("offline", None, [])
    assert (nvr_row(online).connection_id, nvr_row(online).status_version) == ("c5", 1)


def test_the_open_auth_mode_admits_an_agent_without_its_token(ctx):
    ctx.config["VMS_AUTH_MODE"] = "open"
    nvr_id, _, _ = make_agent()

    nvr, refused, transition = admission.admit("nvr-a", None, "c1", now())

    assert (nvr.id, refused, transition.nvr_id) == (nvr_id, None, nvr_id)


def test_admissions_of_one_nvr_arriving_together_make_one_transition(app):
    with app.app_context():
        nvr_id, camera_ids, token = make_agent(cameras=2)
    results = []

    def admit(index):
        results.append(admission.admit("NVR-A" if index % 2 else "nvr-a", token, f"c{index}",
                                       now()))

    assert race(app, 8, admit) == []
    assert [refused for _, refused, _ in results] == [None] * 8
    assert len([transition for _, _, transition in results if transition is not None]) == 1
    with app.app_context():
        row = nvr_row(nvr_id)
        assert (row.status, row.status_version) == ("online", 1)
        assert row.connection_id in {f"c{i}" for i in range(8)}
        assert len(events(nvr_id)) == 1 + len(camera_ids)


def test_disconnects_arriving_together_move_only_the_nvrs_their_connection_holds(app):
    with app.app_context():
        nvrs = [make_nvr(cameras=1, hostname=f"nvr-{i}")[0] for i in range(10)]
        for index, nvr_id in enumerate(nvrs):
            presence.connect(nvr_id, f"c{index}", now())
    results = {}
    # Each its own moment and reason: a batch must not give one disconnect another's.
    moments = [now() + timedelta(seconds=index) for index in range(len(nvrs))]

    def disconnect(index):
        # Odd ones close a connection that no longer holds the NVR: no effect.
        connection = f"c{index}" if index % 2 == 0 else "replaced"
        reason = presence.STALE if index % 4 == 0 else presence.DISCONNECTED
        results[index] = presence.disconnect(nvrs[index], connection, reason, moments[index])

    assert race(app, len(nvrs), disconnect) == []
    with app.app_context():
        for index, nvr_id in enumerate(nvrs):
            if index % 2:
                assert results[index] is None and nvr_row(nvr_id).status == "online"
            else:
                reason = "stale" if index % 4 == 0 else "disconnected"
                assert (results[index].nvr_id, results[index].reason, results[index].at) == (
                    nvr_id, reason, moments[index])
                assert (nvr_row(nvr_id).status, nvr_row(nvr_id).status_version) == ("offline", 2)
                assert [(e.reason, e.at) for e in events(nvr_id)][-2:] == [
                    (reason, moments[index])] * 2


def test_a_batch_of_disconnects_gives_each_its_own_reason_and_time(ctx, listener):
    """One batch, as the combiner hands it over: each disconnect with its own
    reason and moment, one of them from a connection that no longer holds its NVR."""
    nvrs = [make_nvr(cameras=1, hostname=f"nvr-{i}")[0] for i in range(4)]
    for index, nvr_id in enumerate(nvrs):
        presence.connect(nvr_id, f"c{index}", now())
    listener()
    t = now()
    batch = [(nvrs[0], "c0", presence.STALE, t + timedelta(seconds=1)),
             (nvrs[1], "c1", presence.DISCONNECTED, t + timedelta(seconds=2)),
             (nvrs[2], "replaced", presence.DISCONNECTED, t + timedelta(seconds=3)),
             (nvrs[3], "c3", presence.STALE, t + timedelta(seconds=4))]

    results = presence._disconnect_all(batch)

    assert results[2] is None and nvr_row(nvrs[2]).status == "online"
    moved = [args for args, result in zip(batch, results) if result is not None]
    assert [(r.nvr_id, r.reason, r.at) for r in results if r is not None] == [
        (nvr_id, reason, at) for nvr_id, _, reason, at in moved]
    for nvr_id, _, reason, at in moved:
        assert nvr_row(nvr_id).status == "offline"
        assert [(e.reason, e.at) for e in events(nvr_id)][-2:] == [(reason, at)] * 2
    assert sorted((m["nvr_id"], m["reason"]) for m in listener()) == [
        (nvr_id, reason) for nvr_id, _, reason, _ in moved]


def test_it_applies_camera_reports_from_the_current_connection_only(ctx, listener):
    nvr_id, (cam1, cam2) = make_nvr()
    other_nvr, (foreign, _) = make_nvr(hostname="other")
    presence.connect(nvr_id, "c1", now())
    listener()

    transitions, unknown = presence.report_cameras(
        nvr_id, "c1", {cam1: "offline", cam2: "online", foreign: "offline", 999: "online"}, now())

    assert [(t.camera_id, t.status, t.previous_status) for t in transitions] == [
        (cam1, "offline", "online")]
    assert unknown == [foreign, 999]
    assert [m["type"] for m in listener()] == ["camera_status"]
    # A connection that no longer holds the NVR changes nothing.
    transitions, _ = presence.report_cameras(nvr_id, "stale-conn", {cam1: "online"}, now())
    assert transitions == []
    assert db.session.get(Camera, cam1).status == "offline"


def test_it_records_a_deleted_online_nvr_going_offline(ctx, listener):
    nvr_id, camera_ids = make_nvr()
    presence.connect(nvr_id, "c1", now())
    listener()

    assert presence.delete_nvr(nvr_id, now()) is True

    assert db.session.get(Nvr, nvr_id) is None
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Camera)) == 0
    assert [e.reason for e in events(nvr_id) if e.to_status == "offline"] == [
        "deleted"] * (1 + len(camera_ids))
    assert [(m["type"], m.get("reason")) for m in listener()] == [
        ("nvr_status", "deleted"), ("nvr_deleted", None)]
    assert presence.delete_nvr(nvr_id, now()) is False


def test_a_full_dashboard_outbox_never_blocks_the_publisher(ctx):
    session = DashboardSession(peer=None)
    for _ in range(session.outbox.maxsize + 5):
        session.offer("{}")
    assert session.overflowed
