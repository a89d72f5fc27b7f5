"""What the server knows about one authenticated connection."""

import queue
import time
import uuid

from ..batching import take_batch

# Messages waiting for one dashboard; a dashboard this far behind is dropped
# rather than slowing everyone else down.
DASHBOARD_BACKLOG = 10_000
# Messages a dashboard's thread writes at once when it has fallen behind.
DASHBOARD_BATCH = 500


def new_connection_id():
    """A fresh id for an agent's connection: the holder of its NVR's presence."""
    return uuid.uuid4().hex


class NvrSession:
    """An NVR agent's connection. ``touch`` is on the heartbeat's hot path: no
    lock, no I/O. ``last_seen`` reaches the database in batches: the socket
    loop tells the registry (``Registry.heard_from``), whose heard-from NVRs
    the flush job writes (``jobs``)."""

    def __init__(self, peer, nvr_id, hostname, now, connection_id=None, claim=0):
        """``connection_id``: the one its NVR was claimed for; a fresh one if not
        given. ``claim``: the NVR's claim number that claim took (``admission``)."""
        self.peer = peer
        self.nvr_id = nvr_id
        self.hostname = hostname
        self.connection_id = connection_id or new_connection_id()
        self.claim = claim
        self.last_message = time.monotonic()
        self.last_seen = now

    def touch(self, now):
        """Any message from the agent: it is alive as of ``now``."""
        self.last_message = time.monotonic()
        self.last_seen = now


class DashboardSession:
    """A dashboard's connection and its outbox; the connection's own thread is
    its only writer, so a slow dashboard delays nobody but itself."""

    def __init__(self, peer):
        self.peer = peer
        self.outbox = queue.Queue(maxsize=DASHBOARD_BACKLOG)
        self.overflowed = False
        self.snapshot_requested = False

    def offer(self, text):
        """Queue one encoded message without ever blocking the caller."""
        try:
            self.outbox.put_nowait(text)
        except queue.Full:
            self.overflowed = True

    def take(self, timeout):
        """The messages waiting (at most ``DASHBOARD_BATCH``), after waiting up
        to ``timeout`` for the first; an empty list when none came."""
        return take_batch(self.outbox, timeout, DASHBOARD_BATCH)

    def request_snapshot(self):
        """Ask the dashboard's thread to send a fresh snapshot: broadcasts may
        have been missed (the bus lost its connection)."""
        self.snapshot_requested = True


class MessageRate:
    """A token bucket: ``rate`` messages a second, in bursts of up to ``burst``.

    Only the connection's own thread calls it, so it needs no lock: two float
    operations per message keep the heartbeat path as cheap as it was."""

    def __init__(self, rate, burst):
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic()
        self.excess = 0  # messages refused since the peer last stayed within the rate

    def admit(self):
        """Whether one more message fits; counts ``excess`` when it does not."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            self.excess = 0
            return True
        self.excess += 1
        return False
