"""What the benchmark watches from outside the server: CPU and memory of the
server's whole process tree (``/proc``), the machine's CPU, and the machine
itself (see ``tools.bench``)."""

import os
import platform
import sys
import threading
import time

now = time.monotonic
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def stat_fields(pid):
    """Fields of /proc/<pid>/stat after the command name (field 3 first)."""
    with open(f"/proc/{pid}/stat", "rb") as handle:
        raw = handle.read()
    return raw[raw.rindex(b")") + 2:].split()


def children_by_parent():
    """Every process's pid, by its parent's pid: {ppid: [pid, …]}."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(stat_fields(entry)[1])
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        children.setdefault(ppid, []).append(int(entry))
    return children


class ProcessTreeMonitor:
    """Samples a process and all its descendants every ``period`` seconds on
    a thread: CPU seconds (user + system, all threads), resident memory (the
    sum over the tree) and thread count. ``mark(name)`` takes a sample at once
    and keeps it under a name, for exact windows."""

    def __init__(self, root_pid, period=0.5):
        self.root_pid = root_pid
        self.period = period
        self.samples = []  # dicts: t, cpu, rss, processes, threads, largest_rss, pids_seen
        self.marks = {}
        # CPU seconds of every process ever seen in the tree: a worker that
        # dies (killed, restarted) keeps its share instead of vanishing from the sum.
        self._cpu_by_pid = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-monitor", daemon=True)

    def start(self):
        self.sample()
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)

    def _run(self):
        while not self._stop.wait(self.period):
            self.sample()

    def tree(self):
        """The root pid and its descendants, found through every process's ppid."""
        children = children_by_parent()
        found, todo = [], [self.root_pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, ()))
        return found

    def sample(self):
        """Read the tree now; the sample (None when the root is gone)."""
        pids = self.tree()
        rss = threads = processes = largest = 0
        # Timed around the reads alone: on a saturated machine this thread
        # may wait a while for a CPU, and a skewed time would skew every rate.
        before = now()
        for pid in pids:
            try:
                fields = stat_fields(pid)
            except OSError:
                continue
            self._cpu_by_pid[(pid, fields[19])] = (int(fields[11]) + int(fields[12])) / TICK
            threads += int(fields[17])
            resident = int(fields[21]) * PAGE
            rss += resident
            largest = max(largest, resident)
            processes += 1
        moment = (before + now()) / 2
        if not processes:
            return None
        cpu = sum(self._cpu_by_pid.values())  # utime + stime, the dead included
        sample = {"t": moment, "cpu": cpu, "rss": rss, "processes": processes,
                  "threads": threads, "largest_rss": largest,
                  "pids_seen": len(self._cpu_by_pid)}
        with self._lock:
            self.samples.append(sample)
        return sample

    def mark(self, name):
        sample = self.sample()
        if sample is not None:
            self.marks[name] = sample
        return sample

    def latest(self):
        with self._lock:
            return self.samples[-1] if self.samples else None

    def cpu_share(self, seconds=2.0):
        """Cores used over the last ``seconds`` (for progress lines)."""
        with self._lock:
            if len(self.samples) < 2:
                return None
            last = self.samples[-1]
            for sample in reversed(self.samples[:-1]):
                if last["t"] - sample["t"] >= seconds:
                    break
        span = last["t"] - sample["t"]
        return (last["cpu"] - sample["cpu"]) / span if span > 0 else None

    def peak(self, field):
        with self._lock:
            return max((s[field] for s in self.samples), default=None)


class MachineCpu:
    """The whole machine's CPU from /proc/stat: busy share between two marks."""

    def __init__(self):
        self.marks = {}

    @staticmethod
    def read():
        with open("/proc/stat") as handle:
            values = [int(v) for v in handle.readline().split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return sum(values[:8]), idle  # without guest time, already counted in user

    def mark(self, name):
        self.marks[name] = self.read()

    def busy(self, start, end):
        """Busy cores between two marks (0 … nproc)."""
        if start not in self.marks or end not in self.marks:
            return None
        (total0, idle0), (total1, idle1) = self.marks[start], self.marks[end]
        if total1 <= total0:
            return None
        return (1 - (idle1 - idle0) / (total1 - total0)) * (os.cpu_count() or 1)


def machine_info():
    """What the numbers depend on: cores, CPU model, memory, Python."""
    model = None
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = None
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    memory = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    return {"nproc": len(os.sched_getaffinity(0)), "cpu_count": os.cpu_count(),
            "cpu_model": model, "memory_bytes": memory, "python": sys.version.split()[0],
            "platform": platform.platform(), "hostname": platform.node()}


def python_speed(rounds=3):
    """Milliseconds one core takes for a fixed pure-Python loop, best of
    ``rounds``: figures taken on machines of different speed compare through it."""
    best = None
    for _ in range(rounds):
        start = time.perf_counter()
        total = 0
        for number in range(1_000_000):
            total += number % 7
        elapsed = time.perf_counter() - start
        best = elapsed if best is None else min(best, elapsed)
    return round(best * 1000, 1)
