"""One WebSocket peer with exactly one writer at a time.

simple-websocket's ``send()`` is not thread-safe (STACK-NOTES): the socket's
own reader thread writes pongs and close replies, and other threads close
connections (replaced, deleted, server stopping). Every write, ours and the
reader thread's, goes through one lock.

Under gevent there is no reader: the connection's own greenlet reads in
``receive`` and parses the frames itself (``framing``). A separate reader
cost one more greenlet switch, an event and a selector per frame, about a
third of a heartbeat's CPU (BENCHMARKS.md)."""

import logging
import math
import select
import socket
import threading
import time

from gevent import get_hub, getcurrent, monkey
from gevent.socket import cancel_wait
from gevent.socket import wait as wait_on_watcher
from simple_websocket import ConnectionClosed
from wsproto.frame_protocol import CloseReason

from .framing import CLOSED_ERRORS, frames_for

log = logging.getLogger(__name__)

# Never yields to gevent, whatever monkey-patching did to the select module.
_poll = monkey.get_original("select", "poll")

# A peer that takes longer than this to accept a frame is treated as gone,
# so no writer stays blocked on a dead TCP connection.
SEND_TIMEOUT = 10.0
# How far from the asked deadline a restarted timer may fire, either way
# (``Peer._schedule_wake``): far inside the half second after VMS_STALE_AFTER
# that stale detection is allowed.
TIMER_SLACK = 0.05


class ReaderThread(threading.Thread):
    """simple-websocket's per-socket reader thread, as a daemon: a reader still
    waiting for a vanished peer's close reply must not keep a stopping worker
    alive until its next ping (its socket dies with the process anyway)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, daemon=True, **kwargs)


class NoReader:
    """Given to simple-websocket as its thread class under gevent: the reader
    it would start never runs; ``Peer.receive`` reads instead."""

    def __init__(self, target=None, **_):
        self.name = "inline reader"

    def start(self):
        """Nothing to start: the connection's greenlet reads."""


def reader_class():
    """``NoReader`` in a gevent worker, ``ReaderThread`` anywhere else."""
    return NoReader if monkey.is_module_patched("socket") else ReaderThread


class _Timeout(Exception):
    pass


def _send_whole(sock, data):
    """Send all of ``data``; its length. One send() takes a small frame whole,
    where gevent's sendall first asks the kernel for its buffer size, a system
    call per frame."""
    sent = sock.send(data)
    if sent < len(data):
        sock.sendall(memoryview(data)[sent:])
    return len(data)


def _write(sock, chunks):
    """Send ``chunks`` in one write; an empty last chunk (websockets' end of
    stream) then shuts the socket for writing, so a peer that waits for the
    server to close after the closing handshake need not wait long."""
    data = b"".join(chunks)
    if data:
        _send_whole(sock, data)
    if chunks and not chunks[-1]:
        sock.shutdown(socket.SHUT_WR)


class _SerializedSocket:
    """The raw socket, with ``send`` under the peer's write lock."""

    def __init__(self, sock, lock):
        self._sock = sock
        self._lock = lock

    def send(self, data):
        """All of ``data``, as ``sendall``: simple-websocket expects that."""
        with self._lock:
            return _send_whole(self._sock, data)

    def __getattr__(self, name):
        return getattr(self._sock, name)


