"""The only code that changes a status (``admission``'s statement claims NVRs
through ``claiming``, built here).

Every change is a compare-and-set ``UPDATE … WHERE status = <old>`` whose
matched rows are the transitions: whichever process's update matches records
the event rows, in the same transaction, and publishes after the commit. Two
workers, the sweep and a disconnect racing on one NVR therefore produce one
event and one broadcast (SPEC §4 rule 5)."""

import functools
import logging
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa

from . import bulk
from .batching import by_first_argument, shared_combiner
from .database import autocommit_connection
from .extensions import db
from .models import OFFLINE, ONLINE, Camera, Nvr, StatusEvent, UtcDateTime
from .realtime import protocol
from .realtime.bus import current_bus

log = logging.getLogger(__name__)

# Core tables, not the ORM entities: a connect runs at hundreds per second, and
# the ORM's bulk-update and unit-of-work machinery was most of its cost.
NVRS = Nvr.__table__
CAMERAS = Camera.__table__
EVENTS = StatusEvent.__table__
# NVR ids per IN (...) list: SQLite allows 32,766 parameters a statement.
IN_CHUNK = 1000

CONNECTED = "connected"
DISCONNECTED = "disconnected"
STALE = "stale"
DELETED = "deleted"
REPORTED = "reported"


@dataclass(frozen=True)
class NvrTransition:
    nvr_id: int
    hostname: str
    name: str
    status: str
    previous_status: str
    reason: str
    status_version: int
    last_seen: datetime | None
    at: datetime
    camera_ids: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class CameraTransition:
    camera_id: int
    nvr_id: int
    status: str
    previous_status: str
    reason: str
    at: datetime


def disconnect(nvr_id, connection_id, reason, now):
    """Offline, if ``connection_id`` still holds the NVR's presence.

    ``reason`` is ``disconnected`` (the socket closed) or ``stale`` (it fell
    silent). Disconnects arriving together share one transaction."""
    return shared_combiner("disconnect", _disconnect_all, by_first_argument).submit(
        nvr_id, connection_id, reason, now)


def claim_all(claims, unchanged=()):
    """SQLite: give each NVR of ``claims`` to its connection, and move it
    online, with its cameras and event rows, if it was offline, all in one
    transaction. ``claims`` are dicts of the NVR's ``id``, ``connection_id``
    and ``last_seen`` (the NVRs distinct) and of the columns ``unchanged``
    names, with the values the caller found: a claim holds only where the
    row still has them, so a token replaced or an NVR renamed or deleted
    since the caller's lookup refuses it, as PostgreSQL's claim in the
    admission's statement checks its row again once locked (``claiming``).
    For each claim, whether it held, the NVR's ``claim`` number it took
    (None when refused) and its transition (None when refused or online
    already).

    The claim comes first, in the same transaction: from then on the close of
    any older connection no longer matches and cannot mark the NVR offline."""
    with _transaction():
        connection = db.session.connection()
        bulk.update_by_id(connection, NVRS, claims, unchanged=unchanged, increment=("claim",))
        # The claims took SQLite's write lock, held until the commit: a row
        # holding its claim's connection id now is one the claim changed, and
        # its claim number the one the claim's UPDATE set.
        holders = {nvr_id: (connection_id, number) for nvr_id, connection_id, number in
                   connection.execute(_holders_statement(),
                                      {"ids": [claim["id"] for claim in claims]})}
        numbers = [_claim_number(holders.get(claim["id"]), claim) for claim in claims]
        held = [number is not None for number in numbers]
        claimed = [claim for claim, holds in zip(claims, held) if holds]
        transitions = _move_nvrs([NVRS.c.id.in_([claim["id"] for claim in claimed])],
                                 OFFLINE, ONLINE, CONNECTED,
                                 {claim["id"]: claim["last_seen"] for claim in claimed}
                                 ) if claimed else []
    announce(transitions)
    by_nvr = {t.nvr_id: t for t in transitions}
    return [(number is not None, number, by_nvr.get(claim["id"]))
            for claim, number in zip(claims, numbers)]


