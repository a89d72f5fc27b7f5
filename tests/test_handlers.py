"""The /ws message handlers called in-process, for what a live socket cannot
easily provoke."""

import pytest
from simple_websocket import ConnectionClosed
from support import ADMIN_KEY, AnsweringPeer

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
