"""Full garbage collections held back while a fleet reconnects.

A full collection walks every open socket's objects, and nothing else runs
meanwhile: 60 ms at 1,000 sockets, 180-440 ms at 4,000-8,000 on a 2-core
machine (BENCHMARKS.md). Python starts one once enough younger collections
have run (a worker sets how many: ``gunicorn.conf.py``) and the oldest
generation has grown by a quarter, which is exactly what a reconnecting site
does to it, so without a hold a few of them fall inside every large reconnect
and stall all its handshakes. Once agents stop arriving in bulk, collections run as before,
and the first one frees whatever the storm left behind."""

import gc
import logging
import threading
import time
from collections import deque

log = logging.getLogger(__name__)

# Agent connects within one second that make a reconnect storm.
STORM_RATE = 50
# A storm is over after this many seconds below STORM_RATE.
QUIET = 2.0
# Full collections are never held back longer than this, however long a
# storm lasts: the cyclic garbage of closed connections must be freed.
HOLD_AT_MOST = 60.0
# As good as never, while held.
_HELD = 1 << 30


class FullCollectionHold:
    """Counts agent connects; holds full collections while they arrive at
    STORM_RATE or more a second. Thread-safe; one per process."""

    def __init__(self, clock=time.monotonic, start_watch=None):
        self._clock = clock
        self._start_watch = start_watch or _start_thread
        self._lock = threading.Lock()
        self._recent = deque(maxlen=STORM_RATE)  # the latest connects' times
        self._last_storm = None
        self._held_since = None
        self._threshold = None  # the oldest generation's threshold to restore

    @property
    def holding(self):
        return self._held_since is not None

    def agent_connected(self):
        """One more agent in; may start a hold, and the watch that ends it."""
        now = self._clock()
        with self._lock:
            self._recent.append(now)
            if len(self._recent) < STORM_RATE or now - self._recent[0] >= 1.0:
                return
            self._last_storm = now
            if self._held_since is not None:
                return
            young, middle, self._threshold = gc.get_threshold()
            gc.set_threshold(young, middle, _HELD)
            self._held_since = now
        try:
            self._start_watch(self.watch)
        except RuntimeError as error:  # no thread to be had: never hold without a watch
            log.warning("not holding back full garbage collections: %s", error)
            self._release()

    def release_if_over(self):
        """End the hold once the storm has been quiet for QUIET seconds, or
        held for HOLD_AT_MOST; whether it is over."""
        now = self._clock()
        with self._lock:
            if self._held_since is None:
                return True
            if now - self._last_storm < QUIET and now - self._held_since < HOLD_AT_MOST:
                return False
        self._release()
        return True

    def watch(self):
        """Until the hold is over; then one full collection."""
        while not self.release_if_over():
            time.sleep(QUIET / 4)
        # Now, rather than at whichever moment Python would pick: the storm
        # is over (or has gone on too long), and its garbage waits.
        gc.collect()

    def _release(self):
        with self._lock:
            if self._held_since is None:
                return
            young, middle, _ = gc.get_threshold()
            gc.set_threshold(young, middle, self._threshold)
            self._held_since = None


def _start_thread(target):
    threading.Thread(target=target, name="vmsapp-gc-hold", daemon=True).start()


hold = FullCollectionHold()