def _claim_number(holder, claim):
    """The claim number ``claim`` took, from its NVR's ``holder`` row
    (``(connection_id, claim)``, or None if deleted); None if it did not hold."""
    if holder is None or holder[0] != claim["connection_id"]:
        return None
    return holder[1]


@functools.cache
def _holders_statement():
    """The connection holding each NVR of ``ids`` and its claim number, built
    once (as every statement run per batch): only its IN list is rendered
    per batch."""
    return sa.select(NVRS.c.id, NVRS.c.connection_id, NVRS.c.claim).where(
        NVRS.c.id.in_(sa.bindparam("ids", expanding=True)))


def claimed_transitions(rows):
    """The transitions of ``rows`` of a ``claiming`` statement, one per NVR
    it moved online. Not yet announced (``announce``)."""
    return [_transition(row, sorted(row.camera_ids or []), OFFLINE, ONLINE, CONNECTED, row.at)
            for row in rows if row.was_offline]


def claiming(claims, *still_true):
    """PostgreSQL: a statement giving each NVR of ``claims`` (rows of
    ``nvr_id``, ``connection_id`` and ``at``, the NVRs distinct) to its
    connection, and moving it online with its cameras and event rows if it
    was offline. One row per claimed NVR: ``MOVED_COLUMNS``, ``at``,
    ``was_offline``, the ``claim`` number the claim took (the row's, one up)
    and the ``camera_ids`` moved (``claimed_transitions``).

    Each row is locked (FOR UPDATE) as its status is read, so the status it
    had before the claim is the one the claim replaced, whatever another
    worker committed meanwhile. ``still_true``: conditions on the row (and
    ``claims``) that must hold of it once locked, or it is not claimed:
    PostgreSQL checks them again on a row changed meanwhile."""
    before = _locked_in_id_order("before_claim", NVRS.c.id == claims.c.nvr_id, *still_true,
                                 columns=(NVRS.c.id, NVRS.c.status))
    was_offline = before.c.status == OFFLINE
    claimed = (sa.update(NVRS)
               .where(NVRS.c.id == claims.c.nvr_id, before.c.id == NVRS.c.id)
               .values(connection_id=claims.c.connection_id, last_seen=claims.c.at,
                       status=ONLINE, claim=NVRS.c.claim + 1,
                       status_version=NVRS.c.status_version + sa.case((was_offline, 1), else_=0))
               .returning(*MOVED_COLUMNS, claims.c.at.label("at"),
                          was_offline.label("was_offline"), NVRS.c.claim.label("claim"))
               .cte("moved"))
    return _moved_rows(claimed, claimed.c.was_offline, OFFLINE, ONLINE, CONNECTED)


def _disconnect_all(batch):
    """Disconnects of distinct NVRs, ``(nvr_id, connection_id, reason, now)``
    each, in one transaction; the transition of each, or None."""
    if _on_postgresql():
        transitions = _disconnect_in_one_statement(batch)
    else:
        transitions = []
        with _transaction():
            for reason in sorted({reason for _, _, reason, _ in batch}):
                group = [args for args in batch if args[2] == reason]
                holders = sa.tuple_(NVRS.c.id, NVRS.c.connection_id).in_(
                    [(nvr_id, connection) for nvr_id, connection, _, _ in group])
                transitions += _move_nvrs([holders], ONLINE, OFFLINE, reason,
                                          {nvr_id: now for nvr_id, _, _, now in group})
    announce(transitions)
    by_nvr = {t.nvr_id: t for t in transitions}
    return [by_nvr.get(nvr_id) for nvr_id, _, _, _ in batch]


def _disconnect_in_one_statement(batch):
    """PostgreSQL: the compare-and-sets of ``batch``, with their cameras and
    event rows, as one statement built once (as a connect's), in autocommit.
    Built for each batch, the move was four times a connect's CPU."""
    nvr_ids, connections, reasons, moments = zip(*batch)
    return _move_in_autocommit(
        _disconnect_statement(),
        bulk.unnest_values("holders", nvr_id=nvr_ids, connection_id=connections,
                           reason=reasons, at=moments))


