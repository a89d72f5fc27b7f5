"""Who is connected to this process: NVR sessions and dashboards.

Every access holds one lock; callers get snapshots to iterate, never the
live collections, and all socket I/O happens outside the lock."""

import threading

from flask import current_app

from . import protocol


class Registry:
    def __init__(self):
        self._lock = threading.Lock()
        self._nvrs = {}          # nvr_id -> {connection_id: NvrSession}
        self._dashboards = set()
        self._heard = {}         # nvr_id -> last_seen, heard from since the last flush
        # nvr_id -> the highest claim number heard of: one int per NVR ever
        # connected or replaced here, kept for the process's life, since a
        # connection of a lower claim may still come to register.
        self._newest_claims = {}
        self._stats = None       # what stats() said, until a connection comes or goes
        self.stopping = False    # set on a graceful stop: closes are not disconnects

    # -- NVRs -----------------------------------------------------------------
    def add_nvr(self, session):
        """Register ``session``; or, if a higher claim of its NVR was heard of
        already, close it 4000 instead and return False. A newer connection's
        command to close the older ones (``close_older``) can reach this
        process before an older connection registers here."""
        with self._lock:
            newest = self._newest_claims.get(session.nvr_id, session.claim)
            superseded = session.claim < newest
            if not superseded:
                self._newest_claims[session.nvr_id] = session.claim
                self._nvrs.setdefault(session.nvr_id, {})[session.connection_id] = session
                self._stats = None
        if superseded:
            session.peer.close(protocol.CLOSE_REPLACED, protocol.REPLACED)
        return not superseded

    def remove_nvr(self, session):
        with self._lock:
            self._stats = None
            sessions = self._nvrs.get(session.nvr_id, {})
            sessions.pop(session.connection_id, None)
            if not sessions:
                self._nvrs.pop(session.nvr_id, None)

    def nvr_sessions(self, nvr_id=None):
        """A snapshot of the NVR sessions, all or one NVR's."""
        with self._lock:
            if nvr_id is not None:
                return list(self._nvrs.get(nvr_id, {}).values())
            return [s for sessions in self._nvrs.values() for s in sessions.values()]

    def close_nvr(self, nvr_id, code, reason):
        """Close this process's connections of one NVR."""
        for session in self.nvr_sessions(nvr_id):
            session.peer.close(code, reason)

    def close_older(self, nvr_id, claim, code, reason):
        """Close this process's connections of one NVR whose claim number is
        lower than ``claim``, and remember ``claim``: a connection of a lower
        one registering later is closed as it does (``add_nvr``). Only a newer
        claim closes a connection, so however the commands of agents
        authenticating together cross between workers, the newest survives."""
        with self._lock:
            self._newest_claims[nvr_id] = max(claim, self._newest_claims.get(nvr_id, claim))
            older = [session for session in self._nvrs.get(nvr_id, {}).values()
                     if session.claim < claim]
        for session in older:
            session.peer.close(code, reason)

    def heard_from(self, session):
        """``session``'s agent was heard from, at its ``last_seen``: the next
        ``take_last_seen`` has it. Only what was heard is kept, so the flush
        never walks the NVRs that were not (every NVR of the worker, every
        second, was a few per cent of its CPU at 5,000 NVRs)."""
        with self._lock:
            # An NVR's older connection, not yet closed, may speak last.
            previous = self._heard.get(session.nvr_id)
            if previous is None or session.last_seen > previous:
                self._heard[session.nvr_id] = session.last_seen

    def take_last_seen(self):
        """``{nvr_id: last_seen}`` for NVRs heard from since the last call."""
        with self._lock:
            heard, self._heard = self._heard, {}
        return heard

    # -- Dashboards ----------------------------------------------------------
    def add_dashboard(self, session):
        with self._lock:
            self._dashboards.add(session)
            self._stats = None

    def remove_dashboard(self, session):
        with self._lock:
            self._dashboards.discard(session)
            self._stats = None

    def dashboards(self):
        with self._lock:
            return list(self._dashboards)

    def deliver(self, text):
        """Queue one encoded broadcast for every dashboard of this process."""
        for session in self.dashboards():
            session.offer(text)

    # -- Whole process ---------------------------------------------------------
    def stats(self):
        """Connection counts and the hostnames of the NVRs connected here.
        Worked out again only once a connection has come or gone: the stats
        are read every second (``RedisBus``), and with thousands of NVRs a
        steady fleet would pay for sorting them all each time."""
        with self._lock:
            if self._stats is None:
                self._stats = {
                    "nvr_connections": sum(len(sessions) for sessions in self._nvrs.values()),
                    "dashboard_clients": len(self._dashboards),
                    "nvr_hostnames": sorted({session.hostname for sessions in self._nvrs.values()
                                             for session in sessions.values()}),
                }
            return dict(self._stats)

    def begin_stop(self):
        """Mark the process as stopping; True only for the first caller."""
        with self._lock:
            first, self.stopping = not self.stopping, True
        return first

    def close_all(self, code, reason):
        """Close every connection of this process."""
        for session in self.nvr_sessions():
            session.peer.close(code, reason)
        for session in self.dashboards():
            session.peer.close(code, reason)


EXTENSION_KEY = "vmsapp.registry"


def current_registry():
    """The connection registry of the current app."""
    return current_app.extensions[EXTENSION_KEY]
