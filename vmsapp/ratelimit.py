"""Per-address limits on failed authentication, for REST and /ws alike.

Built on the ``limits`` library (the one Flask-Limiter uses): a moving window
per client address in this process's memory."""

import threading

from flask import current_app
from limits import parse, storage, strategies

EXTENSION_KEY = "vmsapp.auth_failures"


class FailedAuthLimiter:
    """Counts failed attempts per address; past the limit, an address is refused
    before its credentials are even checked, which slows guessing down."""

    def __init__(self, limit):
        self.limit = parse(limit)
        self._lock = threading.Lock()
        self._limiter = None

    @property
    def _window(self):
        # Built on first use: MemoryStorage starts a timer thread, and building
        # the app (CLI commands, migrations) must start none.
        with self._lock:
            if self._limiter is None:
                self._limiter = strategies.MovingWindowRateLimiter(storage.MemoryStorage())
            return self._limiter

    def blocked(self, address):
        return not self._window.test(self.limit, address or "-")

    def failed(self, address):
        self._window.hit(self.limit, address or "-")


def init_app(app):
    app.extensions[EXTENSION_KEY] = FailedAuthLimiter(app.config["VMS_AUTH_FAILURE_LIMIT"])


def current_limiter():
    """The failed-authentication limiter of the current app."""
    return current_app.extensions[EXTENSION_KEY]
