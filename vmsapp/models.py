"""Database models: NVRs, their cameras, and the status history."""

from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .clock import now
from .extensions import db

ONLINE = "online"
OFFLINE = "offline"
STATUSES = (ONLINE, OFFLINE)


class UtcDateTime(sa.types.TypeDecorator):
    """Timezone-aware UTC datetimes on every database.

    SQLite keeps no zone, so values are stored there as naive UTC and come
    back aware; PostgreSQL gets ``timestamptz``."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use vmsapp.clock.now()")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


# SQLite would otherwise hand a deleted row's id to the next row, and a new NVR
# would inherit the old one's status history and dashboards' idea of it.
NEVER_REUSE_IDS = {"sqlite_autoincrement": True}


class Nvr(db.Model):
    __tablename__ = "nvrs"
    __table_args__ = (
        sa.CheckConstraint("status IN ('online', 'offline')", name="status"),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    hostname: Mapped[str] = mapped_column(sa.String(253))
    ip_address: Mapped[str | None] = mapped_column(sa.String(45))
    location: Mapped[str | None] = mapped_column(sa.String(200))
    status: Mapped[str] = mapped_column(sa.String(16), default=OFFLINE, server_default=OFFLINE)
    last_seen: Mapped[datetime | None] = mapped_column(UtcDateTime)
    status_version: Mapped[int] = mapped_column(default=0, server_default="0")
    # Which WebSocket connection the NVR's presence belongs to: a close only
    # marks the NVR offline while it is still the current connection (rule 3).
    connection_id: Mapped[str | None] = mapped_column(sa.String(32))
    # One more at every claim, in the UPDATE that sets connection_id: the
    # order of an NVR's connections whichever worker holds them, so a
    # connection is only ever replaced by a newer one (rule 3).
    claim: Mapped[int] = mapped_column(default=0, server_default="0")
    # SHA-256 of the agent's token; the token itself is shown once and never stored.
    token_hash: Mapped[str | None] = mapped_column(sa.String(64))
    # The token in clear, set only on the object that issued it (never stored).
    token = None
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=now)
    # Changed by admin edits only; presence has last_seen and status_version.
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=now)

    cameras: Mapped[list["Camera"]] = relationship(
        back_populates="nvr", order_by="Camera.id",
        cascade="all, delete-orphan", passive_deletes=True)


# Hostnames are unique whatever their case, but stored as given.
sa.Index("uq_nvrs_hostname_lower", sa.func.lower(Nvr.hostname), unique=True)


class Camera(db.Model):
    __tablename__ = "cameras"
    __table_args__ = (
        sa.UniqueConstraint("nvr_id", "channel"),
        sa.CheckConstraint("status IN ('online', 'offline')", name="status"),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    nvr_id: Mapped[int] = mapped_column(sa.ForeignKey("nvrs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    channel: Mapped[int | None]
    status: Mapped[str] = mapped_column(sa.String(16), default=OFFLINE, server_default=OFFLINE)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=now)
    # Changed by admin edits only; presence has last_seen and status_version.
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=now)

    nvr: Mapped[Nvr] = relationship(back_populates="cameras")


class StatusEvent(db.Model):
    """One status transition. Never updated; kept after its NVR is deleted,
    so ``nvr_id`` and ``camera_id`` carry no foreign keys."""

    __tablename__ = "status_events"
    __table_args__ = (sa.Index("ix_status_events_nvr_id_at", "nvr_id", "at"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(primary_key=True)
    nvr_id: Mapped[int]
    camera_id: Mapped[int | None]
    from_status: Mapped[str] = mapped_column(sa.String(16))
    to_status: Mapped[str] = mapped_column(sa.String(16))
    reason: Mapped[str] = mapped_column(sa.String(32))
    at: Mapped[datetime] = mapped_column(UtcDateTime)


ADMIN = "admin"
VIEWER = "viewer"
ROLES = (ADMIN, VIEWER)


class ApiKey(db.Model):
    """A key for the REST API and dashboards; stored as its SHA-256 only."""

    __tablename__ = "api_keys"
    __table_args__ = (sa.CheckConstraint("role IN ('admin', 'viewer')", name="role"),
                      NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    role: Mapped[str] = mapped_column(sa.String(16))
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    # The first characters of the key, so an operator can tell keys apart.
    prefix: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
