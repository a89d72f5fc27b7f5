"""Background jobs. Each is one step that pushes its own app context, so tests
call it directly; ``runtime`` schedules them in the web process."""

import logging
import threading

from sqlalchemy.exc import SQLAlchemyError

from . import bulk, presence
from .clock import now
from .extensions import db
from .models import Nvr
from .realtime.registry import current_registry

log = logging.getLogger(__name__)

FLUSH_LOCK_KEY = "vmsapp.flush_lock"


def sweep(app):
    """Mark stale every online NVR not heard from for VMS_STALE_AFTER seconds.

    ``last_seen`` is written in batches and may lag by up to one heartbeat
    interval (SPEC §3), so only rows older than both together are surely stale:
    a live NVR is never swept for a late batch. Live workers catch their own
    silent peers on time; the sweep is for NVRs whose worker died.

    This worker's own batch is written first, or the flush under way waited
    for: under load the flush job can wait its turn for a database connection,
    and the sweep must not judge this worker's NVRs on what a starved flush
    has not written yet."""
    moment = now()
    flush_last_seen(app, join_running=True)
    with app.app_context():
        config = app.config
        try:
            transitions = presence.sweep_stale(
                moment, config["VMS_STALE_AFTER"] + config["VMS_HEARTBEAT_INTERVAL"])
        except SQLAlchemyError:
            log.exception("stale sweep failed; it runs again next interval")
            return []
        finally:
            db.session.remove()
        return transitions


def flush_last_seen(app, join_running=False):
    """Write the ``last_seen`` of every NVR heard from since the last flush, in
    one transaction: heartbeats cost no database write of their own.

    One flush at a time. With ``join_running``, a flush already under way is
    waited for instead of followed by another: it holds everything heard
    before it began, which is what the sweep needs written, and what was
    heard since goes with the next scheduled flush, one flush period on.
    The sweep and the flush job, both due on the second, would otherwise
    write twice as many transactions."""
    lock = app.extensions.setdefault(FLUSH_LOCK_KEY, threading.Lock())
    if not lock.acquire(blocking=not join_running):
        with lock:
            return 0
    try:
        return _flush_last_seen(app)
    finally:
        lock.release()


def _flush_last_seen(app):
    with app.app_context():
        seen = current_registry().take_last_seen()
        if not seen:
            return 0
        rows = [{"id": nvr_id, "last_seen": at} for nvr_id, at in seen.items()]
        try:
            with db.engine.connect() as connection:
                _write_last_seen(connection, rows)
        except SQLAlchemyError:
            log.exception("could not write last_seen of %d NVR(s)", len(seen))
            return 0
        return len(seen)


def _write_last_seen(connection, rows):
    # Never back: another worker's flush, or an older connection's last
    # heartbeat, may land after a newer connect has written a later time.
    bulk.update_by_id(connection, Nvr.__table__, rows, only_later="last_seen")
    connection.commit()


def flush_period(config):
    """How often ``last_seen`` is written: it may lag a heartbeat by at most one
    heartbeat interval (SPEC §3), and a second is plenty at any fleet size."""
    return min(1.0, config["VMS_HEARTBEAT_INTERVAL"] / 2)
