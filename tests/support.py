"""Test helpers: databases, a real gunicorn, real WebSocket clients, polling."""

import gc
import http.client
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests
import sqlalchemy as sa
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import State
from websockets.sync.client import connect
from websockets.uri import parse_uri

from tools.bench_monitor import children_by_parent

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG_URL = "postgresql://root@127.0.0.1:5432/test"

# Tokens of the NVRs the tests created, by hostname (lower case): shared by
# every server, since a test may reconnect an agent to a restarted one.
TOKENS = {}

# The admin key every test server accepts (VMS_ADMIN_API_KEY).
ADMIN_KEY = "vms_test_admin_key_for_the_suite"

# Token mode with compressed time (SPEC §2 allows fractions of a second). The
# suite fails auth on purpose from one address, so the per-address limit is
# raised here and tested on a server of its own.
FAST = {
    "VMS_AUTH_MODE": "token",
    "VMS_ADMIN_API_KEY": ADMIN_KEY,
    "VMS_AUTH_FAILURE_LIMIT": "100000 per minute",
    "VMS_HEARTBEAT_INTERVAL": "0.5",
    "VMS_STALE_AFTER": "1.5",
    "VMS_SWEEP_INTERVAL": "0.5",
}


ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
CAMERA_FIELDS = {"id", "nvr_id", "name", "channel", "status", "created_at", "updated_at"}


def error_of(response, status):
    """The ``{"code", "message"}`` of a JSON error answer with ``status``."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert not response.text.lstrip().startswith("<")  # never an HTML error page
    error = response.json()["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    return error


def wait_until(predicate, timeout=15.0, interval=0.02, message="condition"):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def unique(prefix="nvr"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def flask_env(database_url, **extra):
    """The environment of a server process: this one's, without a Redis unless
    ``extra`` names one."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    return {**env, "DATABASE_URL": database_url, "VMS_LOG_LEVEL": "INFO", **extra}


