"""The server side of ``tools.bench --start-server``: a fresh database, vmsapp
under gunicorn configured from the scenario, and the database's own count of
write transactions."""

import os
import re
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import requests

ROOT = Path(__file__).resolve().parent.parent
now = time.monotonic
# Connections a started server must hold besides the sockets: the bench's
# set-up sessions (8), its last_seen reads and health checks, with room to spare.
REST_HEADROOM = 64


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_kind(url):
    if not url:
        return None
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    return {"postgres": "postgresql", "postgresql": "postgresql", "sqlite": "sqlite"}.get(scheme)


def sqlite_path(url):
    """The file of a ``sqlite:///…`` URL."""
    return url.split(":///", 1)[1] if ":///" in url else None


def libpq_url(url):
    """A URL psycopg accepts (no SQLAlchemy driver suffix)."""
    scheme, rest = url.split("://", 1)
    return "postgresql://" + rest if scheme.startswith("postgres") else url


def with_database(url, name):
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


class BenchDatabase:
    """A database no one else uses: a SQLite file in ``workdir``, or a new
    ``vmsapp_bench_<random>`` database on the PostgreSQL server of
    ``admin_url``, dropped afterwards."""

    def __init__(self, workdir, admin_url=None):
        self.workdir = Path(workdir)
        self.admin_url = libpq_url(admin_url) if admin_url else None
        self.kind = "postgresql" if admin_url else "sqlite"
        self.name = None
        self.url = None

    def create(self):
        if self.kind == "sqlite":
            path = self.workdir / "bench.sqlite3"
            self.name = str(path)
            self.url = f"sqlite:///{path}"
            return self.url
        import psycopg

        self.name = f"vmsapp_bench_{secrets.token_hex(6)}"
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{self.name}"')
        self.url = with_database(self.admin_url, self.name)
        return self.url

    def drop(self):
        if self.url is None:
            return
        if self.kind == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(self.name + suffix).unlink(missing_ok=True)
        else:
            import psycopg

            with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self.url = None


class ChildServer:
    """A server the bench runs as its child, in a session of its own (so
    Ctrl-C in the terminal reaches the bench only), on a free port, with its
    output in ``log_path``; stopped with SIGTERM, SIGKILL if it hangs."""

    name = "server"

    def __init__(self, log_path):
        self.log_path = Path(log_path)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = None
        self._log = None

    @property
    def pid(self):
        return self.process.pid if self.process else None

    def spawn(self, command, cwd, env, timeout):
        """Start ``command`` and wait for ``/healthz`` to answer 200; the
        monotonic deadline it had."""
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(command, cwd=cwd, env=env, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        deadline = now() + timeout
        while not self._healthy():
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.process.returncode}):\n"
                                   f"{self.log_tail()}")
            if now() > deadline:
                raise RuntimeError(f"no healthy server at {self.url} after {timeout:g}s:\n"
                                   f"{self.log_tail()}")
            time.sleep(0.1)
        return deadline

    def _healthy(self):
        try:
            return requests.get(self.url + "/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def stop(self, timeout=30.0):
        """SIGTERM (the graceful stop: sockets close with 1001), SIGKILL if it hangs."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self._log:
            self._log.close()
            self._log = None
        return self.process.returncode

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, chars=3000):
        return self.log()[-chars:]


class ServerProcess(ChildServer):
    """vmsapp as the Procfile runs it (release command, then gunicorn with
    ``gunicorn.conf.py``), on a free port, with the scenario's settings."""

    name = "gunicorn"

    def __init__(self, database_url, log_path, scenario, admin_key, workers=None,
                 redis_url=None, log_level="INFO", worker_class="gthread", compression=False):
        super().__init__(log_path)
        self.database_url = database_url
        self.admin_key = admin_key
        self.workers = workers or 1
        self.redis_url = redis_url
        passed_over = ("DATABASE_URL", "REDIS_URL", "WEB_CONCURRENCY", "VMS_REDIS_PREFIX", "PORT")
        self.env = {k: v for k, v in os.environ.items() if k not in passed_over}
        rate = max(100.0, 10.0 / scenario.heartbeat)
        self.settings = {
            "DATABASE_URL": database_url,
            "PORT": str(self.port),
            "VMS_AUTH_MODE": "token",
            "VMS_ADMIN_API_KEY": admin_key,
            "VMS_HEARTBEAT_INTERVAL": f"{scenario.heartbeat:g}",
            "VMS_STALE_AFTER": f"{scenario.stale_after:g}",
            "VMS_SWEEP_INTERVAL": f"{scenario.sweep_interval:g}",
            "VMS_AUTH_FAILURE_LIMIT": "1000000 per minute",
            "VMS_MESSAGE_RATE": f"{rate:g}",
            "VMS_MESSAGE_BURST": f"{2 * rate:g}",
            "VMS_WORKER_CLASS": worker_class,
            "VMS_LOG_LEVEL": log_level,
            "VMS_WS_COMPRESSION": "true" if compression else "false",
        }
        connections = scenario.nvrs + scenario.dashboards + REST_HEADROOM
        if worker_class == "gthread":
            # Each WebSocket holds a pool thread for its whole life (its reader
            # thread is not the pool's), so the pool must outnumber every agent
            # and dashboard, or REST calls and further sockets queue behind
            # them. Every worker gets the whole fleet's: the kernel's spread
            # of connections over workers is uneven.
            self.settings["VMS_THREADS"] = str(connections)
        elif connections > 10000:
            self.settings["VMS_WORKER_CONNECTIONS"] = str(connections)
        if workers:
            self.settings["WEB_CONCURRENCY"] = str(workers)
        if redis_url:
            self.settings["REDIS_URL"] = redis_url
            self.settings["VMS_REDIS_PREFIX"] = f"vmsapp-bench-{secrets.token_hex(4)}"
        self.env.update(self.settings)

    def public_settings(self):
        """The settings, without the admin key."""
        return {k: ("<random>" if k == "VMS_ADMIN_API_KEY" else v)
                for k, v in self.settings.items()}

    def migrate(self):
        done = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
                              cwd=ROOT, env=self.env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"flask db upgrade failed:\n{done.stderr[-3000:]}")

    def start(self, timeout=60.0):
        self.migrate()
        deadline = self.spawn(
            [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py",
             "--bind", f"127.0.0.1:{self.port}", "wsgi:app"], ROOT, self.env, timeout)
        # Jobs (sweep, last_seen flush) start after each worker boots: its banner says so.
        expected = self.workers if self.redis_url else 1
        while self.log().count("vmsapp serving") < expected and now() < deadline:
            time.sleep(0.1)
        return self

    def log_counts(self):
        """Warnings, errors and tracebacks the server logged."""
        text = self.log()
        errors = [line.strip()[:200] for line in text.splitlines()
                  if re.search(r"\b(?:ERROR|CRITICAL)\b", line)]
        return {"warnings": len(re.findall(r"\bWARNING\b", text)), "errors": len(errors),
                "tracebacks": text.count("Traceback (most recent call last)"),
                "first_errors": errors[:5]}


