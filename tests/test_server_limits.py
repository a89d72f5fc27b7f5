"""What gunicorn.conf.py sets up before a worker serves: enough open files
for the connections a worker may hold."""

import resource

import pytest
from support import LiveServer, migrate

# What a worker may hold by default (VMS_WORKER_CONNECTIONS), and the margin
# gunicorn.conf.py adds for the database, Redis and the log.
CONNECTIONS = 10_000
NEEDED = CONNECTIONS + 256


@pytest.fixture
def sqlite_url(tmp_path):
    url = f"sqlite:///{tmp_path}/vmsapp.sqlite3"
    migrate(url)
    return url


def worker_open_files(live):
    [pid] = live.worker_pids()
    return resource.prlimit(pid, resource.RLIMIT_NOFILE)


def test_a_shells_low_open_files_limit_is_raised_for_the_workers(sqlite_url, tmp_path):
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < NEEDED:
        pytest.fail(f"this machine's hard limit on open files ({hard}) is below {NEEDED}")
    live = LiveServer(sqlite_url, tmp_path / "gunicorn.log", open_files=(256, hard)).start()
    try:
        assert worker_open_files(live) == (NEEDED, hard)
        assert "open files limit" not in live.log()
    finally:
        live.stop()


def test_a_hard_limit_below_the_connections_is_used_whole_and_warned_of(sqlite_url, tmp_path):
    live = LiveServer(sqlite_url, tmp_path / "gunicorn.log", open_files=(256, 2048)).start()
    try:
        assert worker_open_files(live) == (2048, 2048)
        assert (f"WARNING] open files limit (ulimit -n) is 2048, below the {CONNECTIONS} "
                "connections a worker may hold") in live.log()
    finally:
        live.stop()
