"""NVRs and cameras as admins manage them: queries and changes, each change
published to dashboards after its commit. Status changes live in ``presence``."""

import functools
from collections import defaultdict
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from . import credentials
from .batching import shared_combiner
from .database import autocommit_connection
from .errors import ApiError
from .extensions import db
from .models import OFFLINE, ONLINE, Camera, Nvr, StatusEvent
from .realtime import protocol
from .realtime.bus import current_bus


def find_nvr_by_hostname(hostname):
    """The NVR with this hostname, whatever its case, or None."""
    return db.session.scalar(sa.select(Nvr).where(sa.func.lower(Nvr.hostname) == hostname.lower()))


class AgentCamera(NamedTuple):
    id: int
    name: str
    channel: int | None


class AgentNvr(NamedTuple):
    """What an agent's authentication needs of its NVR; its ``AgentCamera``
    list is ordered by id."""

    id: int
    hostname: str
    name: str
    token_hash: str | None
    cameras: list


def find_agent_nvrs(hostnames):
    """The ``AgentNvr`` of each lowercased hostname, whatever the NVR's case,
    or None: one query for a batch of agents' authentications (``admission``
    on SQLite; on PostgreSQL the lookup is part of the claims' statement)."""
    # A connection of its own, not the session of whichever caller writes the
    # batch: the read is over, and the connection back in the pool, at once.
    with autocommit_connection() as connection:
        rows = connection.execute(_agent_lookup(), {"hostnames": sorted(set(hostnames))}).all()
    agents = agent_nvrs_of(rows)
    return [agents.get(hostname) for hostname in hostnames]


def agent_nvrs_of(rows):
    """The ``AgentNvr`` of each NVR in ``rows`` (of ``agent_rows``), by the
    lowercased hostname it was found by."""
    found = {}
    own_cameras = defaultdict(list)
    for row in rows:
        found.setdefault(row.wanted, row)
        if row.camera_id is not None:
            own_cameras[row.id].append(AgentCamera(row.camera_id, row.camera_name, row.channel))
    return {hostname: AgentNvr(row.id, row.hostname, row.name, row.token_hash,
                               own_cameras[row.id])
            for hostname, row in found.items()}


@functools.cache
def _agent_lookup():
    """The statement of ``find_agent_nvrs`` on SQLite, built once: every
    batch runs the same statement object, which SQLAlchemy neither builds nor
    keys again; only the IN list is rendered per batch."""
    nvrs = Nvr.__table__
    wanted = sa.func.lower(nvrs.c.hostname)
    return agent_rows(nvrs, wanted).where(
        wanted.in_(sa.bindparam("hostnames", expanding=True)))


def agent_rows(nvrs_found, wanted, hostname=None, name=None):
    """A select of the columns an agent's authentication needs of each NVR of
    ``nvrs_found`` (``nvrs``, or a join giving its rows), once per camera,
    ordered by NVR and camera (``agent_nvrs_of``). ``wanted`` is the
    lowercased hostname the NVR was found by; ``hostname`` and ``name`` are
    the NVR's columns unless given."""
    nvrs, cameras = Nvr.__table__, Camera.__table__
    return (sa.select(nvrs.c.id, wanted.label("wanted"),
                      (nvrs.c.hostname if hostname is None else hostname).label("hostname"),
                      (nvrs.c.name if name is None else name).label("name"), nvrs.c.token_hash,
                      cameras.c.id.label("camera_id"), cameras.c.name.label("camera_name"),
                      cameras.c.channel)
            .select_from(nvrs_found.outerjoin(cameras, cameras.c.nvr_id == nvrs.c.id))
            .order_by(nvrs.c.id, cameras.c.id))


def get_nvr(nvr_id):
    nvr = db.session.get(Nvr, nvr_id)
    if nvr is None:
        raise ApiError(404, f"No NVR with id {nvr_id}.")
    return nvr


def get_camera(camera_id):
    camera = db.session.get(Camera, camera_id)
    if camera is None:
        raise ApiError(404, f"No camera with id {camera_id}.")
    return camera


def page(query, order_by, limit, offset):
    """``(items, total)`` of a select statement."""
    total = db.session.scalar(sa.select(sa.func.count()).select_from(query.subquery()))
    items = db.session.scalars(query.order_by(*order_by).limit(limit).offset(offset)).all()
    return items, total


def list_nvrs(limit, offset, status=None, q=None):
    query = sa.select(Nvr)
    if status:
        query = query.where(Nvr.status == status)
    if q:
        escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        query = query.where(sa.or_(sa.func.lower(Nvr.name).like(pattern, escape="\\"),
                                   sa.func.lower(Nvr.hostname).like(pattern, escape="\\")))
    return page(query, [Nvr.id], limit, offset)


def list_cameras(limit, offset, nvr_id=None, status=None):
    query = sa.select(Camera)
    if nvr_id is not None:
        query = query.where(Camera.nvr_id == nvr_id)
    if status:
        query = query.where(Camera.status == status)
    return page(query, [Camera.id], limit, offset)


