"""The one JSON error shape, ``{"error": {"code", "message"}}``, for every failure."""

import logging

from flask import jsonify
from marshmallow import Schema, fields
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
    415: "unsupported_media_type", 422: "invalid_field", 426: "upgrade_required",
    429: "too_many_requests", 500: "internal_error", 503: "unavailable",
}


def flatten_errors(messages, prefix=""):
    """marshmallow/webargs error messages as ``{"field.path": "text"}``."""
    flat = {}
    if isinstance(messages, dict):
        for key, value in messages.items():
            if key in ("json", "query", "view_args", "path") and not prefix:
                flat.update(flatten_errors(value))
                continue
            name = "body" if key == "_schema" else str(key)
            flat.update(flatten_errors(value, f"{prefix}.{name}" if prefix else name))
    elif isinstance(messages, list) and messages and all(isinstance(m, str) for m in messages):
        flat[prefix or "body"] = " ".join(messages)
    elif isinstance(messages, list):
        for index, value in enumerate(messages):
            flat.update(flatten_errors(value, f"{prefix}.{index}" if prefix else str(index)))
    else:
        flat[prefix or "body"] = str(messages)
    return flat


class ErrorDetailSchema(Schema):
    code = fields.String(metadata={"description": "Stable, machine-readable error code."})
    message = fields.String(metadata={"description": "What went wrong, naming the field."})
    fields = fields.Dict(keys=fields.String(), values=fields.String(),
                         metadata={"description": "Invalid fields and what is wrong with each."})


class ErrorSchema(Schema):
    """The one error shape, as the OpenAPI document describes it."""

    error = fields.Nested(ErrorDetailSchema)


class ApiError(Exception):
    """An error a handler raises to answer with ``status`` and the JSON shape."""

    def __init__(self, status, message, code=None, fields=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or CODES.get(status, "error")
        self.fields = fields


# Headers that tell a client how to recover from the status.
RECOVERY_HEADERS = {
    401: {"WWW-Authenticate": 'Bearer realm="vmsapp"'},
    # The protocol and versions this server speaks (RFC 9110 §15.5.22, RFC 6455 §4.4).
    426: {"Upgrade": "websocket", "Sec-WebSocket-Version": "13"},
    429: {"Retry-After": "60"},
}


def error_response(status, message, code=None, fields=None):
    """A JSON error response in the one shape."""
    body = {"code": code or CODES.get(status, "error"), "message": message}
    if fields:
        body["fields"] = fields
    return jsonify(error=body), status, RECOVERY_HEADERS.get(status, {})


def handle_api_error(error):
    return error_response(error.status, error.message, error.code, error.fields)


def handle_http_exception(error):
    response, status, headers = _http_error_response(error)
    # Keep the headers the exception carries, such as Allow on a 405 (RFC 9110).
    carried = [(k, v) for k, v in error.get_headers() if k.lower() != "content-type"]
    return response, status, [*headers.items(), *carried]


def _http_error_response(error):
    data = getattr(error, "data", None) or {}
    messages = data.get("messages")
    if error.code == 400 and messages:
        return error_response(400, "The request body is not valid JSON.", "invalid_json")
    if error.code == 422 and messages:
        fields = flatten_errors(messages)
        summary = "; ".join(f"{name}: {text}" for name, text in fields.items())
        return error_response(422, summary, "invalid_field", fields)
    if error.code == 413:
        return error_response(413, "The request body is larger than 1 MiB.")
    return error_response(error.code or 500, error.description or error.name)


def handle_database_down(error):
    log.error("database unavailable: %s", error.orig if hasattr(error, "orig") else error)
    return error_response(503, "The database is not answering; try again shortly.")


def handle_unexpected(error):
    log.exception("unhandled error")
    return error_response(500, "Internal server error.")


def register_error_handlers(app):
    """Route every error through the one shape (replaces flask-smorest's own)."""
    app.register_error_handler(ApiError, handle_api_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(OperationalError, handle_database_down)
    app.register_error_handler(Exception, handle_unexpected)
