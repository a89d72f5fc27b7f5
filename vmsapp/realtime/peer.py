"""One WebSocket peer with exactly one writer at a time.

simple-websocket's ``send()`` is not thread-safe (STACK-NOTES): the socket's
own reader thread writes pongs and close replies, and other threads close
connections (replaced, deleted, server stopping). Every write, ours and the
reader thread's, goes through one lock."""

import logging
import threading

from simple_websocket import ConnectionClosed
from wsproto.utilities import LocalProtocolError

log = logging.getLogger(__name__)

# A peer that takes longer than this to accept a frame is treated as gone,
# so no writer stays blocked on a dead TCP connection.
SEND_TIMEOUT = 10.0


class ReaderThread(threading.Thread):
    """simple-websocket's per-socket reader thread, as a daemon: a reader still
    waiting for a vanished peer's close reply must not keep a stopping worker
    alive until its next ping (its socket dies with the process anyway)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, daemon=True, **kwargs)


class _SerializedSocket:
    """The raw socket, with ``send`` under the peer's write lock."""

    def __init__(self, sock, lock):
        self._sock = sock
        self._lock = lock

    def send(self, data):
        with self._lock:
            return self._sock.sendall(data) or len(data)

    def __getattr__(self, name):
        return getattr(self._sock, name)


class Peer:
    """A connected WebSocket: ``send`` and ``close`` are safe from any thread."""

    def __init__(self, ws, address, bearer=None):
        self.ws = ws
        self.address = address
        self.bearer = bearer  # a credential from the upgrade's Authorization header
        self._lock = threading.RLock()
        try:
            ws.sock.settimeout(SEND_TIMEOUT)
        except OSError:
            # The peer left right after the handshake and the reader thread has
            # closed the socket already: receive() will say so.
            self._drop()
        # Route the reader thread's writes (pongs, close replies) through the lock too.
        ws.sock = _SerializedSocket(ws.sock, self._lock)

    @property
    def connected(self):
        return self.ws.connected

    def receive(self, timeout):
        """The next frame, or None after ``timeout``; raises ConnectionClosed."""
        return self.ws.receive(timeout=timeout)

    def send(self, text):
        """Send one frame; raises ConnectionClosed when the peer is gone."""
        with self._lock:
            try:
                self.ws.send(text)
            except (OSError, LocalProtocolError) as error:
                # LocalProtocolError: another thread closed the socket meanwhile.
                self._drop()
                raise ConnectionClosed(1006, str(error)) from None

    def close(self, code, reason=""):
        """Close with ``code``; a no-op when already closed."""
        with self._lock:
            if self.ws.connected:
                try:
                    self.ws.close(code, reason)
                except (ConnectionClosed, OSError):
                    self._drop()
        # Wake the handler thread if it waits in receive().
        self.ws.event.set()

    def _drop(self):
        self.ws.connected = False
        self.ws.event.set()
