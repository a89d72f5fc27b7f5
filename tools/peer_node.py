"""The Node.js reference peer for ``tools.bench --peer-node DIR``: DIR is a
copy of the peer (``server.js`` with its ``node_modules``, after ``npm
install``), run by ``node`` on a free port and a fresh SQLite file with the
scenario's heartbeat, stale and sweep intervals, as ``--start-server`` runs
vmsapp, and stopped (SIGTERM) with its file removed at the end. It takes no
keys and hands out no tokens (hostname-only auth, as vmsapp's ``open`` mode).
"""

import os
import re
import shutil
from pathlib import Path

from .bench_server import ChildServer

SQLITE_SUFFIXES = ("", "-wal", "-shm")


def check_peer_directory(directory, node="node"):
    """Why ``directory`` cannot run the peer, or None when it can."""
    directory = Path(directory)
    if not (directory / "server.js").is_file():
        return f"{directory} has no server.js"
    if not (directory / "node_modules").is_dir():
        return f"{directory} has no node_modules: run npm install there"
    if shutil.which(node) is None:
        return f"{node} is not on PATH"
    return None


class PeerNodeProcess(ChildServer):
    """The peer's ``node server.js`` in ``directory``, its database and log in
    ``workdir``."""

    name = "node"
    database_kind = "sqlite"

    def __init__(self, directory, workdir, scenario, node="node"):
        super().__init__(Path(workdir) / "peer.log")
        self.directory = Path(directory).resolve()
        self.node = node
        self.database_path = Path(workdir) / "peer.sqlite"
        self.settings = {
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
            "DB_PATH": str(self.database_path),
            "VMS_HEARTBEAT_INTERVAL": f"{scenario.heartbeat:g}",
            "VMS_STALE_AFTER": f"{scenario.stale_after:g}",
            "VMS_SWEEP_INTERVAL": f"{scenario.sweep_interval:g}",
        }
        self.env = {**os.environ, **self.settings}

    @property
    def database_url(self):
        return f"sqlite:///{self.database_path}"

    def public_settings(self):
        return {**self.settings, "directory": str(self.directory)}

    def start(self, timeout=30.0):
        problem = check_peer_directory(self.directory, self.node)
        if problem:
            raise RuntimeError(f"cannot run the Node.js peer: {problem}")
        for suffix in SQLITE_SUFFIXES:  # a fresh database, every run
            Path(f"{self.database_path}{suffix}").unlink(missing_ok=True)
        self.spawn([self.node, "server.js"], self.directory, self.env, timeout)
        return self

    def stop(self, timeout=30.0):
        """SIGTERM (the peer closes its sockets with 1001), then its database goes."""
        code = super().stop(timeout)
        for suffix in SQLITE_SUFFIXES:
            Path(f"{self.database_path}{suffix}").unlink(missing_ok=True)
        return code

    def log_counts(self):
        """What the peer reported on stderr (``console.error``: "… failed: …"),
        Node's warnings and the stack traces under them."""
        lines = self.log().splitlines()
        errors = [line.strip()[:200] for line in lines if re.search(r"\bfailed:|Error\b", line)]
        stacks = sum(1 for before, line in zip([""] + lines, lines)
                     if line.lstrip().startswith("at ") and not before.lstrip().startswith("at "))
        return {"warnings": sum("Warning:" in line for line in lines), "errors": len(errors),
                "tracebacks": stacks, "first_errors": errors[:5]}
