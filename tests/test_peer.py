"""The peer wrapper's own decisions, below the socket loop."""

import os
import resource
import socket
import time
from types import SimpleNamespace

import pytest

from vmsapp.realtime.peer import NoReader, Peer, ReaderThread


def make_peer(sock, reader):
    ws = SimpleNamespace(sock=sock, thread=reader, connected=True, ping_interval=25,
                         environ={}, max_message_size=None, ws=None)
    return Peer(ws, "127.0.0.1")


@pytest.fixture
def sock():
    with socket.socket() as sock:
        yield sock


def test_an_agent_heartbeating_more_often_than_pings_gets_none(sock):
    peer = make_peer(sock, NoReader())  # gevent: the connection reads inline
    peer.messages_every(10)
    assert not peer.ws.ping_interval


def test_an_agent_heartbeating_less_often_than_pings_is_still_pinged(sock):
    # Behind a router that cuts silent sockets, its heartbeats alone may be too rare.
    peer = make_peer(sock, NoReader())
    peer.messages_every(60)
    assert peer.ws.ping_interval == 25


def test_pings_from_a_reader_thread_are_left_alone(sock):
    # gthread: simple-websocket's reader adds ping_interval at every ping.
    peer = make_peer(sock, ReaderThread(target=lambda: None))
    peer.messages_every(10)
    assert peer.ws.ping_interval == 25


def test_a_look_without_waiting_sees_frames_on_any_descriptor():
    # select() cannot watch descriptors from 1024 up, and in a worker holding
    # thousands of agents a dashboard's socket is one of those.
    high = 1500
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft <= high:
        resource.setrlimit(resource.RLIMIT_NOFILE, (high + 1, hard))
    client, server = socket.socketpair()
    with client, server, socket.socket(fileno=os.dup2(server.fileno(), high)) as sock:
        peer = make_peer(sock, NoReader())
        assert peer._wait_readable(0) is False
        client.sendall(b"frame")
        assert peer._wait_readable(0) is True


def test_a_peer_heard_from_regularly_is_woken_only_by_its_frames():
    """Each wait moves the one timer to the new deadline: a timer left at an
    older deadline would fire once a silence period for every agent, waking
    the worker for nothing. When the frames stop, it fires, and the wait ends
    no earlier than asked."""
    import gevent

    client, server = socket.socketpair()
    with client, server:
        peer = make_peer(server, NoReader())
        fired = []
        wake = peer._on_timer
        peer._on_timer = lambda: fired.append(time.monotonic()) or wake()

        def send_frames():
            for _ in range(12):
                gevent.sleep(0.05)
                client.send(b"x")

        sender = gevent.spawn(send_frames)
        try:
            for _ in range(12):
                assert peer._wait_readable(0.2) is True
                server.recv(1)  # one frame each: two may come together after a stall
            sender.join()
            assert fired == []

            started = time.monotonic()
            assert peer._wait_readable(0.2) is False
            assert fired and time.monotonic() - started >= 0.2
        finally:
            sender.kill()
            peer._stop_timer()


def test_a_frame_that_came_while_the_worker_was_busy_is_read_not_taken_for_silence():
    """The worker is held up past a peer's deadline (a reconnect storm on a
    slow machine) while the peer's frame arrives: when the event loop runs
    again, the deadline's timer and the socket are due together, and the
    timer may be served first. The peer must get its frame, not an auth
    timeout or a stale mark."""
    import gevent
    from websockets.frames import Frame, Opcode

    client, server = socket.socketpair()
    with client, server:
        ws = SimpleNamespace(sock=server, thread=NoReader(), connected=True, ping_interval=None,
                             environ={}, max_message_size=65536, input_buffer=[],
                             receive_bytes=4096, ws=None)
        peer = Peer(ws, "127.0.0.1")
        receiver = gevent.spawn(peer.receive, 0.05)
        gevent.sleep(0)  # the receiver waits, its timer due in 50 ms
        client.sendall(Frame(Opcode.TEXT, b"hello").serialize(mask=True))
        time.sleep(0.1)  # holds the event loop, as work that never yields does
        try:
            assert receiver.get(timeout=5) == "hello"
        finally:
            peer._stop_timer()