def _move_in_autocommit(statement, parameters, reason=None):
    """Online to offline by one prebuilt statement (``_moved_rows``), atomic
    on its own, so in autocommit: one round trip, no BEGIN or COMMIT. Its
    transitions, each at its row's ``at``, for ``reason`` or, if None, its
    row's ``reason``."""
    with autocommit_connection() as connection:
        rows = connection.execute(statement, parameters).all()
    return [_transition(row, sorted(row.camera_ids or []), ONLINE, OFFLINE,
                        reason or row.reason, row.at)
            for row in rows]


@functools.cache
def _disconnect_statement():
    """The statement of ``_disconnect_in_one_statement``: only the rows still
    held by the closing connections are locked and moved. A row being changed
    meanwhile is checked again once its change is committed: a connection
    replaced by then is no longer the holder."""
    holders = bulk.unnest_table("holders", nvr_id=sa.Integer, connection_id=sa.String,
                                reason=sa.String, at=UtcDateTime())
    held = [NVRS.c.id == holders.c.nvr_id, NVRS.c.connection_id == holders.c.connection_id,
            NVRS.c.status == ONLINE]
    locked = _locked_in_id_order("locked", *held)
    moved = _moving(OFFLINE, [locked.c.id == NVRS.c.id, *held],
                    holders.c.at.label("at"), holders.c.reason.label("reason"))
    return _moved_rows(moved, sa.true(), ONLINE, OFFLINE)


def sweep_stale(now, stale_after):
    """Offline every online NVR not seen for ``stale_after`` seconds.

    Catches NVRs whose worker died; live workers notice their own silent peers
    first. Safe to run in every process at once."""
    cutoff = now - timedelta(seconds=stale_after)
    if _on_postgresql():
        transitions = _move_in_autocommit(
            _sweep_statement(), {"sweep_cutoff": cutoff, "sweep_at": now}, STALE)
    else:
        with _transaction():
            transitions = _move_nvrs([_silent_since(cutoff)], ONLINE, OFFLINE, STALE, now)
    announce(transitions)
    bus = current_bus()
    for transition in transitions:
        # A live connection somewhere may still hold it: make it reconnect.
        bus.close_nvr(transition.nvr_id, protocol.CLOSE_STALE, "heartbeat timeout")
    return transitions


def _silent_since(cutoff):
    return sa.or_(NVRS.c.last_seen < cutoff, NVRS.c.last_seen.is_(None))


@functools.cache
def _sweep_statement():
    """The sweep as one PostgreSQL statement, built once: it runs every
    ``VMS_SWEEP_INTERVAL`` in every worker, and building it each time was
    most of its CPU (4.6 ms a sweep with nothing stale).

    It skips a row another transaction holds: that NVR is being connected,
    disconnected or written as heard from, so not left silent, and a sweep
    never waits for it. If it is silent after all, the next sweep takes it."""
    silent = [NVRS.c.status == ONLINE,
              _silent_since(sa.bindparam("sweep_cutoff", type_=UtcDateTime()))]
    locked = _locked_in_id_order("locked", *silent, skip_locked=True)
    moved = _moving(OFFLINE, [locked.c.id == NVRS.c.id, *silent],
                    sa.bindparam("sweep_at", type_=UtcDateTime()).label("at"))
    return _moved_rows(moved, sa.true(), ONLINE, OFFLINE, STALE)


def _locked_in_id_order(name, *conditions, columns=(NVRS.c.id,), skip_locked=False):
    """The CTE ``name`` of the NVR rows matching ``conditions``, locked (FOR
    UPDATE) in id order. Every PostgreSQL statement that moves NVRs locks its
    rows this way first, as the ``last_seen`` flush does (``bulk``), so two
    of them sharing rows wait for each other instead of deadlocking."""
    return (sa.select(*columns)
            .where(*conditions)
            .order_by(NVRS.c.id)
            .with_for_update(of=NVRS, skip_locked=skip_locked)
            .cte(name))


def _moving(status, conditions, *carried):
    """The CTE ``moved``: the NVR rows matching ``conditions`` set to
    ``status``, one status version on, returning ``MOVED_COLUMNS`` and
    ``carried`` (their ``at``, and a per-row ``reason`` if there is one)."""
    return (sa.update(NVRS)
            .where(*conditions)
            .values(status=status, status_version=NVRS.c.status_version + 1)
            .returning(*MOVED_COLUMNS, *carried)
            .cte("moved"))


