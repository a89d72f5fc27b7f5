"""Binding the database to the app: engine options and SQLite's pragmas."""

import os

import click
from sqlalchemy import event

from config import engine_options

from .extensions import db


def init_app(app):
    """Bind Flask-SQLAlchemy, sized for this app's database, and Flask-Migrate for the CLI."""
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS",
                          engine_options(url, app.config["VMS_DB_POOL_SIZE"]))
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        os.makedirs(os.path.dirname(url[len("sqlite:///"):]) or ".", exist_ok=True)
    db.init_app(app)
    init_migrations(app)
    if url.startswith("sqlite"):
        with app.app_context():
            event.listen(db.engine, "connect", _sqlite_pragmas)


def autocommit_connection():
    """A pooled connection with no transaction: for work that is one statement,
    PostgreSQL is spared a BEGIN and a COMMIT or ROLLBACK, two round trips."""
    return db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")


def init_migrations(app):
    """Bind Flask-Migrate (``flask db``) when a command line builds the app.
    A web worker has no use for it, and so never imports Alembic: 11 MB a
    worker (BENCHMARKS.md)."""
    if click.get_current_context(silent=True) is None:
        return
    from flask_migrate import Migrate

    Migrate(app, db, directory=os.path.join(os.path.dirname(app.root_path), "migrations"))


def _sqlite_pragmas(dbapi_connection, _record):
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the one writer; cascades need foreign keys on.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.close()
