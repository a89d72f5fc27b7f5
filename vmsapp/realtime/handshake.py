"""The checks an upgrade to /ws passes before simple-websocket answers it.

A handshake that cannot be answered is refused here with the JSON error of
every other bad request, changing nothing: wsproto would raise on it inside
flask-sock's route, which is a 500."""

import base64

from flask import current_app, request

from ..errors import RECOVERY_HEADERS, ApiError, error_response

# RFC 6455 §4.2.1: the one version of the protocol, which a 426 names.
VERSION = RECOVERY_HEADERS[426]["Sec-WebSocket-Version"]
KEY_BYTES = 16


def check():
    """Refuse an upgrade without the host, key and version this server can
    answer (RFC 6455 §4.2.1): 400 or 426. Routing has checked ``Upgrade`` and
    ``Connection`` already: a request without them gets werkzeug's 400."""
    environ = request.environ
    if environ.get("HTTP_SEC_WEBSOCKET_VERSION") != VERSION:
        raise ApiError(426, f"Sec-WebSocket-Version must be {VERSION}.")
    if not environ.get("HTTP_HOST"):
        raise ApiError(400, "An upgrade needs a Host header.")
    try:
        key = base64.b64decode(environ.get("HTTP_SEC_WEBSOCKET_KEY", ""), validate=True)
    except ValueError:  # not base64 (binascii.Error), or not even ASCII
        key = b""
    if len(key) != KEY_BYTES:
        raise ApiError(400, f"Sec-WebSocket-Key must be {KEY_BYTES} bytes in base64.")


def decline_compression():
    """Unless VMS_WS_COMPRESSION is on, the handshake never sees the peer's
    offer of permessage-deflate, so the socket is set up uncompressed."""
    if not current_app.config["VMS_WS_COMPRESSION"]:
        request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)


def refuse_unparsable(error):
    """What wsproto refuses in a handshake that passed ``check`` (a header h11
    cannot parse, say): a 400, before anything was sent."""
    return error_response(400, f"Cannot upgrade: {error}")
