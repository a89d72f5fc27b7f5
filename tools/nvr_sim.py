"""Simulated NVR agents (SPEC §4, §6).

    python -m tools.nvr_sim HOSTNAME [--token T] [--url ws://localhost:3000/ws]
    python -m tools.nvr_sim PREFIX --count 3 --token T1 --token T2 --token T3

Each agent authenticates with its hostname (and token), heartbeats at the
interval the server gives in ``auth_ok`` and reconnects with backoff whenever
the connection drops. It gives up (exit status 1) only when retrying cannot
help: the server refused its hostname or token, or the NVR was deleted."""

import argparse
import json
import logging
import os
import sys
import threading
import time

from websockets.sync.client import connect

from .common import (
    DEFAULT_URL,
    STOP_POLL,
    ReconnectingClient,
    non_negative_int,
    positive_int,
    run_workers,
    setup_logging,
    stop_on_signals,
)

log = logging.getLogger("nvr_sim")

CLOSE_POLICY = 1008
CLOSE_DELETED = 4004
# Error codes that come with a 1008 close when the server will never accept us.
AUTH_ERRORS = {"invalid_hostname", "invalid_token", "unauthorized"}
# How long to wait for auth_ok before treating the connection as broken.
AUTH_TIMEOUT = 10.0
# Used if the server's auth_ok ever lacks a usable interval (SPEC §2 default).
DEFAULT_HEARTBEAT = 10.0


class Agent(ReconnectingClient):
    """One simulated NVR agent: connect, authenticate, heartbeat, reconnect."""

    log = log

    def __init__(self, hostname, url, stop, token=None, offline_cameras=None):
        super().__init__(url, stop, token)
        self.hostname = hostname
        self.prefix = f"{hostname}: "
        # None: plain heartbeats. A number K: report cameras, the first K offline.
        self.offline_cameras = offline_cameras
        self.cameras = []

    def _session(self):
        """One connection, from connect to close; returns when stopped."""
        self.last_error = None
        # close_timeout bounds how long stopping waits for an unresponsive server.
        ws = connect(self.url, open_timeout=10, close_timeout=2, legacy=True)
        try:
            log.info("%s: connected to %s", self.hostname, self.url)
            auth = {"type": "auth", "hostname": self.hostname}
            if self.token:
                auth["token"] = self.token
            ws.send(json.dumps(auth))
            ok = self._await_auth(ws)
            if ok is None:
                return  # stopped while waiting
            self.backoff.reset()
            self.cameras = [camera["id"] for camera in ok.get("cameras", [])]
            interval = ok.get("heartbeat_interval")
            if not isinstance(interval, (int, float)) or interval <= 0:
                interval = DEFAULT_HEARTBEAT
            log.info("%s: authenticated as NVR %s, %d camera(s), heartbeat every %gs",
                     self.hostname, ok.get("nvr_id"), len(self.cameras), interval)
            self._heartbeat(ws, interval)
        finally:
            ws.close()  # 1000 when we stop; a no-op when the server already closed
        log.info("%s: disconnected (close 1000, stopped)", self.hostname)

    def _await_auth(self, ws):
        """The ``auth_ok`` message, or None when stopped first."""
        deadline = time.monotonic() + AUTH_TIMEOUT
        while not self.stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no auth_ok within {AUTH_TIMEOUT:g}s")
            try:
                message = self._receive(ws, min(remaining, STOP_POLL))
            except TimeoutError:
                continue
            if message.get("type") == "auth_ok":
                return message
        return None

    def _heartbeat(self, ws, interval):
        """Send heartbeats on schedule and read replies until stopped."""
        # The first heartbeat goes at once, so camera reports apply right away.
        next_beat = time.monotonic()
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= next_beat:
                ws.send(json.dumps(self._heartbeat_message()))
                log.debug("%s: heartbeat sent", self.hostname)
                next_beat += interval
                if next_beat <= now:  # fell behind (suspended laptop): don't burst
                    next_beat = now + interval
            try:
                self._receive(ws, max(0.0, min(next_beat - time.monotonic(), STOP_POLL)))
            except TimeoutError:
                pass

    def _heartbeat_message(self):
        message = {"type": "heartbeat"}
        if self.offline_cameras is not None:
            message["cameras"] = [
                {"id": camera, "status": "offline" if n < self.offline_cameras else "online"}
                for n, camera in enumerate(self.cameras)]
        return message

    def _receive(self, ws, timeout):
        """One message from the server, logged; TimeoutError when none came."""
        raw = ws.recv(timeout=timeout)
        try:
            message = json.loads(raw)
        except (TypeError, ValueError):
            log.warning("%s: unreadable message from the server: %.200r", self.hostname, raw)
            return {}
        if not isinstance(message, dict):
            log.warning("%s: unexpected message from the server: %.200r", self.hostname, raw)
            return {}
        kind = message.get("type")
        if kind == "error":
            self.last_error = message.get("code")
            log.warning("%s: server error %s: %s", self.hostname, message.get("code"),
                        message.get("message"))
        elif kind == "heartbeat_ack":
            log.debug("%s: heartbeat_ack at %s", self.hostname, message.get("server_time"))
        elif kind != "auth_ok":
            log.debug("%s: received %s", self.hostname, raw)
        return message

    def _final_close(self, code):
        if code == CLOSE_POLICY and self.last_error in AUTH_ERRORS:
            return (f"the server refused to authenticate it ({self.last_error}, close {code}); "
                    "check the hostname and token")
        if code == CLOSE_DELETED:
            return f"the NVR was deleted on the server (close {code})"
        return None


