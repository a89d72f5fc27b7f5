"""The schema layer: every REST body, query string and response shape.

WebSocket messages have their schemas in ``realtime.protocol``, on the same
library."""

import re

from marshmallow import Schema, ValidationError, fields, pre_load, validate

from .clock import isoformat
from .models import STATUSES

# RFC 1123 host names (letters, digits, hyphens, dot-separated labels); an
# underscore is tolerated because NVR firmware defaults often carry one.
# \Z, not $: $ also matches before a trailing newline, which would let "host\n" in.
# RFC 1123 labels, ECMA-262 compatible so OpenAPI tools can use it; the
# 253-character limit is a Length check beside it.
HOSTNAME_PATTERN = (r"^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
                    r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*$")
HOSTNAME = re.compile(HOSTNAME_PATTERN)
MAX_LIMIT = 1000
# The id columns are 32-bit integers on PostgreSQL: a larger id or offset can
# name no row, and sent to the database it would be an error, not an answer.
MAX_ID = 2**31 - 1


def validate_hostname(value):
    # fullmatch: "$" alone would also accept a trailing newline.
    if len(value) > 253 or not HOSTNAME.fullmatch(value):
        raise ValidationError(
            "Not a valid hostname (letters, digits, hyphens and dots, at most 253).")


class UtcDateTime(fields.DateTime):
    """ISO 8601 UTC with a ``Z`` suffix."""

    def _serialize(self, value, attr, obj, **kwargs):
        return isoformat(value)


class Text(fields.String):
    """A string both databases can store: PostgreSQL refuses NUL characters,
    and an unpaired surrogate (valid in JSON) has no UTF-8 encoding at all."""

    default_error_messages = {
        "unstorable": "Must not contain NUL characters or unpaired surrogates.",
    }

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise self.make_error("unstorable") from None
        if "\x00" in value:
            raise self.make_error("unstorable")
        return value


def text(max_length, **kwargs):
    """A string field that is not blank and not longer than ``max_length``."""
    return Text(validate=[
        validate.Length(min=1, max=max_length),
        validate.Regexp(r"\S", error="Must not be blank."),
    ], **kwargs)


class IpAddress(fields.IP):
    """An IPv4 or IPv6 address, loaded as its canonical text: the column holds
    text, and marshmallow's own field yields ``ipaddress`` objects no database
    driver binds to a string column."""

    def _deserialize(self, value, attr, data, **kwargs):
        address = super()._deserialize(value, attr, data, **kwargs)
        # A zone ("fe80::1%eth0") only means something on the host that wrote it.
        if getattr(address, "scope_id", None):
            raise self.make_error("invalid_ip")
        return address.compressed


def strict_int(**kwargs):
    """An integer field that refuses strings and floats."""
    return fields.Integer(strict=True, **kwargs)


class ReadOnlyFields:
    """Answers a write to a read-only field with a message naming it."""

    read_only = ()

    @pre_load
    def reject_read_only(self, data, **kwargs):
        if isinstance(data, dict):
            errors = {name: ["Read-only field."] for name in self.read_only if name in data}
            if errors:
                raise ValidationError(errors)
        return data


# ---- NVRs -----------------------------------------------------------------

class NvrSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String()
    hostname = fields.String()
    ip_address = fields.String(allow_none=True)
    location = fields.String(allow_none=True)
    status = fields.String()
    last_seen = UtcDateTime(allow_none=True)
    status_version = fields.Integer()
    created_at = UtcDateTime()
    updated_at = UtcDateTime()


class CameraSchema(Schema):
    id = fields.Integer()
    nvr_id = fields.Integer()
    name = fields.String()
    channel = fields.Integer(allow_none=True)
    status = fields.String()
    created_at = UtcDateTime()
    updated_at = UtcDateTime()


class NvrCreatedSchema(NvrSchema):
    token = fields.String(metadata={"description": "The NVR's token, shown this once."})


class TokenSchema(Schema):
    token = fields.String(metadata={"description": "The new token, shown this once."})


class NvrDetailSchema(NvrSchema):
    cameras = fields.List(fields.Nested(CameraSchema))


NVR_PRESENCE_FIELDS = ("id", "status", "last_seen", "status_version", "created_at", "updated_at")


class NvrWriteSchema(ReadOnlyFields, Schema):
    read_only = NVR_PRESENCE_FIELDS

    name = text(200, required=True)
    hostname = Text(required=True, validate=validate_hostname,
                    metadata={"pattern": HOSTNAME_PATTERN, "maxLength": 253})
    ip_address = IpAddress(allow_none=True)
    location = Text(allow_none=True, validate=validate.Length(max=200))


class NvrUpdateSchema(NvrWriteSchema):
    """A PATCH body: any of the writable fields."""

    def __init__(self, **kwargs):
        super().__init__(partial=True, **kwargs)


class CameraCreateSchema(ReadOnlyFields, Schema):
    read_only = ("id", "status", "created_at", "updated_at")

    nvr_id = strict_int(required=True, validate=validate.Range(min=1, max=MAX_ID))
    name = text(200, required=True)
    channel = strict_int(allow_none=True, load_default=None,
                         validate=validate.Range(min=0, max=1_000_000))


class CameraUpdateSchema(ReadOnlyFields, Schema):
    read_only = ("id", "nvr_id", "status", "created_at", "updated_at")

    name = text(200)
    channel = strict_int(allow_none=True, validate=validate.Range(min=0, max=1_000_000))


# ---- Lists ------------------------------------------------------------------

class PageArgs(Schema):
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=MAX_LIMIT))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0, max=MAX_ID))


class NvrListArgs(PageArgs):
    status = fields.String(validate=validate.OneOf(STATUSES))
    q = Text(validate=validate.Length(max=200))


class CameraListArgs(PageArgs):
    nvr_id = fields.Integer(validate=validate.Range(min=1, max=MAX_ID))
    status = fields.String(validate=validate.OneOf(STATUSES))


def page_of(item_schema):
    """A ``{"items": [...], "total": N}`` page of ``item_schema``."""
    return type(f"{item_schema.__name__}Page", (Schema,), {
        "items": fields.List(fields.Nested(item_schema)),
        "total": fields.Integer(),
    })


class StatusEventSchema(Schema):
    id = fields.Integer()
    nvr_id = fields.Integer()
    camera_id = fields.Integer(allow_none=True)
    from_status = fields.String()
    to_status = fields.String()
    reason = fields.String()
    at = UtcDateTime()


class WorkerStatsSchema(Schema):
    worker = fields.String()
    pid = fields.Integer()
    reported_at = fields.String(metadata={"description": "When the worker last reported (UTC)."})
    nvr_connections = fields.Integer()
    dashboard_clients = fields.Integer()
    nvr_hostnames = fields.List(fields.String())


class StatsSchema(Schema):
    nvr_connections = fields.Integer()
    dashboard_clients = fields.Integer()
    nvr_hostnames = fields.List(fields.String())
    workers = fields.List(fields.Nested(WorkerStatsSchema),
                          metadata={"description": "One row per live worker process."})
    partial = fields.Boolean(metadata={
        "description": "Present and true when Redis is unreachable: counts are this worker's."})
    nvrs_total = fields.Integer()
    nvrs_online = fields.Integer()
    cameras_total = fields.Integer()
    cameras_online = fields.Integer()


NvrPage = page_of(NvrSchema)
CameraPage = page_of(CameraSchema)
StatusEventPage = page_of(StatusEventSchema)




class HealthSchema(Schema):
    status = fields.String()
