"""Per-address limits on failed authentication, for REST and /ws alike.

Built on the ``limits`` library (the one Flask-Limiter uses): a moving window
per client address, kept in Redis when ``REDIS_URL`` is set, so every worker
and instance counts the same failures, or else in this process's memory."""

import logging
import threading
import time

from flask import current_app
from limits import errors, parse, storage, strategies

log = logging.getLogger(__name__)

EXTENSION_KEY = "vmsapp.auth_failures"
# While Redis is unreachable the limit is not applied (failing open: an agent
# must never be locked out because Redis is down), and Redis is asked again
# only this often, so an unanswered connect does not delay every auth.
RETRY_AFTER = 5.0
# Short: an auth waits for Redis' answer.
REDIS_TIMEOUTS = {"socket_connect_timeout": 1.0, "socket_timeout": 1.0}


class FailedAuthLimiter:
    """Counts failed attempts per address; past the limit, an address is refused
    before its credentials are even checked, which slows guessing down."""

    def __init__(self, limit, redis_url=None, redis_prefix="vmsapp"):
        """``limit``: as ``limits.parse`` reads it ("30 per minute").
        ``redis_url``: the Redis shared by every worker, or None to count in
        this process; its keys start with ``redis_prefix``."""
        self.limit = parse(limit)
        self.redis_url = redis_url
        self.redis_prefix = redis_prefix
        self._lock = threading.Lock()
        self._limiter = None
        self._retry_at = None  # while Redis is unreachable: when to ask it again

    @property
    def _window(self):
        # Built on first use: MemoryStorage starts a timer thread, and building
        # the app (CLI commands, migrations) must start none, nor connect.
        with self._lock:
            if self._limiter is None:
                self._limiter = strategies.MovingWindowRateLimiter(self._storage())
            return self._limiter

    def _storage(self):
        """Redis' when there is one, else this process's memory."""
        if self.redis_url:
            return storage.RedisStorage(self.redis_url, key_prefix=f"{self.redis_prefix}:auth",
                                        wrap_exceptions=True, **REDIS_TIMEOUTS)
        return storage.MemoryStorage()

    def blocked(self, address):
        """Whether ``address`` failed too often lately (never while Redis is down)."""
        return self._asked(lambda window: not window.test(self.limit, address or "-"), False)

    def failed(self, address):
        """Count one failed attempt of ``address`` (not while Redis is down)."""
        self._asked(lambda window: window.hit(self.limit, address or "-"), None)

    def _asked(self, question, while_down):
        """``question(window)``'s answer, or ``while_down`` if the storage
        cannot be reached now."""
        if self._retry_at is not None and time.monotonic() < self._retry_at:
            return while_down
        try:
            answer = question(self._window)
        except errors.StorageError as error:
            self._outage(error)
            return while_down
        if self._retry_at is not None:
            self._recovered()
        return answer

    def _outage(self, error):
        """Stop asking for ``RETRY_AFTER`` seconds; log only an outage's start."""
        with self._lock:
            first, self._retry_at = self._retry_at is None, time.monotonic() + RETRY_AFTER
        if first:
            log.error("failed-auth limit: Redis unreachable (%s); not limited until it is back",
                      error.storage_error)

    def _recovered(self):
        with self._lock:
            was_down, self._retry_at = self._retry_at is not None, None
        if was_down:
            log.warning("failed-auth limit: Redis is back; counting again")


def init_app(app):
    app.extensions[EXTENSION_KEY] = FailedAuthLimiter(app.config["VMS_AUTH_FAILURE_LIMIT"],
                                                      app.config["REDIS_URL"],
                                                      app.config["VMS_REDIS_PREFIX"])


def current_limiter():
    """The failed-authentication limiter of the current app."""
    return current_app.extensions[EXTENSION_KEY]
