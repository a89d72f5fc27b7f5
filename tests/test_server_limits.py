"""What gunicorn.conf.py sets up before the workers fork: enough open files
for the connections a worker may hold, or fewer connections, said in the log.
Linux: a worker's limits are read with ``prlimit``."""

import resource
import socket

import pytest
import requests
from support import LiveServer, migrate, wait_until

# Asked of a worker here, whatever the environment says; gunicorn.conf.py
# adds 256 descriptors for the database, Redis and the log.
CONNECTIONS = 1000
NEEDED = CONNECTIONS + 256
SETTINGS = {"VMS_WORKER_CLASS": "gevent", "VMS_WORKER_CONNECTIONS": str(CONNECTIONS)}


@pytest.fixture
def sqlite_url(tmp_path):
    url = f"sqlite:///{tmp_path}/vmsapp.sqlite3"
    migrate(url)
    return url


def started(sqlite_url, tmp_path, open_files):
    return LiveServer(sqlite_url, tmp_path / "gunicorn.log", open_files=open_files,
                      **SETTINGS).start()


def worker_open_files(live):
    [pid] = live.worker_pids()
    return resource.prlimit(pid, resource.RLIMIT_NOFILE)


def test_a_shells_low_open_files_limit_is_raised_for_the_workers(sqlite_url, tmp_path):
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < NEEDED:
        pytest.fail(f"this machine's hard limit on open files ({hard}) is below {NEEDED}")
    live = started(sqlite_url, tmp_path, open_files=(256, hard))
    try:
        assert worker_open_files(live) == (NEEDED, hard)
        assert "open files limit" not in live.log()
    finally:
        live.stop()


def test_under_a_low_hard_limit_a_worker_holds_fewer_connections_and_says_so(
        sqlite_url, tmp_path):
    live = started(sqlite_url, tmp_path, open_files=(256, 300))
    held = []
    try:
        assert worker_open_files(live) == (300, 300)
        assert ("WARNING] open files limit (ulimit -n) is 300: a worker holds at most 150 "
                "connections, not the 1000 asked (VMS_WORKER_CONNECTIONS)") in live.log()
        # 150 connections that never send a request fill the worker: the next
        # waits to be accepted, and is served once they go.
        held = [socket.create_connection(("127.0.0.1", live.port)) for _ in range(150)]
        with pytest.raises(requests.Timeout):
            requests.get(live.url + "/healthz", timeout=1)
        for connection in held:
            connection.close()
        wait_until(lambda: requests.get(live.url + "/healthz", timeout=5).ok,
                   message="a request served once the idle connections closed")
    finally:
        for connection in held:
            connection.close()
        live.stop()


def test_under_gthread_a_connection_is_given_two_descriptors(sqlite_url, tmp_path):
    # Its socket and its reader thread's selector; gunicorn adds 64
    # connections to the threads for kept-alive REST calls.
    needed = (500 + 64) * 2 + 256
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.fail(f"this machine's hard limit on open files ({hard}) is below {needed}")
    live = LiveServer(sqlite_url, tmp_path / "gunicorn.log", open_files=(256, hard),
                      VMS_WORKER_CLASS="gthread", VMS_THREADS="500").start()
    try:
        assert worker_open_files(live) == (needed, hard)
    finally:
        live.stop()