def hostnames(name, count):
    """The agents' hostnames: ``name`` itself, or ``name-1`` … ``name-N``."""
    return [name] if count is None else [f"{name}-{n}" for n in range(1, count + 1)]


def parse_args(argv=None):
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m tools.nvr_sim",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("hostname", help="the NVR's hostname; with --count, a prefix")
    parser.add_argument("--url", default=os.environ.get("VMS_URL", DEFAULT_URL),
                        help="the server's /ws URL (default: $VMS_URL or %(default)s)")
    parser.add_argument("--token", action="append", dest="tokens", metavar="T",
                        help="the NVR's token (default: $VMS_TOKEN; omit in open auth mode); "
                             "with --count, give it once per agent, in order")
    parser.add_argument("--count", type=positive_int, metavar="N",
                        help="simulate N agents named HOSTNAME-1 … HOSTNAME-N")
    parser.add_argument("--offline-cameras", type=non_negative_int, metavar="K",
                        help="report the first K cameras offline and the rest online")
    parser.add_argument("--duration", type=float, metavar="SECONDS",
                        help="stop after this many seconds (default: run until Ctrl-C)")
    parser.add_argument("--verbose", action="store_true", help="log every heartbeat and reply")
    args = parser.parse_args(argv)
    if args.tokens is None:
        args.tokens = [os.environ["VMS_TOKEN"]] if os.environ.get("VMS_TOKEN") else []
    agents = args.count or 1
    if len(args.tokens) not in (0, 1, agents):
        parser.error(f"give --token once, or once per agent ({agents}), "
                     f"not {len(args.tokens)} times")
    return args


def main(argv=None):
    """Run the agents; the process exit status."""
    args = parse_args(argv)
    setup_logging(args.verbose)
    stop = threading.Event()
    stop_on_signals(stop)
    names = hostnames(args.hostname, args.count)
    # One token per agent, or the same one (or none) for all.
    tokens = args.tokens if len(args.tokens) == len(names) else (args.tokens or [None]) * len(names)
    agents = [Agent(name, args.url, stop, token=token, offline_cameras=args.offline_cameras)
              for name, token in zip(names, tokens)]
    return run_workers([(agent.hostname, agent.run) for agent in agents], stop, args.duration)


if __name__ == "__main__":
    sys.exit(main())