class Peer:
    """A connected WebSocket: ``send`` and ``close`` are safe from any thread."""

    def __init__(self, ws, address, bearer=None):
        self.ws = ws
        self.address = address
        self.bearer = bearer  # a credential from the upgrade's Authorization header
        # Not re-entrant, as nothing that holds it writes through ``ws.sock``:
        # under gevent an RLock is pure Python, five calls more a message.
        self._lock = threading.Lock()
        self._readable = None  # under gevent: the socket's read watcher (see receive)
        self._timer = None  # under gevent: wakes receive at a deadline (see _wait_readable)
        self._timer_period = math.inf
        self._waiting = None  # the greenlet waiting in _wait_readable, if one is
        try:
            ws.sock.settimeout(SEND_TIMEOUT)
        except OSError:
            # The peer left right after the handshake and the reader thread has
            # closed the socket already: receive() will say so.
            self._drop()
        inline = isinstance(ws.thread, NoReader) and ws.connected
        if inline:
            self._readable = get_hub().loop.io(ws.sock.fileno(), 1)
            self._next_ping = time.monotonic() + (ws.ping_interval or 0)
        self._frames = frames_for(ws)
        self._sock = ws.sock  # the inline reader skips _SerializedSocket's __getattr__ detour
        # Route the reader thread's writes (pongs, close replies) through the lock too.
        ws.sock = _SerializedSocket(ws.sock, self._lock)

    @property
    def connected(self):
        return self.ws.connected

    def receive(self, timeout):
        """The next frame, or None after ``timeout``; raises ConnectionClosed."""
        if self._readable is None:
            return self.ws.receive(timeout=timeout)
        return self._receive_inline(timeout)

    def _receive_inline(self, timeout):
        ws = self.ws
        deadline = time.monotonic() + timeout
        while not ws.input_buffer:
            if not ws.connected:
                raise ConnectionClosed(ws.close_reason, ws.close_message)
            now = time.monotonic()
            wake = deadline
            if ws.ping_interval:
                if now >= self._next_ping:
                    self._ping(now)
                    continue
                wake = min(wake, self._next_ping)
            try:
                readable = self._wait_readable(wake - now)
            except (ConnectionClosed, OSError):
                continue  # close() woke us: the loop sees the peer is gone
            if readable:
                self._read_available()
            elif time.monotonic() >= deadline:
                return None
        return ws.input_buffer.pop(0)

    def _wait_readable(self, timeout):
        """Whether the socket became readable within ``timeout``; raises what
        ``close()`` throws in to wake us.

        One timer per peer (a timeout object per wait was 3-4 % of a worker's
        CPU), moved to each wait's deadline: ``_schedule_wake``. With no time
        left it only asks the kernel, in one poll(): a dashboard
        looks for frames after every batch it writes, and a trip through the
        event loop each time would delay it behind every other socket's work."""
        if timeout <= 0:
            fileno = self._sock.fileno()
            if fileno < 0:
                return True  # closed meanwhile: the read will say so
            # The real poll(): gevent's select yields to the loop even with no
            # timeout, and select() cannot watch descriptors from 1024 up.
            poller = _poll()
            poller.register(fileno, select.POLLIN)
            return bool(poller.poll(0))
        now = time.monotonic()
        at = now + timeout
        while True:
            self._schedule_wake(at, now)
            self._waiting = getcurrent()
            try:
                wait_on_watcher(self._readable)
                return True
            except _Timeout:
                now = time.monotonic()
                if now >= at:
                    # One look without waiting: after a stretch of work that never
                    # yielded, the timer and the socket come due in the same turn
                    # of the event loop, which may serve the timer first; what came
                    # meanwhile was in time (else: auth_timeout, a stale mark).
                    return self._wait_readable(0)
            finally:
                self._waiting = None

    def _schedule_wake(self, at, now):
        """Have the timer fire at ``at``, give or take ``TIMER_SLACK``; ``now``
        is the caller's reading of the clock.

        An agent waits for its silence deadline, one silence period after its
        last message, so nearly every wait asks for the delay the last one
        did: the timer is restarted from now (libev's ``ev_timer_again``, well
        under a microsecond). Left armed for the old deadline instead, it would
        fire once a silence period for every agent and wake the worker for
        nothing, each firing costing about what a heartbeat does (BENCHMARKS.md).
        Any other deadline gets a timer of its own. A restarted timer that
        fires a little early wakes us before ``at``; we wait on, on a new one."""
        if self._timer is not None and abs(at - now - self._timer_period) <= TIMER_SLACK:
            self._timer.again(self._on_timer)
        else:
            self._arm_timer(at, now)

    def _arm_timer(self, at, now):
        self._stop_timer()
        delay = max(0.0, at - now)
        # Repeating, which ``again`` needs (with no repeat it would stop the
        # timer, and the wait would last until a frame came), so never 0;
        # ``_on_timer`` stops it each time it fires.
        self._timer_period = max(delay, TIMER_SLACK)
        self._timer = get_hub().loop.timer(delay, self._timer_period, ref=False)
        self._timer.start(self._on_timer)

    def _on_timer(self):
        """In the hub: wake the connection's greenlet if it is waiting in
        ``_wait_readable`` (a no-op otherwise), as gevent's own timeouts do."""
        self._timer.stop()
        if self._waiting is not None:
            self._waiting.throw(_Timeout())

    def _stop_timer(self):
        if self._timer is not None:
            self._timer.close()
            self._timer = None

    def _read_available(self):
        """Parse what the socket holds (messages to the input buffer; pongs
        and close replies written). False when the connection is gone."""
        try:
            data = self._sock.recv(self.ws.receive_bytes)
            if not data:
                raise OSError("connection closed by peer")
            replies = self._frames.receive(data)
            if replies:
                with self._lock:
                    _write(self._sock, replies)
            return True
        except (OSError, *CLOSED_ERRORS):
            self._drop()
            return False

    def messages_every(self, interval):
        """The peer sends a message at least every ``interval`` seconds and the
        server watches its silence: when that is more often than pings, it
        gets none, as its own messages keep the connection alive through
        proxies. Only the inline reader (gevent) stops pinging:
        simple-websocket's reader thread keeps its own schedule, and reads
        ``ping_interval`` again at every ping."""
        if self._readable is not None and self.ws.ping_interval and \
                interval < self.ws.ping_interval:
            self.ws.ping_interval = None

    def _ping(self, now):
        """What simple-websocket's reader does every ``ping_interval``: close a
        peer that did not answer the last ping, else ping it again."""
        ws = self.ws
        self._next_ping = now + ws.ping_interval
        if not ws.pong_received:
            self.close(CloseReason.POLICY_VIOLATION, "Ping/Pong timeout")
            return
        ws.pong_received = False
        with self._lock:
            try:
                _write(self._sock, self._frames.ping())
            except (OSError, *CLOSED_ERRORS):
                self._drop()

    def send(self, text):
        """Send one frame; raises ConnectionClosed when the peer is gone."""
        self.send_all((text,))

    def send_all(self, texts):
        """Send several frames in one write (a dashboard catching up);
        raises ConnectionClosed when the peer is gone."""
        ws = self.ws
        with self._lock:
            if not ws.connected:
                raise ConnectionClosed(ws.close_reason, ws.close_message)
            try:
                # The raw socket: the lock is held already.
                _write(self._sock, self._frames.encode(texts))
            except (OSError, *CLOSED_ERRORS) as error:
                # CLOSED_ERRORS: another thread closed the connection meanwhile.
                self._drop()
                raise ConnectionClosed(1006, str(error)) from None

    def close(self, code, reason=""):
        """Close with ``code``; a no-op when already closed."""
        with self._lock:
            if self.ws.connected:
                try:
                    _write(self._sock, self._frames.close(code, reason))
                except (OSError, *CLOSED_ERRORS):
                    self._drop()
                finally:
                    # Only now: a reader thread that saw it sooner would close
                    # the socket under the close frame.
                    self.ws.connected = False
        self._wake()

    def finish_close(self, timeout):
        """Once closed by the server, wait up to ``timeout`` for the peer's close
        frame (what RFC 6455 asks before the TCP connection goes), reading and
        discarding whatever it still sends. The peer's last call."""
        try:
            self._await_close_frame(timeout)
        finally:
            self._stop_timer()

    def _await_close_frame(self, timeout):
        ws = self.ws
        if ws.connected or ws.close_reason != CloseReason.NO_STATUS_RCVD:
            return  # still open (its TCP connection ends with the request), or closed by the peer
        if self._readable is None:
            ws.thread.join(timeout)  # the reader thread ends on the peer's close frame
            return
        deadline = time.monotonic() + timeout
        while not self._frames.finished:
            try:
                if not self._wait_readable(deadline - time.monotonic()):
                    return
            except (ConnectionClosed, OSError):
                return
            if not self._read_available():
                return

    def _drop(self):
        self.ws.connected = False
        self._wake()

    def _wake(self):
        """Wake the connection's thread if it waits in receive()."""
        self.ws.event.set()
        if self._readable is not None:
            cancel_wait(self._readable, ConnectionClosed(self.ws.close_reason))
