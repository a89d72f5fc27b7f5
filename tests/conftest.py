"""Fixtures: every storage test runs on SQLite and on PostgreSQL."""

import json
import os
import uuid

import psycopg
import pytest
from support import DEFAULT_PG_URL, FAST, LiveServer, migrate

PG_URL = os.environ.get("TEST_DATABASE_URL") or DEFAULT_PG_URL
IN_CI = os.environ.get("CI", "").lower() == "true"
BACKENDS = ["sqlite", "postgresql"]


def _pg_or_skip():
    try:
        psycopg.connect(PG_URL, connect_timeout=3, autocommit=True).close()
    except psycopg.Error as error:
        message = (f"PostgreSQL tests skipped: cannot connect to {PG_URL} "
                   f"(set TEST_DATABASE_URL): {str(error).strip()}")
        if IN_CI:
            pytest.fail("CI=true: " + message)
        pytest.skip(message)


def _fresh_database(request, tmp_path_factory):
    """A new database of the requested backend, migrated by the release command."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'vmsapp.sqlite3'}"
        migrate(url)
        yield url
        return
    _pg_or_skip()
    name = f"vmsapp_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = PG_URL.rsplit("/", 1)[0] + "/" + name
    try:
        migrate(url)
        yield url
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request, tmp_path_factory):
    """The database the live servers use, one per backend for the session."""
    yield from _fresh_database(request, tmp_path_factory)


@pytest.fixture(scope="session", params=BACKENDS)
def app_database_url(request, tmp_path_factory):
    """A database of each backend for tests below the HTTP layer, emptied per test."""
    yield from _fresh_database(request, tmp_path_factory)


@pytest.fixture(params=BACKENDS)
def database_server_url(request):
    """For a tool that creates a database of its own: the PostgreSQL server's
    URL, or None for SQLite."""
    if request.param == "sqlite":
        return None
    _pg_or_skip()
    return PG_URL


@pytest.fixture(scope="session")
def server(database_url, tmp_path_factory):
    """One live server per backend, shared by the tests that don't stop it."""
    live = LiveServer(database_url, tmp_path_factory.mktemp("log") / "gunicorn.log").start()
    yield live
    live.stop()


@pytest.fixture(params=BACKENDS)
def own_database_url(request, tmp_path_factory):
    """A database for one test alone: no other server's sweep runs on it."""
    yield from _fresh_database(request, tmp_path_factory)


@pytest.fixture
def make_server(own_database_url, tmp_path):
    """Start servers of one's own (to stop, or with other settings), all on
    one database of this test's own."""
    started = []

    def make(**environ):
        live = LiveServer(own_database_url, tmp_path / f"gunicorn-{len(started)}.log",
                          **environ)
        started.append(live)
        return live.start()

    yield make
    for live in started:
        live.stop()


@pytest.fixture
def app(app_database_url):
    """The app bound to a clean database, for tests below the HTTP layer."""
    from config import Config
    from config import database_url as sqlalchemy_url
    from vmsapp import create_app
    from vmsapp.extensions import db

    app = create_app({
        **Config({**os.environ, **FAST}).as_dict(),
        "SQLALCHEMY_DATABASE_URI": sqlalchemy_url({"DATABASE_URL": app_database_url}),
    })
    with app.app_context():
        for table in reversed(db.metadata.sorted_tables):
            db.session.execute(table.delete())
        db.session.commit()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def ctx(app):
    """The app, its context pushed."""
    with app.app_context():
        yield app


@pytest.fixture
def listener(ctx):
    """A dashboard session in the registry, with no socket: a function that
    returns the messages its outbox got since it was last called."""
    from vmsapp.realtime.registry import current_registry
    from vmsapp.realtime.sessions import DashboardSession

    session = DashboardSession(peer=None)
    current_registry().add_dashboard(session)

    def messages():
        out = []
        while not session.outbox.empty():
            out.append(json.loads(session.outbox.get_nowait()))
        return out

    return messages


@pytest.fixture(scope="session")
def redis_url():
    """The Redis the scaling tests share (TEST_REDIS_URL); each server uses a
    prefix of its own in it."""
    import redis

    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        message = f"Redis tests skipped: cannot reach {url} (set TEST_REDIS_URL): {error}"
        if IN_CI:
            pytest.fail("CI=true: " + message)
        pytest.skip(message)
    return url
