"""The benchmark's REST side: create the fleet (NVRs with their cameras and
tokens), read ``last_seen`` under load, delete the fleet (see ``tools.bench``).

A server in ``open`` auth mode, or the Node.js reference peer, hands out no
tokens and may serve only the set-up calls: a missing token is None, and a
read or a delete the server answers with 404 is said, not fatal."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import requests

now = time.monotonic
RETRIES = 3


class NotServed(RuntimeError):
    """The server does not serve this call (the peer has no ``GET /api/nvrs``)."""


class RestClient:
    """JSON calls with the admin key (none when ``key`` is None) on one
    keep-alive session per thread."""

    def __init__(self, base_url, key, timeout=30.0):
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.timeout = timeout
        self._local = threading.local()

    def session(self):
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            if self.key:
                session.headers["Authorization"] = f"Bearer {self.key}"
        return session

    def call(self, method, path, expect=(200,), **kwargs):
        """The decoded answer; retries broken connections, fails on other statuses."""
        return self.answer(method, path, expect, **kwargs)[1]

    def answer(self, method, path, expect=(200,), **kwargs):
        """(status, decoded answer), as ``call``."""
        for attempt in range(RETRIES):
            try:
                response = self.session().request(method, self.base_url + path,
                                                  timeout=self.timeout, **kwargs)
            except requests.ConnectionError:
                if attempt == RETRIES - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))
                continue
            if response.status_code not in expect:
                if response.status_code == 401 and not self.key:
                    raise RuntimeError(f"{method} {path} answered 401: the server asks for "
                                       "an admin key (--key)")
                raise RuntimeError(f"{method} {path} answered {response.status_code}: "
                                   f"{response.text[:300]}")
            return response.status_code, response.json() if response.content else None


class Fleet:
    """The bench's NVRs: ``bench-<run>-00001`` … with ``cameras`` cameras
    each (channels 1…C), created over REST by ``threads`` parallel sessions.
    Each NVR is a dict: index, nvr_id, hostname, token, camera_ids."""

    def __init__(self, rest, run_id, threads=8):
        self.rest = rest
        self.run_id = run_id
        self.threads = threads
        self.nvrs = []
        self.seconds = None
        self.requests = 0

    def hostname(self, index):
        return f"bench-{self.run_id}-{index + 1:05d}"

    def create(self, count, cameras, progress=None):
        started = now()
        done = [0]
        lock = threading.Lock()

        def create_one(index):
            body = {"name": f"Bench NVR {index + 1}", "hostname": self.hostname(index),
                    "location": "benchmark"}
            nvr = self.rest.call("POST", "/api/nvrs", expect=(201,), json=body)
            camera_ids = [self.rest.call("POST", "/api/cameras", expect=(201,),
                                         json={"nvr_id": nvr["id"], "name": f"Camera {n}",
                                               "channel": n})["id"]
                          for n in range(1, cameras + 1)]
            with lock:
                done[0] += 1
                if progress and done[0] % 100 == 0:
                    progress(done[0], count, now() - started)
            return {"index": index, "nvr_id": nvr["id"], "hostname": nvr["hostname"],
                    "token": nvr.get("token"), "camera_ids": camera_ids}

        with ThreadPoolExecutor(self.threads, thread_name_prefix="bench-setup") as pool:
            self.nvrs = list(pool.map(create_one, range(count)))
        self.seconds = now() - started
        self.requests = count * (1 + cameras)
        return self.nvrs

    def last_seen(self):
        """Every NVR's status and ``last_seen`` (as a Unix time), read page by
        page; with each, the monotonic time its page was requested."""
        found = {}
        offset, pages, started = 0, [], now()
        while True:
            asked = now()
            status, page = self.rest.answer("GET", f"/api/nvrs?limit=1000&offset={offset}",
                                            expect=(200, 404))
            if status == 404:
                raise NotServed("the server has no GET /api/nvrs")
            pages.append(now() - asked)
            for item in page["items"]:
                found[item["id"]] = (item["status"], parse_time(item.get("last_seen")), asked)
            offset += len(page["items"])
            if not page["items"] or offset >= page["total"]:
                break
        return found, {"pages": len(pages), "seconds": now() - started,
                       "slowest_page_s": max(pages)}

    def delete(self):
        """Delete the bench's NVRs (and with them their cameras); how many the
        server deleted (none, from one without deletes: 404 to each)."""
        def delete_one(nvr):
            status, _ = self.rest.answer("DELETE", f"/api/nvrs/{nvr['nvr_id']}",
                                         expect=(204, 404))
            return status == 204

        with ThreadPoolExecutor(self.threads, thread_name_prefix="bench-cleanup") as pool:
            return sum(pool.map(delete_one, self.nvrs))


def parse_time(text):
    """A Unix time from the API's ISO 8601 ``…Z`` times; None stays None."""
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
