"""Settings, all read from the environment (SPEC §2). Defaults suit a laptop."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent


def database_url(environ=os.environ):
    """The SQLAlchemy URL: DATABASE_URL with Heroku's ``postgres://`` rewritten,
    or a SQLite file under ``instance/``."""
    url = environ.get("DATABASE_URL", "").strip()
    if not url:
        return "sqlite:///" + str(BASE_DIR / "instance" / "vmsapp.sqlite3")
    # SQLAlchemy dropped the "postgres" alias; Heroku still hands it out.
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def positive(name, default, environ=os.environ):
    """A positive number (seconds or a rate); fractions allowed so tests can compress time."""
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return float(default)
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if not value > 0:
        raise ValueError(f"{name} must be greater than 0, got {raw!r}")
    return value


def flag(name, default, environ=os.environ):
    """A yes/no setting: 1/true/yes/on or 0/false/no/off, any case."""
    raw = (environ.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be true or false, got {environ.get(name)!r}")


def engine_options(url, pool_size):
    """Pool and per-driver options: a busy timeout for SQLite (WAL is set per
    connection in ``vmsapp.database``), a sized pool for PostgreSQL (whose idle
    connections ``vmsapp.database`` pings before use)."""
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 15, "check_same_thread": False}}
    return {"pool_size": pool_size, "max_overflow": pool_size, "pool_timeout": 10}


class Config:
    """Production settings from the environment."""

    def __init__(self, environ=os.environ):
        self.SQLALCHEMY_DATABASE_URI = database_url(environ)
        self.VMS_DB_POOL_SIZE = int(environ.get("VMS_DB_POOL_SIZE", "10"))
        self.VMS_AUTH_MODE = environ.get("VMS_AUTH_MODE", "token").strip().lower()
        if self.VMS_AUTH_MODE not in ("token", "open"):
            raise ValueError(f"VMS_AUTH_MODE must be 'token' or 'open', got {self.VMS_AUTH_MODE!r}")
        self.VMS_ADMIN_API_KEY = environ.get("VMS_ADMIN_API_KEY") or None
        # Proxies in front that append to X-Forwarded-For: the client address
        # (for limits and logs) is that many entries from the end. Heroku's
        # router is one; trusting a header no proxy wrote would let clients
        # pick their own address.
        self.VMS_PROXY_HOPS = int(environ.get("VMS_PROXY_HOPS", "1" if "DYNO" in environ else "0"))
        # Failed authentications allowed per client address (REST and /ws together).
        self.VMS_AUTH_FAILURE_LIMIT = environ.get("VMS_AUTH_FAILURE_LIMIT", "30 per minute")
        # A peer may send this many messages a second, in bursts of up to VMS_MESSAGE_BURST.
        self.VMS_MESSAGE_RATE = positive("VMS_MESSAGE_RATE", 20, environ)
        self.VMS_MESSAGE_BURST = positive("VMS_MESSAGE_BURST", 40, environ)
        self.VMS_HEARTBEAT_INTERVAL = positive("VMS_HEARTBEAT_INTERVAL", 10, environ)
        self.VMS_STALE_AFTER = positive("VMS_STALE_AFTER", 30, environ)
        self.VMS_SWEEP_INTERVAL = positive("VMS_SWEEP_INTERVAL", 30, environ)
        if self.VMS_STALE_AFTER <= self.VMS_HEARTBEAT_INTERVAL:
            raise ValueError("VMS_STALE_AFTER must be longer than VMS_HEARTBEAT_INTERVAL "
                             f"({self.VMS_STALE_AFTER} <= {self.VMS_HEARTBEAT_INTERVAL})")
        self.REDIS_URL = environ.get("REDIS_URL") or None
        # Keys and channels in Redis start with this: several deployments can share one.
        self.VMS_REDIS_PREFIX = environ.get("VMS_REDIS_PREFIX", "vmsapp")
        # Request bodies over 1 MiB are refused with 413 (SPEC §5).
        self.MAX_CONTENT_LENGTH = 1024 * 1024
        # permessage-deflate for /ws peers that offer it. Off by default, as in
        # Node's ws server: each compressing peer holds zlib state for the life of
        # its socket, which at fleet scale outweighs the few bytes saved on
        # heartbeats.
        self.VMS_WS_COMPRESSION = flag("VMS_WS_COMPRESSION", False, environ)
        # simple-websocket pings every peer this often and closes one that did
        # not answer the last ping: keeps connections alive through routers
        # that cut idle sockets after 55 s, and notices peers that vanished.
        self.VMS_WS_PING_INTERVAL = positive("VMS_WS_PING_INTERVAL", 25, environ)
        # simple-websocket's options, which flask-sock passes to every
        # connection (``vmsapp.realtime`` adds its thread and event classes).
        self.SOCK_SERVER_OPTIONS = {
            # 64 KiB frames at most (SPEC §4 rule 2): larger ones close with 1009.
            "max_message_size": 64 * 1024,
            "ping_interval": self.VMS_WS_PING_INTERVAL,
        }
        self.API_TITLE = "vmsapp"
        self.API_VERSION = "1.0"
        self.OPENAPI_VERSION = "3.0.3"
        self.OPENAPI_URL_PREFIX = "/api"
        self.OPENAPI_JSON_PATH = "openapi.json"

    def as_dict(self):
        """The settings as a mapping for ``app.config.from_mapping``."""
        return {k: v for k, v in vars(self).items() if k.isupper()}