def list_events(nvr_id, limit, offset):
    """The status history of an NVR and its cameras, newest first."""
    query = sa.select(StatusEvent).where(StatusEvent.nvr_id == nvr_id)
    # Ids follow commit order; "at" is read before the row lock, so it may not.
    return page(query, [StatusEvent.id.desc()], limit, offset)


def encoded_snapshot():
    """The ``snapshot`` message, as frame text: every NVR and camera, for a
    dashboard that has subscribed.

    Dashboards asking together share one read and one encoding (``batching``):
    at 5,000 NVRs a snapshot is 2 MB of JSON and several times that in rows
    while it is built, and a worker's dashboards all reconnect at once after a
    restart. Each caller subscribed before asking, so a change committed after
    the read reaches it as a broadcast."""
    return shared_combiner("snapshot", _encode_snapshots).submit()


def _encode_snapshots(batch):
    nvr_columns = [Nvr.__table__.c[name] for name in protocol.SNAPSHOT_NVR_FIELDS]
    with autocommit_connection() as connection:
        nvrs = connection.execute(sa.select(*nvr_columns).order_by(Nvr.id)).all()
        cameras = connection.execute(
            sa.select(Camera.id, Camera.nvr_id, Camera.status).order_by(Camera.id)).all()
    text = protocol.encode(protocol.snapshot([nvr._mapping for nvr in nvrs], cameras))
    return [text] * len(batch)


def counts():
    """How many NVRs and cameras there are, and how many are online."""
    def count(model):
        total, online = db.session.execute(sa.select(
            sa.func.count(), sa.func.count().filter(model.status == ONLINE))).one()
        return total, online
    nvrs_total, nvrs_online = count(Nvr)
    cameras_total, cameras_online = count(Camera)
    return {"nvrs_total": nvrs_total, "nvrs_online": nvrs_online,
            "cameras_total": cameras_total, "cameras_online": cameras_online}


def create_nvr(fields, now):
    """Register an NVR with its first token (``nvr.token``, shown this once)."""
    _check_hostname_free(fields["hostname"])
    nvr = Nvr(**fields, status=OFFLINE, created_at=now, updated_at=now)
    credentials.issue_nvr_token(nvr)
    db.session.add(nvr)
    _commit("hostname")
    current_bus().publish(protocol.nvr_changed("nvr_created", nvr))
    return nvr


def replace_nvr_token(nvr):
    """A new token for ``nvr``; the old one stops working and a connection
    authenticated with it is closed (1008)."""
    token = credentials.issue_nvr_token(nvr)
    db.session.commit()
    current_bus().close_nvr(nvr.id, protocol.CLOSE_POLICY, "token replaced")
    return token


def update_nvr(nvr, fields, now):
    if "hostname" in fields and fields["hostname"].lower() != nvr.hostname.lower():
        _check_hostname_free(fields["hostname"])
    for name, value in fields.items():
        setattr(nvr, name, value)
    nvr.updated_at = now
    _commit("hostname")
    current_bus().publish(protocol.nvr_changed("nvr_updated", nvr))
    return nvr


def create_camera(fields, now):
    # Locking the NVR row keeps its status from changing until the camera,
    # created with that status, is committed.
    nvr = db.session.get(Nvr, fields["nvr_id"], with_for_update=True)
    if nvr is None:
        raise ApiError(422, f"nvr_id: no NVR with id {fields['nvr_id']}.",
                       fields={"nvr_id": f"No NVR with id {fields['nvr_id']}."})
    _check_channel_free(nvr.id, fields.get("channel"))
    camera = Camera(**fields, status=nvr.status, created_at=now, updated_at=now)
    db.session.add(camera)
    _commit("channel")
    current_bus().publish(protocol.camera_changed("camera_created", camera))
    return camera


def update_camera(camera, fields, now):
    if fields.get("channel") is not None and fields["channel"] != camera.channel:
        _check_channel_free(camera.nvr_id, fields["channel"])
    for name, value in fields.items():
        setattr(camera, name, value)
    camera.updated_at = now
    _commit("channel")
    current_bus().publish(protocol.camera_changed("camera_updated", camera))
    return camera


def delete_camera(camera):
    camera_id, nvr_id = camera.id, camera.nvr_id
    db.session.delete(camera)
    db.session.commit()
    current_bus().publish(protocol.camera_deleted(camera_id, nvr_id))


def _check_hostname_free(hostname):
    if find_nvr_by_hostname(hostname) is not None:
        raise ApiError(409, f"An NVR with hostname {hostname!r} already exists.",
                       fields={"hostname": "Already in use."})


def _check_channel_free(nvr_id, channel):
    if channel is None:
        return
    taken = db.session.scalar(sa.select(Camera.id).where(Camera.nvr_id == nvr_id,
                                                         Camera.channel == channel))
    if taken is not None:
        raise ApiError(409, f"NVR {nvr_id} already has a camera on channel {channel}.",
                       fields={"channel": "Already in use on this NVR."})


def _commit(unique_field):
    """Commit; a unique violation that raced past the checks above is a 409."""
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise ApiError(409, f"The {unique_field} is already in use.",
                       fields={unique_field: "Already in use."}) from None
