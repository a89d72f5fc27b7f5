"""The transition logic, below the socket: compare-and-set, events, broadcasts."""

import json
import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa
from rows import connect, events, make_nvr, nvr_row, race
from support import wait_until

from vmsapp import presence
from vmsapp.clock import now
from vmsapp.extensions import db
from vmsapp.models import Camera, Nvr
from vmsapp.realtime.registry import current_registry
from vmsapp.realtime.sessions import DashboardSession


def test_it_marks_the_nvr_and_its_cameras_online_on_connect(ctx, listener):
    nvr_id, camera_ids = make_nvr()
    t = now()
    transition = connect(nvr_id, "c1", t)

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
    connect(nvr_id, "old", now())
    assert connect(nvr_id, "new", now()) is None
    # The replaced connection's close does not count (rule 3).
    assert presence.disconnect(nvr_id, "old", presence.DISCONNECTED, now()) is None

    nvr = nvr_row(nvr_id)
    assert (nvr.status, nvr.status_version, nvr.connection_id) == ("online", 1, "new")
    assert len(listener()) == 1


@pytest.mark.parametrize("reason", [presence.DISCONNECTED, presence.STALE])
def test_it_marks_offline_when_the_current_connection_ends(ctx, listener, reason):
    nvr_id, camera_ids = make_nvr()
    connect(nvr_id, "c1", now())
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
    connect(silent, "s", t - timedelta(seconds=10))
    connect(alive, "a", t - timedelta(seconds=1))
    listener()

    transitions = presence.sweep_stale(t, stale_after=5)

    assert [(x.nvr_id, x.reason, x.at) for x in transitions] == [(silent, "stale", t)]
    assert (nvr_row(silent).status, nvr_row(alive).status) == ("offline", "online")
    assert [(e.camera_id, e.reason, e.at) for e in events(silent) if e.to_status == "offline"] == [
        (None, "stale", t)] + [(camera_id, "stale", t) for camera_id in silent_cameras]
    assert [m["nvr_id"] for m in listener()] == [silent]


def test_a_sweep_leaves_an_nvr_whose_row_another_transaction_is_writing(app):
    """The row is being written as heard from just now (a ``last_seen`` flush,
    a connect) when the sweep runs: it is not swept. PostgreSQL's sweep passes
    over the locked row without waiting for it (``SKIP LOCKED``). SQLite has
    one write lock for the whole database: its sweep waits for the write if
    it gets there first, and sees it if not; either way it must not sweep."""
    t = now()
    swept = []

    def sweep():
        with app.app_context():
            swept.extend(presence.sweep_stale(now(), stale_after=5))
            db.session.remove()

    with app.app_context():
        nvr_id, _ = make_nvr()
        connect(nvr_id, "c1", t - timedelta(seconds=60))
        with db.engine.connect() as other:
            other.execute(sa.update(Nvr).where(Nvr.id == nvr_id).values(last_seen=t))
            sweeping = threading.Thread(target=sweep)
            sweeping.start()
            if db.engine.dialect.name == "postgresql":
                wait_until(lambda: not sweeping.is_alive(),
                           message="the sweep to pass over the locked row")
            other.commit()
        sweeping.join()

        assert swept == []
        assert (nvr_row(nvr_id).status, nvr_row(nvr_id).last_seen) == ("online", t)


def test_it_records_one_transition_when_disconnect_and_sweeps_race(app):
    """Rule 5: many threads, each with its own session, one winner."""
    with app.app_context():
        nvr_id, camera_ids = make_nvr(cameras=3)
        connect(nvr_id, "c1", now() - timedelta(seconds=60))
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


def test_disconnects_arriving_together_move_only_the_nvrs_their_connection_holds(app):
    with app.app_context():
        nvrs = [make_nvr(cameras=1, hostname=f"nvr-{i}")[0] for i in range(10)]
        for index, nvr_id in enumerate(nvrs):
            connect(nvr_id, f"c{index}", now())
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
        connect(nvr_id, f"c{index}", now())
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
    connect(nvr_id, "c1", now())
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
    connect(nvr_id, "c1", now())
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
