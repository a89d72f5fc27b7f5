"""Helpers for tests below the HTTP layer: NVR rows, their events, racing threads."""

import threading

import sqlalchemy as sa

from vmsapp import admission, credentials
from vmsapp.clock import now
from vmsapp.database import autocommit_connection
from vmsapp.extensions import db
from vmsapp.models import Camera, Nvr, StatusEvent


def make_nvr(cameras=2, hostname="nvr-a"):
    """An NVR with ``cameras`` cameras: ``(nvr_id, camera_ids)``."""
    t = now()
    nvr = Nvr(name="A", hostname=hostname, created_at=t, updated_at=t)
    nvr.cameras = [Camera(name=f"c{i}", channel=i, created_at=t, updated_at=t)
                   for i in range(cameras)]
    db.session.add(nvr)
    db.session.commit()
    return nvr.id, [c.id for c in nvr.cameras]


def make_agent(cameras=2, hostname="nvr-a"):
    """An NVR with cameras and a token: ``(nvr_id, camera_ids, token)``."""
    nvr_id, camera_ids = make_nvr(cameras, hostname)
    token = credentials.issue_nvr_token(db.session.get(Nvr, nvr_id))
    db.session.commit()
    return nvr_id, camera_ids, token


def connect(nvr_id, connection_id, at):
    """The NVR's agent admitted as its ``auth`` is (``admission``), by hostname
    alone, as ``connection_id`` at ``at``: its transition, or None."""
    with autocommit_connection() as connection:  # the test's session left as it was
        hostname = connection.scalar(sa.select(Nvr.hostname).where(Nvr.id == nvr_id))
    [admitted] = admission.admit_all([(hostname.lower(), None, connection_id, at)],
                                     check_tokens=False)
    assert admitted.refused is None, admitted
    return admitted.transition


def events(nvr_id):
    """The NVR's status events, oldest first."""
    return db.session.scalars(sa.select(StatusEvent).where(StatusEvent.nvr_id == nvr_id)
                              .order_by(StatusEvent.id)).all()


def nvr_row(nvr_id):
    """The NVR as the database has it now."""
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
