"""The PostgreSQL pool: idle connections pinged before use, busy ones not."""

import psycopg
import pytest
from conftest import PG_URL
from support import wait_until

from vmsapp import database
from vmsapp.extensions import db

# Pinging is PostgreSQL's alone: SQLite's connections are a local file's.
pytestmark = pytest.mark.parametrize("app_database_url", ["postgresql"], indirect=True)


def backend_pid():
    with db.engine.connect() as connection:
        return connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()


def count_pings(monkeypatch):
    pings = []
    real = db.engine.dialect.do_ping
    monkeypatch.setattr(db.engine.dialect, "do_ping",
                        lambda connection: pings.append(1) or real(connection))
    return pings


def test_a_connection_the_database_dropped_while_idle_is_replaced_unseen(app, monkeypatch):
    monkeypatch.setattr(database, "PING_IDLE_AFTER", 0.0)
    with app.app_context():
        dropped = backend_pid()
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (dropped,))
            wait_until(lambda: admin.execute("SELECT count(*) FROM pg_stat_activity "
                                             "WHERE pid = %s", (dropped,)).fetchone()[0] == 0,
                       message="the backend to exit")

        assert backend_pid() != dropped  # no error: the ping found it gone


def test_a_connection_used_a_moment_ago_is_not_pinged_again(app, monkeypatch):
    monkeypatch.setattr(database, "PING_IDLE_AFTER", 60.0)
    with app.app_context():
        backend_pid()  # a connection in the pool, checked in just now
        pings = count_pings(monkeypatch)

        first = backend_pid()
        assert backend_pid() == first
        assert pings == []

        monkeypatch.setattr(database, "PING_IDLE_AFTER", 0.0)
        assert backend_pid() == first
        assert pings == [1]
