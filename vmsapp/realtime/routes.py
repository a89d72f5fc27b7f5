"""The /ws endpoint: moves frames between a socket and the handlers, nothing more."""

import logging
import time

from flask import Blueprint, current_app, request
from simple_websocket import ConnectionClosed
from sqlalchemy.exc import SQLAlchemyError
from wsproto.utilities import RemoteProtocolError

from .. import presence
from ..clock import now as clock_now
from ..credentials import bearer
from ..errors import ApiError
from ..extensions import db, sock
from . import handshake, protocol
from .handlers import DASHBOARD_MESSAGES, FIRST_MESSAGE, NVR_MESSAGES, refuse, send_snapshot
from .peer import Peer, prepare
from .registry import current_registry
from .sessions import MessageRate, NvrSession

log = logging.getLogger(__name__)

bp = Blueprint("realtime", __name__)

# Consecutive refused messages after which a peer is closed (rule 2).
MAX_STRIKES = 10
# How often a dashboard's thread looks for frames from its peer between broadcasts.
DASHBOARD_POLL = 0.25
# After the server closes, how long it waits for the peer's close frame before
# dropping the TCP connection: dropping it with the peer's frames still unread
# resets it, and the peer may lose what was sent last (the error saying why).
CLOSE_REPLY_WAIT = 1.0


@bp.before_request
def refuse_while_stopping():
    """A stopping worker takes no new sockets: the client gets 503 and retries,
    reaching the next worker, instead of being accepted and closed with 1001."""
    if current_registry().stopping:
        raise ApiError(503, "The server is restarting; reconnect shortly.")


bp.before_request(handshake.check)
bp.before_request(handshake.decline_compression)
bp.before_request(prepare)
bp.register_error_handler(RemoteProtocolError, handshake.refuse_unparsable)
# wsproto's refusal of a permessage-deflate offer it cannot parse (with
# VMS_WS_COMPRESSION on); anything after the 101 is caught in ``websocket``.
bp.register_error_handler(ValueError, handshake.refuse_unparsable)


@sock.route("/ws", bp=bp)
def websocket(ws):
    # Non-browser clients may send their credential in the upgrade request.
    peer = Peer(ws, request.remote_addr, bearer(request.headers.get("Authorization")))
    try:
        _serve(peer)
    except ConnectionClosed:
        pass  # the peer went first
    except Exception:
        # After the 101 no HTTP error may follow: the connection ends here.
        log.exception("error serving WebSocket %s", peer.address)
        peer.close(protocol.CLOSE_INTERNAL_ERROR, "internal error")
    finally:
        peer.finish_close(CLOSE_REPLY_WAIT)


def _serve(peer):
    session = _authenticate(peer)
    if session is None:
        return
    rate = MessageRate(current_app.config["VMS_MESSAGE_RATE"],
                       current_app.config["VMS_MESSAGE_BURST"])
    if isinstance(session, NvrSession):
        _serve_nvr(session, rate)
    else:
        _serve_dashboard(session, rate)


def _authenticate(peer):
    """Wait for ``auth`` or ``dashboard`` (rule 1); the session, or None."""
    try:
        raw = peer.receive(current_app.config["VMS_HEARTBEAT_INTERVAL"])
        if raw is None:
            refuse(peer, "auth_timeout", "No auth or dashboard message in time.")
            return None
        kind, fields = protocol.parse(raw)
        handler = FIRST_MESSAGE.get(kind)
        if handler is None:
            refuse(peer, "unexpected_message", "The first message must be auth or dashboard.")
            return None
        return handler(peer, fields)
    except protocol.ProtocolError as error:
        refuse(peer, error.code, error.message)
    except SQLAlchemyError:
        log.exception("database error while authenticating %s", peer.address)
        refuse(peer, "unavailable", "The server cannot reach its database; retry later.")
    finally:
        db.session.remove()
    return None


