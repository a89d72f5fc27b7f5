"""The WebSocket upgrade of /ws: the handshake checked and answered, and the
endpoint run on the open socket, as flask-sock's ``Sock.route`` does, with a
server class of our own.

simple-websocket answers a handshake by rebuilding the request as bytes for
wsproto, which parses it again with h11: a fifth of the worker's CPU while a
fleet reconnects (BENCHMARKS.md, stop 18). Here the request is parsed and
routed already, and an uncompressed socket read by its own greenlet needs
nothing of wsproto afterwards (``framing.Frames``), so ``WebSocket`` writes
the 101 itself. A socket that negotiates permessage-deflate, or that
simple-websocket's thread reads (gthread), is still answered by wsproto.

A handshake that cannot be answered is refused before either, with the JSON
error of every other bad request: wsproto raised on it, which was a 500."""

import base64
import functools
import logging

import simple_websocket
from flask import Response, current_app, request
from simple_websocket import ConnectionClosed
from websockets.utils import accept_key
from wsproto.utilities import RemoteProtocolError

from ..errors import RECOVERY_HEADERS, ApiError
from .framing import read_by_websockets
from .peer import NoReader

log = logging.getLogger(__name__)

# RFC 6455 §4.2.1: the one version of the protocol, which a 426 names.
VERSION = RECOVERY_HEADERS[426]["Sec-WebSocket-Version"]
KEY_BYTES = 16
OPTIONS_KEY = "WEBSOCKET_OPTIONS"


def check_handshake():
    """``before_request`` of /ws: refuse an upgrade without the host, key and
    version this server can answer (RFC 6455 §4.2.1), 400 or 426, changing
    nothing. Routing has checked ``Upgrade`` and ``Connection`` already: a
    request without them gets werkzeug's 400."""
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


class WebSocket(simple_websocket.Server):
    """simple-websocket's server connection, whose handshake leaves wsproto
    out when the socket's frames are websockets' (``framing.read_by_websockets``)."""

    def __init__(self, environ, **options):
        inline = options.get("thread_class") is NoReader
        self._websockets_frames = read_by_websockets(environ, inline)
        super().__init__(environ, **options)

    def handshake(self):
        """Answer the checked handshake (``check_handshake``): 101 and the accept key."""
        if not self._websockets_frames:
            super().handshake()
            return
        self.sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                          + accept_key(self.environ["HTTP_SEC_WEBSOCKET_KEY"]).encode()
                          + b"\r\n\r\n")
        self.ws = None  # wsproto's state, never used on this socket
        self.connected = True


def route(bp, rule):
    """Register ``endpoint(ws)`` as the WebSocket endpoint ``rule`` of ``bp``:
    ``ws`` is a ``WebSocket`` with the app's ``WEBSOCKET_OPTIONS``, open, and
    the endpoint closes it (``Peer.finish_close``) before it returns."""

    def decorator(endpoint):
        @functools.wraps(endpoint)
        def upgraded():
            try:
                ws = WebSocket(request.environ, **current_app.config[OPTIONS_KEY])
            except RemoteProtocolError as error:  # wsproto's handshake, nothing sent yet
                raise ApiError(400, f"Cannot upgrade: {error}") from error
            try:
                endpoint(ws)
            except ConnectionClosed:
                pass  # the peer went first
            except Exception:
                # After the 101 no HTTP error may follow: the connection ends.
                log.exception("error serving WebSocket %s", request.remote_addr)
            return _Handled(ws.mode)

        bp.route(rule, websocket=True)(upgraded)
        return endpoint

    return decorator


class _Handled(Response):
    """What the endpoint returns once its socket is done: no HTTP response
    may follow the 101 on that connection."""

    def __init__(self, mode):
        super().__init__()
        self._mode = mode

    def __call__(self, environ, start_response):
        if self._mode == "gunicorn":
            # gunicorn's workers take this as "the app closed the connection".
            raise StopIteration()
        if self._mode == "werkzeug":
            return super().__call__(environ, start_response)
        return []
