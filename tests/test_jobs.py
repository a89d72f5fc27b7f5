"""The background jobs as single steps, and where they run."""

import os
import subprocess
import sys
import threading
from datetime import timedelta

import pytest
from rows import connect
from support import ROOT, flask_env, migrate

from vmsapp import create_app, jobs, runtime
from vmsapp.clock import now
from vmsapp.extensions import db
from vmsapp.models import Nvr
from vmsapp.realtime.registry import current_registry
from vmsapp.realtime.sessions import NvrSession


def add_nvr(hostname):
    t = now()
    nvr = Nvr(name=hostname, hostname=hostname, created_at=t, updated_at=t)
    db.session.add(nvr)
    db.session.commit()
    return nvr.id


def hear(session, at):
    """What the socket loop does with each message of an agent."""
    session.touch(at)
    current_registry().heard_from(session)


def heard_nvr(hostname, at):
    """A new NVR whose connection was heard from at ``at`` (in an app context): its id."""
    nvr_id = add_nvr(hostname)
    session = NvrSession(peer=None, nvr_id=nvr_id, hostname=hostname, now=at)
    current_registry().add_nvr(session)
    hear(session, at)
    return nvr_id


def flush_beside_one_under_way(app, **options):
    """``flush_last_seen(app, **options)`` begun while another flush is under
    way: whether it waited for that one, and what it returned once it ended."""
    under_way = app.extensions.setdefault(jobs.FLUSH_LOCK_KEY, threading.Lock())
    returned = []
    under_way.acquire()
    flusher = threading.Thread(target=lambda: returned.append(jobs.flush_last_seen(app, **options)))
    flusher.start()
    flusher.join(0.2)
    waited = flusher.is_alive() and returned == []
    under_way.release()
    flusher.join(5)
    return waited, returned


def test_flush_writes_every_heard_from_nvr_in_one_go_and_only_once(app):
    with app.app_context():
        ids = [add_nvr(f"nvr-{i}") for i in range(3)]
        t = now()
        sessions = [NvrSession(peer=None, nvr_id=i, hostname=f"nvr-{i}", now=t) for i in ids]
        for session in sessions:
            current_registry().add_nvr(session)
        hear(sessions[0], t + timedelta(seconds=1))
        hear(sessions[2], t + timedelta(seconds=2))

    assert jobs.flush_last_seen(app) == 2
    assert jobs.flush_last_seen(app) == 0  # nothing heard since

    with app.app_context():
        seen = {n.id: n.last_seen for n in db.session.query(Nvr).order_by(Nvr.id)}
        assert seen == {ids[0]: t + timedelta(seconds=1), ids[1]: None,
                        ids[2]: t + timedelta(seconds=2)}


def test_the_sweep_step_runs_in_its_own_app_context(app):
    with app.app_context():
        nvr_id = add_nvr("old")
        connect(nvr_id, "c", now() - timedelta(seconds=60))
        db.session.remove()

    transitions = jobs.sweep(app)

    assert [(t.nvr_id, t.reason) for t in transitions] == [(nvr_id, "stale")]


def test_the_sweep_writes_this_workers_last_seen_before_judging_it(app):
    """A flush starved of database connections must not get a live NVR swept."""
    with app.app_context():
        nvr_id = add_nvr("busy")
        long_ago = now() - timedelta(seconds=60)
        connect(nvr_id, "live", long_ago)  # the last last_seen written
        session = NvrSession(peer=None, nvr_id=nvr_id, hostname="busy", now=long_ago)
        session.connection_id = "live"
        current_registry().add_nvr(session)
        hear(session, now())  # just now; the flush has not run since
        db.session.remove()

    assert jobs.sweep(app) == []

    with app.app_context():
        assert db.session.get(Nvr, nvr_id).status == "online"


@pytest.mark.parametrize("heartbeat, period", [(10, 1.0), (1, 0.5), (0.2, 0.1)])
def test_last_seen_lags_heartbeats_by_at_most_one_interval(heartbeat, period):
    assert jobs.flush_period({"VMS_HEARTBEAT_INTERVAL": heartbeat}) == period


def test_building_the_app_starts_no_background_work():
    """As `flask db upgrade` and other commands build it: no scheduler, no threads."""
    before = set(threading.enumerate())
    app = create_app()
    assert runtime.SCHEDULER_KEY not in app.extensions
    started = [thread.name for thread in threading.enumerate() if thread not in before]
    assert started == []