def report_cameras(nvr_id, connection_id, reports, now):
    """Apply an agent's camera reports (``{camera_id: status}``).

    Only the connection holding the NVR's presence may change its cameras.
    Returns the transitions and the ids that are not cameras of this NVR."""
    own = set(db.session.scalars(
        sa.select(CAMERAS.c.id).where(CAMERAS.c.nvr_id == nvr_id,
                                      CAMERAS.c.id.in_(list(reports)))))
    unknown = sorted(set(reports) - own)
    holder = sa.select(NVRS.c.id).where(NVRS.c.id == nvr_id,
                                        NVRS.c.connection_id == connection_id,
                                        NVRS.c.status == ONLINE)
    transitions = []
    events = []
    with _transaction():
        for camera_id in sorted(own):
            status = reports[camera_id]
            previous = OFFLINE if status == ONLINE else ONLINE
            changed = db.session.execute(
                sa.update(CAMERAS)
                .where(CAMERAS.c.id == camera_id, CAMERAS.c.status == previous,
                       CAMERAS.c.nvr_id.in_(holder))
                .values(status=status)
                .returning(CAMERAS.c.id)).first()
            if changed:
                events.append(_event(nvr_id, camera_id, previous, status, REPORTED, now))
                transitions.append(CameraTransition(camera_id, nvr_id, status, previous,
                                                    REPORTED, now))
        _record(events)
    bus = current_bus()
    for transition in transitions:
        bus.publish(protocol.camera_status(transition))
    return transitions, unknown


def delete_nvr(nvr_id, now):
    """Delete the NVR and its cameras, recording it going offline if it was online.

    Returns False when there was no such NVR."""
    with _transaction():
        transitions = _move_nvrs([NVRS.c.id == nvr_id], ONLINE, OFFLINE, DELETED, now)
        deleted = db.session.execute(sa.delete(NVRS).where(NVRS.c.id == nvr_id)).rowcount
    if not deleted:
        return False
    announce(transitions)
    bus = current_bus()
    bus.publish(protocol.nvr_deleted(nvr_id))
    bus.close_nvr(nvr_id, protocol.CLOSE_DELETED, "NVR deleted")
    return True


def _on_postgresql():
    """PostgreSQL runs data-modifying CTEs: a move is one statement there."""
    return db.engine.dialect.name == "postgresql"


@contextmanager
def _transaction():
    """Commit on success, roll back on any error, so no write is left half done."""
    try:
        yield
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise


def _move_nvrs(conditions, previous, status, reason, at):
    """Move the matching NVRs, and their cameras, from ``previous`` to
    ``status``, with the event rows; ``at`` is a time, or one per NVR id."""
    if _on_postgresql():
        return _move_nvrs_in_one_statement(conditions, previous, status, reason, at)
    rows = db.session.execute(
        sa.update(NVRS)
        .where(NVRS.c.status == previous, *conditions)
        .values(status=status, status_version=NVRS.c.status_version + 1)
        .returning(*MOVED_COLUMNS)).all()
    cameras = defaultdict(list)
    ids = [row.id for row in rows]
    for start in range(0, len(ids), IN_CHUNK):
        for camera_id, nvr_id in db.session.execute(
                sa.update(CAMERAS)
                .where(CAMERAS.c.nvr_id.in_(ids[start:start + IN_CHUNK]),
                       CAMERAS.c.status == previous)
                .values(status=status)
                .returning(CAMERAS.c.id, CAMERAS.c.nvr_id)):
            cameras[nvr_id].append(camera_id)
    transitions = [_transition(row, sorted(cameras[row.id]), previous, status, reason, at)
                   for row in rows]
    _record([event for transition in transitions for event in _events_of(transition)])
    return transitions


def _move_nvrs_in_one_statement(conditions, previous, status, reason, at):
    """``_move_nvrs`` as one PostgreSQL statement (data-modifying CTEs), at
    one time ``at``: one round trip instead of three, in the caller's
    transaction (deleting an NVR). The moves that run at a rate (connects,
    disconnects, the sweep) have statements of their own, built once."""
    moved = _moving(status, [NVRS.c.status == previous, *conditions],
                    sa.literal(at, UtcDateTime()).label("at"))
    result = db.session.execute(_moved_rows(moved, sa.true(), previous, status, reason)).all()
    return [_transition(row, sorted(row.camera_ids or []), previous, status, reason, at)
            for row in result]


