"""When a web worker's full garbage collections run.

A full collection walks every open socket's objects, and nothing else runs
meanwhile: tens of milliseconds at 1,000 sockets, hundreds at 8,000 on a
2-core machine. Python starts one once enough middle-generation
collections have run and the oldest generation has grown by a quarter, which
is exactly what a reconnecting site does to it. So a booted worker runs them
a tenth as often (``configure_worker``), and holds them back altogether while
agents arrive in bulk (``hold``); once they stop, collections run as before,
and the first one frees whatever the storm left behind."""

import gc
import logging
import threading
import time
from collections import deque

log = logging.getLogger(__name__)

# Middle-generation collections between two full ones (Python's default: 10):
# by default five fell inside a 1,000-agent reconnect, a tenth as often none
# does. The young generations, where short-lived garbage dies, are collected
# as often as before.
FULL_COLLECTION_EVERY = 100
# Agent connects within one second that make a reconnect storm.
STORM_RATE = 50
# A storm is over after this many seconds below STORM_RATE.
QUIET = 2.0
# Full collections are never held back longer than this, however long a
# storm lasts: the cyclic garbage of closed connections must be freed.
HOLD_AT_MOST = 60.0
# As good as never, while held.
_HELD = 1 << 30


def configure_worker():
    """Once a worker has booted. The ~100,000 objects of start-up (modules,
    the app) live as long as the worker: frozen, no full collection walks
    them again (100 ms a walk on a 2-core machine)."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)


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
            with self._lock:
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
        """Under the lock, while holding: restore the threshold."""
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, self._threshold)
        self._held_since = None


def _start_thread(target):
    threading.Thread(target=target, name="vmsapp-gc-hold", daemon=True).start()


hold = FullCollectionHold()
