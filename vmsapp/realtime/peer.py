"""One WebSocket peer with exactly one writer at a time.

simple-websocket's ``send()`` is not thread-safe (flask-sock issue #85): the socket's
own reader thread writes pongs and close replies, and other threads close
connections (replaced, deleted, server stopping). Every write, ours and the
reader thread's, goes through one lock.

flask-sock builds the connection (``simple_websocket.Server``) from the
request; what the peer needs of it besides its public methods is handed over
through the request itself: the socket in the WSGI environ, and the reader
thread and wake-up event that simple-websocket makes through the
``thread_class`` and ``event_class`` options (``prepare``)."""

import socket
import threading

from flask import g, request
from simple_websocket import ConnectionClosed
from wsproto.utilities import LocalProtocolError

from ..errors import ApiError

# A peer that takes longer than this to accept a frame is treated as gone,
# so no writer stays blocked on a dead TCP connection.
SEND_TIMEOUT = 10.0
# Where the WSGI servers put the client's socket, in the order simple-websocket
# looks for it.
SOCKET_KEYS = ("werkzeug.socket", "gunicorn.socket")
# What a write on a connection closed meanwhile raises: the socket's error, or
# wsproto's refusal to frame a message after a close.
CLOSED_ERRORS = (OSError, LocalProtocolError)


class _SerializedSocket:
    """The client's socket with ``send`` under the peer's write lock, so the
    reader thread's pongs and close replies never interleave with our frames;
    and whole, as simple-websocket expects of ``send``."""

    def __init__(self, sock, lock):
        self._sock = sock
        self._lock = lock

    def send(self, data):
        with self._lock:
            try:
                self._sock.sendall(data)
            except OSError:
                # A write that failed or timed out may have sent part of a
                # frame: nothing more may follow it, and the reader must end.
                try:
                    self._sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                raise
        return len(data)

    def __getattr__(self, name):
        return getattr(self._sock, name)


class _Upgrade:
    """What one upgrade's handler needs of its connection, gathered while
    flask-sock builds it."""

    def __init__(self):
        self.lock = threading.RLock()  # re-entered: our send holds it, then the socket's
        self.reader = None
        self.wakeup = None


def prepare():
    """``before_request`` of /ws: the socket simple-websocket will write
    through, serialized, and a record for the thread and event it will make."""
    upgrade = g.ws_upgrade = _Upgrade()
    for key in SOCKET_KEYS:
        sock = request.environ.get(key)
        if sock is not None:
            sock.settimeout(SEND_TIMEOUT)
            request.environ[key] = _SerializedSocket(sock, upgrade.lock)
            return
    raise ApiError(500, "This server cannot upgrade to a WebSocket.")


def reader_thread(target=None, **_):
    """simple-websocket's ``thread_class``: its reader thread, as a daemon (a
    reader still waiting for a vanished peer's close reply must not keep a
    stopping worker alive), kept so the handler can wait for it to end."""
    thread = threading.Thread(target=target, daemon=True)
    g.ws_upgrade.reader = thread
    return thread


def wakeup_event():
    """simple-websocket's ``event_class``: what ``receive()`` waits on, kept
    so a close from another thread can wake the handler at once."""
    event = threading.Event()
    g.ws_upgrade.wakeup = event
    return event


class Peer:
    """A connected WebSocket: ``send`` and ``close`` are safe from any thread."""

    def __init__(self, ws, address, bearer=None):
        upgrade = g.ws_upgrade
        self.ws = ws
        self.address = address
        self.bearer = bearer  # a credential from the upgrade's Authorization header
        self._lock = upgrade.lock
        self._reader = upgrade.reader
        self._wakeup = upgrade.wakeup

    def receive(self, timeout):
        """The next message, or None after ``timeout``; raises ConnectionClosed."""
        return self.ws.receive(timeout=timeout)

    def send(self, text):
        """Send one message; raises ConnectionClosed when the peer is gone."""
        with self._lock:
            self._send(text)

    def send_all(self, texts):
        """Send several messages, none of another writer's frames between
        them; raises ConnectionClosed when the peer is gone."""
        with self._lock:
            for text in texts:
                self._send(text)

    def _send(self, text):
        try:
            self.ws.send(text)
        except CLOSED_ERRORS as error:
            self._wake()
            raise ConnectionClosed(1006, str(error)) from None

    def close(self, code, reason=""):
        """Close with ``code``; a no-op when already closed."""
        with self._lock:
            if self.ws.connected:
                try:
                    self.ws.close(code, reason)
                except (ConnectionClosed, *CLOSED_ERRORS):
                    pass  # gone meanwhile: nothing left to tell it
        self._wake()

    def finish_close(self, timeout):
        """Wait up to ``timeout`` for the reader thread to end: after a close
        by the server, it reads the peer's close frame (what RFC 6455 asks
        before the TCP connection goes; dropping it with the peer's frames
        unread resets it, and the peer may lose our close frame). The
        handler's last call."""
        if self._reader is not None and not self.ws.connected:
            self._reader.join(timeout)

    def _wake(self):
        """Wake the handler if it waits in ``receive()``: it sees the close."""
        if self._wakeup is not None:
            self._wakeup.set()
