"""Binding the database to the app: engine options, SQLite's pragmas, and
PostgreSQL's idle connections pinged before use."""

import os
import time

import click
from sqlalchemy import event
from sqlalchemy.exc import InvalidatePoolError

from config import engine_options

from .extensions import db

# A pooled PostgreSQL connection idle for longer than this is pinged before
# use (see ``_ping_idle_connections``).
PING_IDLE_AFTER = 1.0


def init_app(app):
    """Bind Flask-SQLAlchemy, sized for this app's database, and Flask-Migrate for the CLI."""
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS",
                          engine_options(url, app.config["VMS_DB_POOL_SIZE"]))
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        os.makedirs(os.path.dirname(url[len("sqlite:///"):]) or ".", exist_ok=True)
    db.init_app(app)
    init_migrations(app)
    with app.app_context():
        if url.startswith("sqlite"):
            event.listen(db.engine, "connect", _sqlite_pragmas)
        else:
            _ping_idle_connections(db.engine)


def autocommit_connection():
    """A pooled connection with no transaction: for work that is one statement,
    PostgreSQL is spared a BEGIN and a COMMIT or ROLLBACK, two round trips."""
    return db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")


def init_migrations(app):
    """Bind Flask-Migrate (``flask db``) when a command line builds the app.
    A web worker has no use for it, and so never imports Alembic: 11 MB a
    worker."""
    if click.get_current_context(silent=True) is None:
        return
    from flask_migrate import Migrate

    Migrate(app, db, directory=os.path.join(os.path.dirname(app.root_path), "migrations"))


def _ping_idle_connections(engine):
    """Ping a pooled connection before use only when it has sat idle, and
    replace it when the ping fails: the database or a proxy may have dropped
    it meanwhile (a restart, an idle timeout).

    SQLAlchemy's ``pool_pre_ping`` pings at every checkout: one more round
    trip for each batch of auths or disconnects, each one waiting for the
    GIL or the event loop among thousands of sockets while a fleet
    reconnects. A connection used within the last ``PING_IDLE_AFTER`` seconds
    is taken as alive; if the database went away in that second, the
    statement fails like any other in flight, and SQLAlchemy then replaces
    every connection of the pool (as it does after a failed ping)."""

    @event.listens_for(engine, "checkin")
    def idle_from_now(_dbapi_connection, record):
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def ping_if_idle(dbapi_connection, record, _proxy):
        idle_since = record.info.get("idle_since")  # None: connected just now
        if idle_since is None or time.monotonic() - idle_since < PING_IDLE_AFTER:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            if not engine.dialect.is_disconnect(error, dbapi_connection, None):
                raise  # not a lost connection (a greenlet killed mid-ping, say)
            # As pool_pre_ping does: the database went away, so every pooled
            # connection is replaced, and this checkout gets a new one.
            raise InvalidatePoolError(f"pooled connection lost while idle: {error}") from error


def _sqlite_pragmas(dbapi_connection, _record):
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the one writer; cascades need foreign keys on.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.close()