def _serve_nvr(session, rate):
    peer = session.peer
    registry = current_registry()
    stale_after = current_app.config["VMS_STALE_AFTER"]
    strikes = 0
    try:
        while strikes < MAX_STRIKES and not registry.stopping:
            # The server watches for silence itself (rule 4): pings don't count.
            remaining = session.last_message + stale_after - time.monotonic()
            if remaining <= 0:
                presence.disconnect(session.nvr_id, session.connection_id, presence.STALE,
                                    clock_now())
                peer.close(protocol.CLOSE_STALE, "heartbeat timeout")
                return
            raw = peer.receive(remaining)
            if raw is not None:
                session.touch(clock_now())
                registry.heard_from(session)
                if _within_rate(peer, rate):
                    strikes = _dispatch(session, raw, NVR_MESSAGES, strikes)
        _close_after_loop(peer, registry)
    finally:
        registry.remove_nvr(session)
        if not registry.stopping:
            _safely(presence.disconnect, session.nvr_id, session.connection_id,
                    presence.DISCONNECTED, clock_now())


def _serve_dashboard(session, rate):
    peer = session.peer
    registry = current_registry()
    strikes = 0
    try:
        while strikes < MAX_STRIKES and not registry.stopping:
            if session.snapshot_requested:
                session.snapshot_requested = False
                send_snapshot(peer)
            if session.overflowed:
                log.warning("dashboard %s dropped: it could not keep up", peer.address)
                peer.close(protocol.CLOSE_TOO_SLOW, "too slow to keep up, reconnect")
                return
            batch = session.take(DASHBOARD_POLL)
            if batch:
                peer.send_all(batch)
            raw = peer.receive(0)
            if raw is not None and _within_rate(peer, rate):
                strikes = _dispatch(session, raw, DASHBOARD_MESSAGES, strikes)
        _close_after_loop(peer, registry)
    finally:
        registry.remove_dashboard(session)
        log.info("dashboard %s disconnected", peer.address)


def _close_after_loop(peer, registry):
    """The peer is still there when its loop ends: the server is stopping, or
    the peer kept sending what the server refuses."""
    if registry.stopping:
        peer.close(protocol.CLOSE_GOING_AWAY, "server going away")
    else:
        peer.close(protocol.CLOSE_POLICY, "too many invalid messages")


def _within_rate(peer, rate):
    """Admit one message, or refuse it: told once, closed 1008 if it goes on."""
    if rate.admit():
        return True
    if rate.excess == 1:
        peer.send(protocol.encode(protocol.error(
            "rate_limited", f"More than {rate.rate:g} messages a second; slow down.")))
    elif rate.excess > rate.burst:
        log.warning("closing %s: it kept sending too fast", peer.address)
        peer.close(protocol.CLOSE_POLICY, "too many messages")
    return False


def _dispatch(session, raw, handlers, strikes):
    """Handle one frame; returns the updated count of consecutive refusals."""
    peer = session.peer
    try:
        kind, fields = protocol.parse(raw)
        handler = handlers.get(kind)
        if handler is None:
            raise protocol.ProtocolError("unexpected_message",
                                         f"A {kind} message is not expected here.")
        handler(session, fields)
        return 0
    except protocol.ProtocolError as error:
        peer.send(protocol.encode(protocol.error(error.code, error.message)))
        return strikes + 1
    except SQLAlchemyError:
        log.exception("database error handling a message from %s", peer.address)
        peer.send(protocol.encode(protocol.error("unavailable", "Database error; retry later.")))
        return strikes
    except ConnectionClosed:
        raise
    except Exception:
        # A bug must cost one reply, not the connection or the worker.
        log.exception("error handling a message from %s", peer.address)
        peer.send(protocol.encode(protocol.error("internal_error", "The server failed.")))
        return strikes + 1
    finally:
        if db.session.registry.has():  # a plain heartbeat never opens one
            db.session.remove()


def _safely(function, *args):
    try:
        function(*args)
    except SQLAlchemyError:
        log.exception("database error in %s", function.__name__)
    finally:
        db.session.remove()
