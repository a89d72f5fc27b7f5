"""The /ws message handlers called in-process, for what a live socket cannot
easily provoke."""

import pytest
import sqlalchemy as sa
from rows import make_agent
from simple_websocket import ConnectionClosed
from support import ADMIN_KEY, AnsweringPeer

from vmsapp.extensions import db
from vmsapp.models import Nvr
from vmsapp.realtime import handlers
from vmsapp.realtime.registry import current_registry


class LeavingPeer(AnsweringPeer):
    """A dashboard that is gone by the time its snapshot is sent."""

    def send(self, text):
        if '"snapshot"' in text:
            raise ConnectionClosed(1006, "gone")
        super().send(text)


def test_a_dashboard_that_never_got_its_snapshot_is_not_left_subscribed(app):
    with app.app_context():
        peer = LeavingPeer()

        with pytest.raises(ConnectionClosed):
            handlers.handle_dashboard(peer, {"token": ADMIN_KEY})

        assert peer.sent == ['{"type":"dashboard_ok"}']
        assert current_registry().dashboards() == []


class ReplacedPeer(AnsweringPeer):
    """An agent closed (by a newer connection, or gone) before its auth_ok is sent."""

    def send(self, text):
        raise ConnectionClosed(4000, "replaced")


def test_an_agent_that_never_got_its_auth_ok_is_not_left_registered(app):
    with app.app_context():
        _, _, token = make_agent()

        with pytest.raises(ConnectionClosed):
            handlers.handle_auth(ReplacedPeer(), {"hostname": "nvr-a", "token": token})

        assert current_registry().nvr_sessions() == []
        # Nobody holds it: offline again at once, not left online for the sweep.
        nvr = db.session.scalar(sa.select(Nvr).where(Nvr.hostname == "nvr-a"))
        assert (nvr.status, nvr.status_version) == ("offline", 2)


def test_a_heartbeat_ack_gives_the_server_time_in_utc_to_the_millisecond():
    """SPEC §3: ISO 8601 UTC with a Z, whatever zone the time was read in."""
    from datetime import datetime, timedelta, timezone

    from vmsapp.realtime import protocol

    utc = datetime(2026, 11, 27, 10, 0, 0, 123456, tzinfo=timezone.utc)
    paris = utc.astimezone(timezone(timedelta(hours=1)))
    for moment in (utc, paris):
        assert protocol.encoded_heartbeat_ack(moment) == (
            '{"type":"heartbeat_ack","server_time":"2026-11-27T10:00:00.123Z"}')