def test_a_web_worker_does_not_load_the_migration_tools(tmp_path):
    """``flask db`` binds Flask-Migrate (every test database is migrated that
    way); the app gunicorn serves never imports Alembic."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, wsgi; "
         "print(sorted({m.split('.')[0] for m in sys.modules} & {'alembic', 'flask_migrate'}))"],
        cwd=ROOT, env={**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path}/x.db"},
        capture_output=True, text=True, check=True).stdout
    assert loaded.strip().splitlines()[-1] == "[]"


def test_a_booted_worker_freezes_start_up_and_collects_its_oldest_objects_rarely(tmp_path):
    """gunicorn's ``post_worker_init`` as a worker runs it: start-up objects
    frozen, and full collections (each walking every socket's objects) a
    tenth as often as Python's default."""
    database_url = f"sqlite:///{tmp_path}/x.db"
    migrate(database_url)
    boot = (
        "import gc, runpy, types, wsgi\n"
        "from vmsapp import runtime\n"
        "settings = runpy.run_path('gunicorn.conf.py')\n"
        "default = gc.get_threshold()\n"
        "settings['post_worker_init'](types.SimpleNamespace(wsgi=wsgi.app))\n"
        "print('booted', *default, *gc.get_threshold(), gc.get_freeze_count() > 0)\n"
        "runtime.stop(wsgi.app)\n")
    printed = subprocess.run([sys.executable, "-c", boot], cwd=ROOT, env=flask_env(database_url),
                             capture_output=True, text=True, check=True).stdout
    booted = next(line.split()[1:] for line in printed.splitlines() if line.startswith("booted"))
    default, after, frozen = booted[:3], booted[3:6], booted[6]
    assert after == [*default[:2], "100"]  # the young generations as Python has them
    assert frozen == "True"


def test_runtime_starts_both_jobs_and_stops_them_with_the_app(app):
    runtime.start(app)
    scheduler = app.extensions[runtime.SCHEDULER_KEY]
    assert {job.id for job in scheduler.get_jobs()} == {"sweep", "flush_last_seen"}
    assert scheduler.get_job("flush_last_seen").kwargs == {"join_running": True}
    assert scheduler.running

    runtime.stop(app)

    assert not scheduler.running
    assert app.extensions["vmsapp.registry"].stopping


def test_flush_still_writes_the_others_when_an_nvr_was_deleted_meanwhile(app):
    t = now()
    with app.app_context():
        kept, gone = heard_nvr("kept", t), heard_nvr("gone", t)
        db.session.delete(db.session.get(Nvr, gone))
        db.session.commit()
        db.session.remove()

    assert jobs.flush_last_seen(app) == 2

    with app.app_context():
        assert db.session.get(Nvr, kept).last_seen == t


def test_the_sweep_and_the_flush_job_wait_for_a_flush_under_way_instead_of_writing_again(app):
    with app.app_context():
        heard_nvr("heard", now())  # after the flush under way took its batch

    # It waited for the flush under way, and wrote nothing itself.
    assert flush_beside_one_under_way(app, join_running=True) == (True, [0])
    assert jobs.flush_last_seen(app) == 1  # what was heard meanwhile goes with the next


def test_a_flush_that_must_write_waits_for_the_one_under_way_then_writes(app):
    """The graceful stop's flush: nothing heard is left unwritten."""
    with app.app_context():
        heard_nvr("last words", now())

    assert flush_beside_one_under_way(app) == (True, [1])


def test_a_flush_never_moves_last_seen_back(app):
    """An older connection's last heartbeat (or another worker's flush) may be
    written after a newer connect has set a later last_seen."""
    t = now()
    with app.app_context():
        newer, older, never = (heard_nvr(hostname, t) for hostname in ("newer", "older", "never"))
        connect(newer, "new", t + timedelta(seconds=5))
        connect(older, "old", t - timedelta(seconds=5))
        db.session.remove()

    assert jobs.flush_last_seen(app) == 3

    with app.app_context():
        seen = {nvr_id: db.session.get(Nvr, nvr_id).last_seen for nvr_id in (newer, older, never)}
        assert seen == {newer: t + timedelta(seconds=5), older: t, never: t}
