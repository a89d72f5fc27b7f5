"""A simulated dashboard: prints every message a dashboard receives (SPEC §4, §6).

    python -m tools.dashboard_sim [--token K] [--url ws://localhost:3000/ws] [--json]

One readable line per message on stdout (raw JSON lines with --json);
connection events go to stderr, so stdout stays clean for piping. Reconnects
with backoff when the connection drops; exits with status 1 when the server
refuses the key."""

import argparse
import json
import logging
import os
import sys
import threading
from datetime import datetime

from websockets.sync.client import connect

from .common import (
    DEFAULT_URL,
    STOP_POLL,
    ReconnectingClient,
    run_workers,
    setup_logging,
    stop_on_signals,
)

log = logging.getLogger("dashboard_sim")

CLOSE_POLICY = 1008
AUTH_ERRORS = {"unauthorized", "invalid_token"}
# A snapshot of a large fleet is one big frame.
MAX_FRAME = 64 * 1024 * 1024
# Width of the type column, so the details line up.
TYPE_WIDTH = 14


def compact(message):
    """A message as one line of JSON."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def _nvr(nvr):
    parts = [f"{nvr['hostname']} (id {nvr['id']}) {nvr.get('name')!r} {nvr.get('status')}"]
    if nvr.get("ip_address"):
        parts.append(f"ip {nvr['ip_address']}")
    if nvr.get("location"):
        parts.append(f"location {nvr['location']!r}")
    return " ".join(parts)


def _camera(camera):
    return (f"camera {camera['id']} of NVR {camera['nvr_id']} {camera.get('name')!r} "
            f"channel {camera.get('channel')} {camera.get('status')}")


def _snapshot(m):
    nvrs, cameras = m["nvrs"], m["cameras"]
    online = sum(1 for n in nvrs if n.get("status") == "online")
    cameras_online = sum(1 for c in cameras if c.get("status") == "online")
    return (f"{len(nvrs)} NVRs ({online} online), "
            f"{len(cameras)} cameras ({cameras_online} online)")


def _nvr_status(m):
    cameras = ",".join(str(c) for c in m.get("camera_ids") or [])
    return (f"{m['hostname']} (id {m['nvr_id']}) {m['previous_status']} -> {m['status']} "
            f"({m['reason']}) v{m['status_version']} cameras [{cameras}]")


# How each known type reads; anything else is shown as compact JSON.
DETAILS = {
    "dashboard_ok": lambda m: "subscribed",
    "snapshot": _snapshot,
    "nvr_status": _nvr_status,
    "camera_status": lambda m: (f"camera {m['camera_id']} of NVR {m['nvr_id']} "
                                f"{m['previous_status']} -> {m['status']} ({m['reason']})"),
    "nvr_created": lambda m: _nvr(m["nvr"]),
    "nvr_updated": lambda m: _nvr(m["nvr"]),
    "nvr_deleted": lambda m: f"NVR {m['nvr_id']}",
    "camera_created": lambda m: _camera(m["camera"]),
    "camera_updated": lambda m: _camera(m["camera"]),
    "camera_deleted": lambda m: f"camera {m['camera_id']} of NVR {m['nvr_id']}",
    "error": lambda m: f"{m['code']}: {m.get('message')}",
}


def describe(message, at=None):
    """One readable line for a received message, prefixed with the local time."""
    at = at or datetime.now()
    kind = message.get("type") if isinstance(message, dict) else None
    try:
        details = DETAILS[kind](message)
    except (KeyError, TypeError, AttributeError):
        # Unknown type, or a known one shaped differently than expected:
        # still show everything rather than fail.
        return f"{at:%H:%M:%S}.{at.microsecond // 1000:03d} {compact(message)}"
    return f"{at:%H:%M:%S}.{at.microsecond // 1000:03d} {kind:<{TYPE_WIDTH}} {details}"


class Dashboard(ReconnectingClient):
    """One dashboard connection that prints what it receives and reconnects."""

    log = log

    def __init__(self, url, stop, token=None, raw_json=False, out=sys.stdout):
        super().__init__(url, stop, token)
        self.raw_json = raw_json
        self.out = out

    def _final_close(self, code):
        if code == CLOSE_POLICY and self.last_error in AUTH_ERRORS:
            return (f"the server refused the dashboard ({self.last_error}, close {code}); "
                    "check --token")
        return None

    def _session(self):
        """One connection, from connect to close; returns when stopped."""
        self.last_error = None
        ws = connect(self.url, open_timeout=10, close_timeout=2, max_size=MAX_FRAME, legacy=True)
        try:
            log.info("connected to %s", self.url)
            subscribe = {"type": "dashboard"}
            if self.token:
                subscribe["token"] = self.token
            ws.send(json.dumps(subscribe))
            while not self.stop.is_set():
                try:
                    raw = ws.recv(timeout=STOP_POLL)
                except TimeoutError:
                    continue
                self._show(raw)
        finally:
            ws.close()  # 1000 when we stop; a no-op when the server already closed
        log.info("disconnected (close 1000, stopped)")

    def _show(self, raw):
        try:
            message = json.loads(raw)
        except (TypeError, ValueError):
            log.warning("unreadable message from the server: %.200r", raw)
            return
        if isinstance(message, dict):
            if message.get("type") == "dashboard_ok":
                self.backoff.reset()
            elif message.get("type") == "error":
                self.last_error = message.get("code")
        line = compact(message) if self.raw_json else describe(message)
        print(line, file=self.out, flush=True)


def parse_args(argv=None):
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m tools.dashboard_sim",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=os.environ.get("VMS_URL", DEFAULT_URL),
                        help="the server's /ws URL (default: $VMS_URL or %(default)s)")
    parser.add_argument("--token", default=os.environ.get("VMS_API_KEY"),
                        help="a viewer or admin API key (default: $VMS_API_KEY; "
                             "omit in open auth mode)")
    parser.add_argument("--json", action="store_true", help="print raw JSON lines")
    parser.add_argument("--duration", type=float, metavar="SECONDS",
                        help="stop after this many seconds (default: run until Ctrl-C)")
    parser.add_argument("--verbose", action="store_true", help="log debugging details")
    return parser.parse_args(argv)


def main(argv=None):
    """Run the dashboard; the process exit status."""
    args = parse_args(argv)
    setup_logging(args.verbose, stream=sys.stderr)
    stop = threading.Event()
    stop_on_signals(stop)
    dashboard = Dashboard(args.url, stop, token=args.token, raw_json=args.json)
    return run_workers([("dashboard", dashboard.run)], stop, args.duration)


if __name__ == "__main__":
    sys.exit(main())