def migrate(database_url):
    """Run the release command against ``database_url``."""
    subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
                   cwd=ROOT, env=flask_env(database_url), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class LiveServer:
    """vmsapp under a real gunicorn, configured as the Procfile's web line."""

    def __init__(self, database_url, log_path, open_files=None, **environ):
        """``open_files``: the (soft, hard) limit gunicorn starts under, if
        not this process's; the rest are environment variables."""
        self.open_files = open_files
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"
        self.database_url = database_url
        self.log_path = log_path
        self.environ = {**FAST, **environ}
        self.process = None
        self.banners = 0  # start-up banners in the log so far (a restart adds more)
        self.tokens = TOKENS

    def start(self):
        env = flask_env(self.database_url, PORT=str(self.port), **self.environ)
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py",
             "--bind", f"127.0.0.1:{self.port}", "wsgi:app"],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=self._limit_open_files if self.open_files else None)
        wait_until(self._ready, timeout=20, message=f"gunicorn on {self.url}")
        # Jobs start after each worker boots; its banner says they are running.
        workers = 1
        if "REDIS_URL" in self.environ:
            workers = int(self.environ.get("WEB_CONCURRENCY", "1"))
        wait_until(lambda: self.log().count("vmsapp serving") >= self.banners + workers,
                   timeout=30, message="the start-up banners")
        self.banners = self.log().count("vmsapp serving")
        return self

    def _limit_open_files(self):
        resource.setrlimit(resource.RLIMIT_NOFILE, self.open_files)

    def worker_pids(self):
        """The pids of gunicorn's workers now."""
        return children_by_parent().get(self.process.pid, [])

    def _ready(self):
        if self.process.poll() is not None:
            raise AssertionError(f"gunicorn exited: {self.log()[-2000:]}")
        try:
            return requests.get(self.url + "/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False  # not listening yet, or the worker is still booting

    def stop(self, sig=signal.SIGTERM, timeout=30):
        # A response the test has dropped can still hold its kept-alive
        # connection from a reference cycle, and the graceful stop would wait
        # out gunicorn's keep-alive (5 s) for it.
        gc.collect()
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process:
            self._log.close()

    def log(self):
        return Path(self.log_path).read_text(errors="replace")

    # REST helpers ------------------------------------------------------------
    def api(self, method, path, key=ADMIN_KEY, **kwargs):
        """A REST call, with the admin key unless ``key`` (None: no header) says otherwise."""
        headers = kwargs.pop("headers", {})
        if key is not None:
            headers.setdefault("Authorization", f"Bearer {key}")
        return requests.request(method, self.url + path, timeout=10, headers=headers, **kwargs)

    def create_nvr(self, cameras=0, **fields):
        body = {"name": "Test NVR", "hostname": unique(), **fields}
        response = self.api("POST", "/api/nvrs", json=body)
        assert response.status_code == 201, response.text
        nvr = response.json()
        self.tokens[nvr["hostname"].lower()] = nvr["token"]
        nvr["cameras"] = [self.create_camera(nvr["id"], channel=n) for n in range(1, cameras + 1)]
        return nvr

    def create_camera(self, nvr_id, **fields):
        body = {"nvr_id": nvr_id, "name": "Camera", **fields}
        response = self.api("POST", "/api/cameras", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    def nvr(self, nvr_id):
        return self.api("GET", f"/api/nvrs/{nvr_id}").json()

    def sql(self, statement, **params):
        """Run SQL on the server's database directly (what a dead worker left
        behind, or what is stored while no server runs); returns the rows."""
        from config import database_url

        engine = sa.create_engine(database_url({"DATABASE_URL": self.database_url}))
        try:
            with engine.begin() as connection:
                result = connection.execute(sa.text(statement), params)
                return result.mappings().all() if result.returns_rows else []
        finally:
            engine.dispose()

    def events(self, nvr_id):
        return self.api("GET", f"/api/nvrs/{nvr_id}/events?limit=1000").json()["items"]


class Client:
    """A WebSocket peer speaking JSON; keeps every message it received."""

    def __init__(self, url, **kwargs):
        self.ws = connect(url, open_timeout=10, legacy=True, **kwargs)
        self.received = []

    def send(self, message):
        self.ws.send(message if isinstance(message, (str, bytes)) else json.dumps(message))

    def recv(self, timeout=5.0):
        message = json.loads(self.ws.recv(timeout=timeout))
        self.received.append(message)
        return message

    def expect(self, predicate, timeout=10.0, what="a message"):
        """The first message (already received or arriving) that matches."""
        for message in self.received:
            if predicate(message):
                return message
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {what} within {timeout}s; got {self.received[-5:]}")
            try:
                message = self.recv(timeout=remaining)
            except TimeoutError:
                continue
            if predicate(message):
                return message

    def expect_type(self, kind, timeout=10.0, **fields):
        return self.expect(lambda m: m.get("type") == kind and
                           all(m.get(k) == v for k, v in fields.items()),
                           timeout, what=f"{kind} {fields}")

    def close_code(self, timeout=10.0):
        """Wait for the server to close; the close code it sent."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                try:
                    self.recv(timeout=max(0.01, deadline - time.monotonic()))
                except TimeoutError:
                    pass
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
        raise AssertionError(f"connection still open after {timeout}s")

    def close(self):
        self.ws.close()


def auth(server, hostname):
    """The ``auth`` message for an NVR that ``server.create_nvr`` made."""
    return {"type": "auth", "hostname": hostname, "token": server.tokens.get(hostname.lower())}


def nvr_agent(server, hostname, **kwargs):
    """An authenticated agent; returns (client, auth_ok)."""
    client = Client(server.ws_url, **kwargs)
    client.send(auth(server, hostname))
    return client, client.expect_type("auth_ok")


def dashboard(server, key=ADMIN_KEY):
    """A subscribed dashboard whose snapshot has been received."""
    client = Client(server.ws_url)
    client.send({"type": "dashboard", "token": key})
    client.expect_type("dashboard_ok")
    client.expect_type("snapshot")
    return client


def raw_upgrade(server, headers, host=True):
    """The status, headers and body a raw upgrade request to /ws with
    ``headers`` (``"Name: value"`` lines, sent as they are, repeats included)
    and a Host, unless not ``host``, is answered with."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.putrequest("GET", "/ws", skip_host=not host, skip_accept_encoding=True)
        for line in ["Upgrade: websocket", "Connection: Upgrade", *headers]:
            connection.putheader(*line.split(": ", 1))
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


class AnsweringPeer:
    """What a /ws handler called in-process needs of a socket: it records what
    it is sent, and closing it fails the test."""

    address, bearer = "192.0.2.7", None

    def __init__(self):
        self.sent = []

    def send(self, text):
        self.sent.append(text)

    def close(self, code, reason=""):
        raise AssertionError(f"closed {code}: {reason}")


class RawPeer:
    """A WebSocket client that sends frames exactly as given (a library would
    refuse broken ones) and keeps every frame the server sends, pings among
    them. websockets' sans-I/O client protocol does the handshake and the
    parsing; the pongs and close replies it owes go out as it reads, unless
    ``answering`` is False."""

    def __init__(self, server, answering=True):
        self.answering = answering
        self.frames = []
        self.ended = False  # the server shut its side of the TCP connection
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        self.protocol = ClientProtocol(parse_uri(server.ws_url))
        self.protocol.send_request(self.protocol.connect())
        self.sock.sendall(b"".join(self.protocol.data_to_send()))
        deadline = time.monotonic() + 5
        while self.protocol.state is State.CONNECTING:
            assert not self.ended and time.monotonic() < deadline, "no handshake reply"
            self._read(deadline - time.monotonic())
        assert self.protocol.handshake_exc is None, self.protocol.handshake_exc

    @property
    def messages(self):
        """The text messages received so far, parsed."""
        return [json.loads(f.data) for f in self.frames if f.opcode is Opcode.TEXT]

    @property
    def pings(self):
        return sum(frame.opcode is Opcode.PING for frame in self.frames)

    def send_frame(self, opcode, data, fin=True):
        frame = Frame(opcode, data.encode() if isinstance(data, str) else data, fin)
        self.sock.sendall(frame.serialize(mask=True, extensions=()))

    def send_text(self, text):
        self.send_frame(Opcode.TEXT, text)

    def send(self, message):
        self.send_text(json.dumps(message))

    def _read(self, timeout):
        """Read what comes within ``timeout``, if anything."""
        self.sock.settimeout(max(0.01, timeout))
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return
        except ConnectionResetError:
            # The server closed with our last frames unread (a close reply
            # to its close after a protocol error): ended all the same.
            data = b""
        if data:
            self.protocol.receive_data(data)
        else:
            self.ended = True
            self.protocol.receive_eof()
        self.frames += [e for e in self.protocol.events_received() if isinstance(e, Frame)]
        if self.answering:
            self.answer()

    def answer(self):
        """Send what the protocol owes the server (pongs, close replies)."""
        for data in self.protocol.data_to_send():
            if data and not self.ended:
                self.sock.sendall(data)

    def serve(self, seconds, heartbeat_every=None):
        """Read for ``seconds`` (answering pings), heartbeating if asked."""
        deadline = time.monotonic() + seconds
        next_heartbeat = time.monotonic()
        while time.monotonic() < deadline:
            if heartbeat_every and time.monotonic() >= next_heartbeat:
                self.send({"type": "heartbeat"})
                next_heartbeat += heartbeat_every
            self._read(0.05)
            assert not self.ended, "the server closed the connection"

    def expect(self, predicate, timeout=5.0, what="a frame"):
        """The first frame received (already, or within ``timeout``) that matches."""
        deadline = time.monotonic() + timeout
        while True:
            for frame in self.frames:
                if predicate(frame):
                    return frame
            remaining = deadline - time.monotonic()
            if self.ended or remaining <= 0:
                raise AssertionError(f"no {what}; got {self.frames[-5:]}")
            self._read(remaining)

    def expect_message(self, kind, timeout=5.0):
        """The first text message of type ``kind``, parsed."""
        frame = self.expect(lambda f: f.opcode is Opcode.TEXT and
                            json.loads(f.data).get("type") == kind, timeout, what=kind)
        return json.loads(frame.data)

    def close_code(self, timeout=5.0):
        """The code of the server's close frame."""
        frame = self.expect(lambda f: f.opcode is Opcode.CLOSE, timeout, what="a close frame")
        return Close.parse(frame.data).code

    def ended_within(self, timeout):
        """Whether the server shuts its side of the connection within ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self.ended and time.monotonic() < deadline:
            self._read(deadline - time.monotonic())
        return self.ended

    def close(self):
        self.sock.close()
