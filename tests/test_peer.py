"""The peer wrapper's own decisions, below the socket loop."""

import socket
from types import SimpleNamespace

import pytest

from vmsapp.realtime.peer import Peer


@pytest.fixture
def peer():
    with socket.socket() as sock:
        ws = SimpleNamespace(sock=sock, thread=None, connected=True, ping_interval=25)
        yield Peer(ws, "127.0.0.1")


def test_an_agent_heartbeating_more_often_than_pings_gets_none(peer):
    peer.messages_every(10)
    assert not peer.ws.ping_interval


def test_an_agent_heartbeating_less_often_than_pings_is_still_pinged(peer):
    # Behind a router that cuts silent sockets, its heartbeats alone may be too rare.
    peer.messages_every(60)
    assert peer.ws.ping_interval == 25