def _moved_rows(moved, changed, previous, status, reason=None):
    """The end of a one-statement move: given the CTE ``moved`` of NVR rows
    (``MOVED_COLUMNS`` and ``at``) and ``changed``, which of them changed
    status, their cameras move and the event rows are written. Selects the
    rows of ``moved`` with their moved ``camera_ids``. ``reason`` is the
    events' reason, or None when ``moved`` has one per row (its ``reason``)."""
    carried = [moved.c.at] if reason is not None else [moved.c.at, moved.c.reason]
    cameras = (sa.update(CAMERAS)
               .where(CAMERAS.c.nvr_id == moved.c.id, changed, CAMERAS.c.status == previous)
               .values(status=status)
               .returning(CAMERAS.c.id, CAMERAS.c.nvr_id, *carried)
               .cte("moved_cameras"))
    fixed = [sa.literal(previous), sa.literal(status)]
    nvr_reason, camera_reason = ((sa.literal(reason),) * 2 if reason is not None
                                 else (moved.c.reason, cameras.c.reason))
    rows = sa.union_all(
        sa.select(moved.c.id.label("nvr_id"), sa.null().label("camera_id"), *fixed,
                  nvr_reason.label("reason"), moved.c.at)
        .where(changed),
        sa.select(cameras.c.nvr_id, cameras.c.id, *fixed, camera_reason, cameras.c.at))
    events = sa.insert(EVENTS).from_select(
        ["nvr_id", "camera_id", "from_status", "to_status", "reason", "at"],
        sa.select(rows.subquery()).order_by(sa.text("nvr_id"), sa.text("camera_id NULLS FIRST"))
    ).cte("recorded")
    # Grouped once and joined: a subquery per NVR scanned every moved camera
    # for each NVR, so a sweep of 5,000 stale NVRs took seconds instead of a
    # fraction of one.
    camera_ids = (sa.select(cameras.c.nvr_id, sa.func.array_agg(cameras.c.id).label("camera_ids"))
                  .group_by(cameras.c.nvr_id)
                  .subquery("moved_camera_ids"))
    return (sa.select(moved, camera_ids.c.camera_ids)
            .outerjoin_from(moved, camera_ids, camera_ids.c.nvr_id == moved.c.id)
            .add_cte(events)
            .order_by(moved.c.id))


# What a moved NVR's broadcast needs of its row.
MOVED_COLUMNS = (NVRS.c.id, NVRS.c.hostname, NVRS.c.name, NVRS.c.status_version,
                 NVRS.c.last_seen)


def _transition(row, camera_ids, previous, status, reason, at):
    return NvrTransition(
        nvr_id=row.id, hostname=row.hostname, name=row.name, status=status,
        previous_status=previous, reason=reason, status_version=row.status_version,
        last_seen=row.last_seen, at=at[row.id] if isinstance(at, dict) else at,
        camera_ids=camera_ids)


def _events_of(transition):
    """The event rows of one NVR's transition: the NVR's, then its cameras'."""
    t = transition
    yield _event(t.nvr_id, None, t.previous_status, t.status, t.reason, t.at)
    for camera_id in t.camera_ids:
        yield _event(t.nvr_id, camera_id, t.previous_status, t.status, t.reason, t.at)


def _event(nvr_id, camera_id, previous, status, reason, now):
    return {"nvr_id": nvr_id, "camera_id": camera_id, "from_status": previous,
            "to_status": status, "reason": reason, "at": now}


def _record(events):
    """Insert the event rows in one statement."""
    bulk.insert(db.session.connection(), EVENTS, events)


def announce(transitions):
    bus = current_bus()
    for transition in transitions:
        log.info("nvr %s (id %s) %s -> %s (%s), %d camera(s)", transition.hostname,
                 transition.nvr_id, transition.previous_status, transition.status,
                 transition.reason, len(transition.camera_ids))
        bus.publish(protocol.nvr_status(transition))