# ---- write transactions ------------------------------------------------------

class PostgresProbe:
    """Commits and written rows of one database, from ``pg_stat_database``
    (PostgreSQL's own counters; backends publish them about once a second,
    so windows shorter than a few seconds are approximate)."""

    kind = "postgresql"
    method = ("pg_stat_database.xact_commit: every commit, read-only ones too "
              "(an upper bound of write transactions)")
    settle = 10.0  # PGSTAT_IDLE_INTERVAL: how late a backend may publish its counters

    def __init__(self, admin_url, database):
        self.admin_url = libpq_url(admin_url)
        self.database = database
        self.marks = {}
        self._connection = None

    def start(self):
        import psycopg

        self._connection = psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5)
        return self

    def read(self):
        row = self._connection.execute(
            "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted "
            "FROM pg_stat_database WHERE datname = %s", (self.database,)).fetchone()
        if row is None:
            return None
        return dict(zip(("commits", "rollbacks", "inserted", "updated", "deleted"), row))

    def mark(self, name):
        self.marks[name] = (now(), self.read())

    def window(self, start, end):
        (t0, before), (t1, after) = self.marks[start], self.marks[end]
        if before is None or after is None or t1 <= t0:
            return None
        rates = {k: (after[k] - before[k]) / (t1 - t0) for k in before}
        return {"commits_per_s": rates["commits"],
                "rows_written_per_s": rates["inserted"] + rates["updated"] + rates["deleted"],
                "rollbacks_per_s": rates["rollbacks"], "seconds": t1 - t0,
                "method": self.method}

    def stop(self):
        if self._connection is not None:
            self._connection.close()


class SqliteProbe:
    """Commits to a SQLite file, seen from outside: ``PRAGMA data_version``
    changes whenever another connection commits; polled every ``period``
    seconds on a thread. Commits closer together than that count once, so
    this is a lower bound (fine for the few writes a second expected)."""

    kind = "sqlite"
    settle = 0.0

    def __init__(self, path, period=0.005):
        self.path = path
        self.period = period
        self.method = f"PRAGMA data_version polled every {period * 1000:g} ms (lower bound)"
        self.changes = []  # times a change was seen
        self.marks = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sqlite-probe", daemon=True)

    def start(self):
        """Open the file (here, so a file that cannot be read fails the start)
        and poll it on a thread."""
        self._connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                           check_same_thread=False)
        try:
            self._first = self._connection.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error:
            self._connection.close()
            raise
        self._thread.start()
        return self

    def _run(self):
        connection, last = self._connection, self._first
        try:
            while not self._stop.wait(self.period):
                try:
                    version = connection.execute("PRAGMA data_version").fetchone()[0]
                except sqlite3.OperationalError:
                    continue  # busy: try again next period
                if version != last:
                    self.changes.append(now())
                    last = version
        finally:
            connection.close()

    def mark(self, name):
        self.marks[name] = now()

    def window(self, start, end):
        t0, t1 = self.marks[start], self.marks[end]
        if t1 <= t0:
            return None
        commits = sum(t0 <= t <= t1 for t in self.changes)
        return {"commits_per_s": commits / (t1 - t0), "rows_written_per_s": None,
                "seconds": t1 - t0, "method": self.method}

    def stop(self):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)


def make_probe(database_url, admin_url=None, database=None):
    """A write-transaction probe for the server's database, or None when the
    bench cannot see it (a ``--url`` run without ``--database-url``)."""
    kind = database_kind(database_url)
    if kind == "sqlite" and sqlite_path(database_url):
        return SqliteProbe(sqlite_path(database_url))
    if kind == "postgresql":
        name = database or urlsplit(database_url).path.lstrip("/")
        return PostgresProbe(admin_url or database_url, name)
    return None
