"""The /ws protocol: parsing what peers send and building what the server sends.

Pure functions, no I/O. Incoming messages are validated by marshmallow
schemas, like REST bodies."""

import json

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from ..clock import isoformat
from ..errors import flatten_errors
from ..models import STATUSES
from ..schemas import MAX_ID, CameraSchema, NvrSchema, Text

# Close codes (SPEC §4), plus 1013 for a dashboard too slow to keep up and
# 1011 for a failure of the server's own.
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TOO_SLOW = 1013
CLOSE_REPLACED = 4000
CLOSE_STALE = 4001
CLOSE_DELETED = 4004
# The reason sent with CLOSE_REPLACED.
REPLACED = "replaced by a newer connection"


class ProtocolError(Exception):
    """A message the server refuses; ``code`` goes into the error reply."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


class _Message(Schema):
    # Agents in the field may add fields in newer versions: ignore them.
    class Meta:
        unknown = EXCLUDE

    type = fields.String(required=True)


class AuthMessage(_Message):
    hostname = Text(required=True, validate=validate.Length(min=1, max=253))
    token = Text(validate=validate.Length(max=512))


class DashboardMessage(_Message):
    token = Text(validate=validate.Length(max=512))


class CameraReport(Schema):
    class Meta:
        unknown = EXCLUDE

    # Beyond the ids' column the database would refuse the query, not the message.
    id = fields.Integer(strict=True, required=True, validate=validate.Range(min=1, max=MAX_ID))
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))


class HeartbeatMessage(_Message):
    cameras = fields.List(fields.Nested(CameraReport), validate=validate.Length(max=1024))


SCHEMAS = {
    "auth": AuthMessage(),
    "dashboard": DashboardMessage(),
    "heartbeat": HeartbeatMessage(),
}


def parse(raw):
    """Decode and validate one frame into ``(type, fields)``.

    Raises ProtocolError with ``invalid_json``, ``invalid_message``,
    ``unknown_type`` or ``binary_not_supported``."""
    if isinstance(raw, (bytes, bytearray)):
        raise ProtocolError("binary_not_supported", "Send JSON text frames, not binary ones.")
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nesting too deep to parse
        raise ProtocolError("invalid_json", "The message is not valid JSON.") from None
    if not isinstance(message, dict):
        raise ProtocolError("invalid_message", "A message must be a JSON object.")
    kind = message.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("invalid_message", "A message needs a string 'type'.")
    if kind == "heartbeat" and len(message) == 1:
        return kind, message  # the hot path: a plain heartbeat has nothing to validate
    schema = SCHEMAS.get(kind)
    if schema is None:
        raise ProtocolError("unknown_type", f"Unknown message type {kind[:64]!r}.")
    try:
        return kind, schema.load(message)
    except ValidationError as error:
        detail = "; ".join(f"{k}: {v}" for k, v in flatten_errors(error.messages).items())
        raise ProtocolError("invalid_message", f"Invalid {kind} message: {detail}") from None


def encode(message):
    """One message as the text of one frame."""
    return json.dumps(message, separators=(",", ":"))


def error(code, message):
    return {"type": "error", "code": code, "message": message}


def auth_ok(nvr, cameras, heartbeat_interval):
    return {
        "type": "auth_ok", "nvr_id": nvr.id, "hostname": nvr.hostname, "name": nvr.name,
        "heartbeat_interval": heartbeat_interval,
        "cameras": [{"id": c.id, "name": c.name, "channel": c.channel} for c in cameras],
    }


def encoded_heartbeat_ack(now):
    """``heartbeat_ack`` as frame text. The one reply per heartbeat skips the
    JSON encoder: an ISO time has nothing to escape."""
    return f'{{"type":"heartbeat_ack","server_time":"{isoformat(now)}"}}'


def dashboard_ok():
    return {"type": "dashboard_ok"}


# An NVR as the REST API gives it, in broadcasts and snapshots alike.
_NVR = NvrSchema()
# What a snapshot says of each NVR, which ``fleet`` reads as columns to build one.
SNAPSHOT_NVR_FIELDS = tuple(_NVR.fields)


def snapshot(nvrs, cameras):
    """``nvrs``: mappings of ``SNAPSHOT_NVR_FIELDS``; ``cameras``: rows with id,
    nvr_id and status."""
    return {
        "type": "snapshot",
        "nvrs": _NVR.dump(nvrs, many=True),
        "cameras": [{"id": c.id, "nvr_id": c.nvr_id, "status": c.status} for c in cameras],
    }


def nvr_status(t):
    return {
        "type": "nvr_status", "nvr_id": t.nvr_id, "hostname": t.hostname, "name": t.name,
        "status": t.status, "previous_status": t.previous_status, "reason": t.reason,
        "status_version": t.status_version, "last_seen": isoformat(t.last_seen),
        "camera_ids": list(t.camera_ids), "at": isoformat(t.at),
    }


def camera_status(t):
    return {
        "type": "camera_status", "camera_id": t.camera_id, "nvr_id": t.nvr_id,
        "status": t.status, "previous_status": t.previous_status, "reason": t.reason,
        "at": isoformat(t.at),
    }


def nvr_changed(kind, nvr):
    """``nvr_created`` or ``nvr_updated``."""
    return {"type": kind, "nvr": _NVR.dump(nvr)}


def nvr_deleted(nvr_id):
    return {"type": "nvr_deleted", "nvr_id": nvr_id}


def camera_changed(kind, camera):
    """``camera_created`` or ``camera_updated``."""
    return {"type": kind, "camera": CameraSchema().dump(camera)}


def camera_deleted(camera_id, nvr_id):
    return {"type": "camera_deleted", "camera_id": camera_id, "nvr_id": nvr_id}
