"""The coordinator's side of the client processes (see ``tools.bench``):
start them (multiprocessing, spawn), send them commands, gather their
progress lines and results, and stop them."""

import multiprocessing
import time
from multiprocessing.connection import wait

from .bench_clients import PROGRESS_EVERY, worker_main

now = time.monotonic


class ClientProcess:
    """A client worker process as the coordinator sees it: its pipe, its
    latest progress line, CPU samples over time, and its result."""

    def __init__(self, context, name, setup):
        self.name = name
        self.kind = setup["kind"]
        self.conn, child = context.Pipe()
        self.process = context.Process(target=worker_main, args=(child, setup), name=name,
                                       daemon=True)
        self.process.start()
        child.close()
        self.ready = None
        self.progress = {}
        self.cpu_samples = []  # (monotonic time, CPU seconds)
        self.result = None
        self.stopped = False

    def send(self, *command):
        try:
            self.conn.send(command)
        except (BrokenPipeError, OSError):
            pass

    def receive(self):
        try:
            kind, payload = self.conn.recv()
        except (EOFError, OSError):
            self.stopped = True
            return
        if kind == "progress":
            self.progress = payload
            self.cpu_samples.append((payload["t"], payload["cpu"]))
        elif kind == "ready":
            self.ready = payload
        elif kind == "result":
            self.result = payload
            self.progress = payload["progress"]
        elif kind == "stopped":
            self.stopped = True

    def cpu_share(self, start, end):
        """The fraction of one core this process used between two times."""
        before = _interpolate(self.cpu_samples, start)
        after = _interpolate(self.cpu_samples, end)
        if before is None or after is None or end <= start:
            return None
        return (after - before) / (end - start)

    def peak_cpu_share(self, start, end, span=2.0):
        """The highest share of a core over any ``span`` seconds in the window."""
        samples = [(t, c) for t, c in self.cpu_samples if start - span <= t <= end]
        best = None
        for i, (t0, c0) in enumerate(samples):
            for t1, c1 in samples[i + 1:]:
                if t1 - t0 >= span:
                    share = (c1 - c0) / (t1 - t0)
                    best = share if best is None else max(best, share)
                    break
        return best


def _interpolate(samples, moment):
    if not samples:
        return None
    if moment <= samples[0][0]:
        return samples[0][1] if moment >= samples[0][0] - PROGRESS_EVERY * 2 else None
    for (t0, c0), (t1, c1) in zip(samples, samples[1:]):
        if t0 <= moment <= t1:
            return c0 + (c1 - c0) * (moment - t0) / (t1 - t0)
    return samples[-1][1] if moment - samples[-1][0] <= PROGRESS_EVERY * 2 else None


class ClientPool:
    """Every client process, and the plumbing to command and hear from them."""

    def __init__(self):
        self.context = multiprocessing.get_context("spawn")
        self.processes = []

    def start(self, name, setup):
        process = ClientProcess(self.context, name, setup)
        self.processes.append(process)
        return process

    @property
    def agents(self):
        return [p for p in self.processes if p.kind == "agents"]

    @property
    def dashboards(self):
        return [p for p in self.processes if p.kind == "dashboards"]

    def send(self, *command, to=None):
        for process in (self.processes if to is None else to):
            process.send(*command)

    def pump(self, timeout):
        """Read whatever the processes sent within ``timeout`` seconds."""
        live = {p.conn: p for p in self.processes if not p.stopped}
        if not live:
            time.sleep(max(0.0, timeout))
            return
        for conn in wait(list(live), timeout=max(0.0, timeout)):
            live[conn].receive()
        for process in live.values():
            if not process.process.is_alive() and not process.stopped:
                while process.conn.poll():
                    process.receive()
                process.stopped = True

    def total(self, field, kind="agents"):
        return sum(p.progress.get(field, 0) for p in self.processes if p.kind == kind)

    def received(self, reason):
        """Broadcasts with this reason that every dashboard has received (the minimum)."""
        counts = [p.progress.get("received", {}).get(reason, 0) for p in self.dashboards]
        return min(counts) if counts else 0

    def collect(self, timeout=60.0):
        """Ask every process for its observations and wait for them."""
        for process in self.processes:
            process.result = None
        self.send("report")
        deadline = now() + timeout
        while now() < deadline and any(p.result is None and not p.stopped
                                       for p in self.processes):
            self.pump(deadline - now())
        missing = [p.name for p in self.processes if p.result is None]
        if missing:
            raise RuntimeError(f"no result from client process(es) {', '.join(missing)}")

    def stop(self, processes=None, timeout=15.0):
        processes = self.processes if processes is None else processes
        self.send("stop", to=[p for p in processes if not p.stopped])
        deadline = now() + timeout
        while now() < deadline and any(not p.stopped for p in processes):
            self.pump(min(0.5, deadline - now()))
        for process in processes:
            process.process.join(timeout=max(0.1, deadline - now()))
            if process.process.is_alive():
                process.process.terminate()
                process.process.join(5)
