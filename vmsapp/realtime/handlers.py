"""One handler per /ws message type. The loops in ``routes`` call them."""

import logging

from flask import current_app
from sqlalchemy.exc import SQLAlchemyError

from .. import admission, collector, credentials, fleet, presence
from ..clock import now as clock_now
from ..ratelimit import current_limiter
from . import protocol
from .bus import current_bus
from .registry import current_registry
from .sessions import DashboardSession, NvrSession, new_connection_id

log = logging.getLogger(__name__)


def refuse(peer, code, message):
    """Answer with an error and close 1008 (SPEC §4: failed auth, rule 1)."""
    try:
        peer.send(protocol.encode(protocol.error(code, message)))
    finally:
        peer.close(protocol.CLOSE_POLICY, message[:120])


def refuse_credentials(peer, code, message, who):
    """A failed authentication: counted against the address, logged without the secret."""
    current_limiter().failed(peer.address)
    log.warning("auth refused from %s: %s (%s)", peer.address, code, who)
    refuse(peer, code, message)


# What an agent refused by ``admission`` is told, by error code.
AUTH_REFUSALS = {
    admission.INVALID_HOSTNAME: "No NVR is registered with this hostname.",
    admission.INVALID_TOKEN: "Wrong or missing token for this NVR.",
}


def handle_auth(peer, fields):
    """``auth``: the peer is an NVR agent; returns its session, or None when
    refused or, closed 4000, already replaced by a newer connection."""
    now = clock_now()
    if current_limiter().blocked(peer.address):
        refuse(peer, "too_many_attempts", "Too many failed attempts; wait a minute.")
        return None
    hostname = fields["hostname"]
    connection_id = new_connection_id()
    nvr, refused, transition, claim = admission.admit(
        hostname, fields.get("token") or peer.bearer, connection_id, now)
    if refused:
        refuse_credentials(peer, refused, AUTH_REFUSALS[refused],
                           f"hostname {hostname[:100]!r}" if nvr is None else f"nvr {nvr.hostname}")
        return None
    reply = protocol.auth_ok(nvr, nvr.cameras, current_app.config["VMS_HEARTBEAT_INTERVAL"])
    session = NvrSession(peer, nvr.id, nvr.hostname, now, connection_id, claim)
    registry = current_registry()
    if not registry.add_nvr(session):
        log.info("nvr %s from %s replaced before it was registered", nvr.hostname, peer.address)
        return None
    # Newest wins (rule 3), by claim order: agents authenticating together
    # each close the connections that claimed before them, on every worker,
    # so only the last claim's survives. Our claim is committed, so older
    # connections' closes no longer count as disconnects.
    current_bus().close_older(session.nvr_id, claim, protocol.CLOSE_REPLACED,
                              protocol.REPLACED)
    collector.hold.agent_connected()
    if transition is None:
        log.info("nvr %s reconnected from %s while online", session.hostname, peer.address)
    try:
        peer.send(protocol.encode(reply))
    except BaseException:
        # Closed before its auth_ok went out: never served, so the socket
        # loop that unregisters and disconnects sessions never runs for it.
        # Replaced already, it no longer holds the NVR and changes nothing.
        registry.remove_nvr(session)
        if not registry.stopping:
            _disconnect_unserved(session)
        raise
    # Silence counts from auth_ok, not from before the database work above.
    session.touch(clock_now())
    return session


def _disconnect_unserved(session):
    try:
        presence.disconnect(session.nvr_id, session.connection_id, presence.DISCONNECTED,
                            clock_now())
    except SQLAlchemyError:
        log.exception("database error disconnecting nvr %s", session.hostname)


def handle_dashboard(peer, fields):
    """``dashboard``: subscribe, then send ``dashboard_ok`` and a snapshot."""
    config = current_app.config
    if config["VMS_AUTH_MODE"] == "token":
        if current_limiter().blocked(peer.address):
            refuse(peer, "too_many_attempts", "Too many failed attempts; wait a minute.")
            return None
        if credentials.role_of(fields.get("token") or peer.bearer,
                               config["VMS_ADMIN_API_KEY"]) is None:
            refuse_credentials(peer, "unauthorized", "A viewer or admin API key is needed.",
                               "dashboard")
            return None
    session = DashboardSession(peer)
    registry = current_registry()
    # Subscribed before the snapshot is read, so no change falls in between.
    registry.add_dashboard(session)
    try:
        peer.send(protocol.encode(protocol.dashboard_ok()))
        send_snapshot(peer)
    except BaseException:
        # Never served: it must not go on collecting broadcasts.
        registry.remove_dashboard(session)
        raise
    log.info("dashboard connected from %s", peer.address)
    return session


def send_snapshot(peer):
    """Send the whole fleet as it is now."""
    peer.send(fleet.encoded_snapshot())


def handle_heartbeat(session, fields):
    """``heartbeat``: acknowledge; apply camera reports when there are any."""
    now = session.last_seen
    session.peer.send(protocol.encoded_heartbeat_ack(now))
    reports = fields.get("cameras")
    if reports:
        _, unknown = presence.report_cameras(
            session.nvr_id, session.connection_id,
            {report["id"]: report["status"] for report in reports}, now)
        if unknown:
            session.peer.send(protocol.encode(protocol.error(
                "unknown_camera", f"Not cameras of this NVR: {unknown[:20]}")))


# What each kind of connection may send, by phase.
FIRST_MESSAGE = {"auth": handle_auth, "dashboard": handle_dashboard}
NVR_MESSAGES = {"heartbeat": handle_heartbeat}
DASHBOARD_MESSAGES = {}
