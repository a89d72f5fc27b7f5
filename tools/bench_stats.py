"""Turns what a benchmark run observed into figures (see ``tools.bench``):
latency distributions, broadcast accounting, heartbeat rates, server cost."""

import bisect
import math
from collections import Counter, defaultdict

BROADCAST_REASONS = ("connected", "disconnected", "stale")
EXPECTED_STATUS = {"connected": "online", "disconnected": "offline", "stale": "offline"}
CLOSE_STALE = 4001
CLIENT_BOUND_SHARE = 0.8  # of one core, per client process


def percentile(sorted_values, p):
    """Nearest-rank percentile of an already sorted list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def distribution(values, scale=1.0, points=(50, 95, 99)):
    """count, p50/p95/p99, max and mean of ``values`` × ``scale``."""
    ordered = sorted(v * scale for v in values)
    summary = {"count": len(ordered)}
    for p in points:
        summary[f"p{p}"] = percentile(ordered, p)
    summary["max"] = ordered[-1] if ordered else None
    summary["mean"] = sum(ordered) / len(ordered) if ordered else None
    return summary


def silent_since(agent):
    """When a silent agent's silence began as the server sees it: its last
    heartbeat, or ``auth_ok`` when it never sent one (an agent may heartbeat
    only once it has ``auth_ok``, so the server's clock starts there)."""
    return agent["last_heartbeat"] or agent["auth_ok"]


class Observations:
    """Everything a run collected, as the coordinator hands it over."""

    def __init__(self, scenario, fleet, timeline, workers, monitor=None, machine_cpu=None,
                 database=None, last_seen=None, wall_offset=0.0, coordinator_cpu=None):
        self.scenario = scenario
        self.fleet = fleet  # NVR dicts: index, nvr_id, hostname, role, camera_ids
        self.timeline = timeline  # monotonic times of the phases
        self.workers = workers  # ClientProcess objects, each with its result
        self.monitor = monitor
        self.machine_cpu = machine_cpu
        self.database = database  # the probe's window, or None
        self.last_seen = last_seen  # (found, fetch info) or None
        self.wall_offset = wall_offset  # time.time() − time.monotonic()
        self.coordinator_cpu = coordinator_cpu  # {mark: CPU seconds}


class Analysis:
    """The figures of one run, from its observations."""

    def __init__(self, observations):
        self.o = observations
        self.scenario = observations.scenario
        self.agents = sorted((a for w in observations.workers if w.result
                              for a in w.result["agents"]), key=lambda a: a["index"])
        self.dashboards = [d for w in observations.workers if w.result
                           for d in w.result["dashboards"]]
        self.by_id = {a["nvr_id"]: a for a in self.agents}
        self.heartbeats = self._merge_heartbeats()
        self.steady = (observations.timeline["steady_start"], observations.timeline["steady_end"])
        self.latencies = None  # by reason, in seconds; filled by broadcasts()

    def _merge_heartbeats(self):
        merged = {"agent": [], "sent": [], "acked": []}
        for worker in self.o.workers:
            if worker.result:
                for key in merged:
                    merged[key].extend(worker.result["heartbeats"][key])
        return merged

    def figures(self):
        timeline = self.o.timeline
        broadcasts = self.broadcasts()  # before stale(), which uses its latencies
        return {
            "setup": self.setup(),
            "ramp": self.ramp(),
            "auth": self.auth(),
            "broadcasts": broadcasts,
            "heartbeat": self.heartbeat(),
            "stale": self.stale(),
            "agents": self.agent_closes(),
            "server": self.server(),
            "database": self.o.database,
            "last_seen": self.last_seen_lag(),
            "client": self.client(),
            "timeline_s": {k: round(v - timeline["setup_start"], 3)
                           for k, v in timeline.items() if v is not None},
        }

    # ---- set-up and ramp ---------------------------------------------------------
    def setup(self):
        t = self.o.timeline
        subscribe = [d["snapshot_at"] - d["connect_start"] for d in self.dashboards
                     if d["snapshot_at"] is not None]
        cpu = self.o.coordinator_cpu or {}
        seconds = t["setup_end"] - t["setup_start"]
        return {"rest_seconds": seconds,
                "client_cpu_share": (cpu["setup_end"] - cpu["setup_start"]) / seconds
                if "setup_end" in cpu and seconds > 0 else None,
                "rest_requests": self.scenario.nvrs * (1 + self.scenario.cameras),
                "dashboards_subscribed": len(subscribe),
                "dashboard_failures": [d["failure"] for d in self.dashboards if d["failure"]],
                "dashboard_subscribe_ms": distribution(subscribe, 1000),
                "snapshot_bytes": max((d["snapshot_bytes"] or 0 for d in self.dashboards),
                                      default=None)}

    def ramp(self):
        started = [a["connect_start"] for a in self.agents if a["connect_start"] is not None]
        done = [a["auth_ok"] for a in self.agents if a["auth_ok"] is not None]
        figures = {"mode": "burst" if self.scenario.burst else f"{self.scenario.ramp:g}/s"}
        if started and done:
            span = max(done) - min(started)
            figures.update(seconds=span, authenticated_per_s=len(done) / span if span else None)
        return figures

    def auth(self):
        ok = [a for a in self.agents if a["auth_ok"] is not None]
        told = Counter(a["heartbeat_interval"] for a in ok)
        return {"agents": self.scenario.nvrs, "authenticated": len(ok),
                "server_heartbeat_intervals": {str(k): v for k, v in told.items()},
                "failed": self.scenario.nvrs - len(ok),
                "failures": dict(Counter(a["failure"] or "no result" for a in self.agents
                                         if a["auth_ok"] is None)),
                "latency_ms": distribution([a["auth_ok"] - a["auth_sent"] for a in ok], 1000),
                "upgrade_ms": distribution([a["upgraded"] - a["connect_start"] for a in self.agents
                                            if a["upgraded"] is not None], 1000)}

    # ---- broadcasts --------------------------------------------------------------
    def expected_reasons(self, agent):
        """The broadcasts a dashboard must get about this agent's NVR, with the
        moment each latency counts from."""
        expected = {}
        if agent["auth_ok"] is not None:
            expected["connected"] = agent["auth_sent"]
            if agent["role"] == "disconnect" and agent["closed_by_us"] == "disconnect":
                expected["disconnected"] = agent["close_sent"]
            if agent["role"] == "silent":
                expected["stale"] = silent_since(agent)
        return expected

    def broadcasts(self):
        figures = {reason: {"expected": 0, "received": 0, "missing": 0, "duplicate": 0,
                            "latency_ms": None} for reason in BROADCAST_REASONS}
        latencies = defaultdict(list)
        unexpected, examples = 0, []
        wrong_cameras = foreign = 0
        cameras = self.scenario.cameras
        subscribed = [d for d in self.dashboards if d["snapshot_at"] is not None]
        for dashboard in subscribed:
            seen = defaultdict(list)  # (nvr_id, reason) → arrival times
            for moment, nvr_id, reason, status, _version, camera_count in dashboard["events"]:
                agent = self.by_id.get(nvr_id)
                if agent is None:
                    foreign += 1
                    continue
                if reason in EXPECTED_STATUS and status != EXPECTED_STATUS[reason]:
                    unexpected += 1
                    examples.append(f"NVR {nvr_id}: {reason} with status {status}")
                if camera_count != cameras:
                    wrong_cameras += 1
                seen[(nvr_id, reason)].append(moment)
            for agent in self.agents:
                expected = self.expected_reasons(agent)
                for reason, since in expected.items():
                    times = seen.pop((agent["nvr_id"], reason), [])
                    entry = figures[reason]
                    entry["expected"] += 1
                    entry["received"] += min(1, len(times))
                    entry["missing"] += not times
                    entry["duplicate"] += max(0, len(times) - 1)
                    if times:
                        latencies[reason].append(times[0] - since)
            for (nvr_id, reason), times in seen.items():  # whatever was not expected
                unexpected += len(times)
                if len(examples) < 10:
                    role = self.by_id[nvr_id]["role"]
                    examples.append(f"NVR {nvr_id} ({role} agent): {len(times)} × {reason} "
                                    f"on dashboard {dashboard['number']}")
        for reason in BROADCAST_REASONS:
            figures[reason]["latency_ms"] = distribution(latencies[reason], 1000)
        self.latencies = latencies
        others = Counter()
        for dashboard in self.dashboards:
            others.update(dashboard["others"])
        return {**figures, "dashboards": len(subscribed),
                "missing": sum(figures[r]["missing"] for r in BROADCAST_REASONS),
                "duplicate": sum(figures[r]["duplicate"] for r in BROADCAST_REASONS),
                "unexpected": unexpected, "unexpected_examples": examples[:10],
                "wrong_camera_ids": wrong_cameras, "other_nvrs": foreign,
                "other_messages": dict(others)}

    # ---- heartbeats --------------------------------------------------------------
    def heartbeat(self):
        start, end = self.steady
        hb = self.heartbeats
        steady_rtt, ramp_rtt, unacked, acked_in_window = [], [], 0, 0
        ramp_start = self.o.timeline["ramp_start"]
        for sent, acked in zip(hb["sent"], hb["acked"]):
            if start <= acked <= end:  # NaN compares false
                acked_in_window += 1
            if start <= sent <= end:
                if math.isnan(acked):
                    unacked += 1
                else:
                    steady_rtt.append(acked - sent)
            elif ramp_start <= sent < start and not math.isnan(acked):
                ramp_rtt.append(acked - sent)
        # Every authenticated agent but the silent ones should beat through
        # the window; those whose connection dropped count as missing beats.
        beating = sum(1 for a in self.agents if a["auth_ok"] is not None
                      and a["role"] != "silent")
        seconds = end - start
        return {"steady_rtt_ms": distribution(steady_rtt, 1000, (50, 95, 99, 99.9)),
                "ramp_rtt_ms": distribution(ramp_rtt, 1000),
                "acked_in_steady": acked_in_window, "steady_seconds": seconds,
                "rate_per_s": acked_in_window / seconds if seconds > 0 else None,
                "scheduled_per_s": beating / self.scenario.heartbeat,
                "unacked_in_steady": unacked,
                "late_heartbeats": sum(a["late_heartbeats"] for a in self.agents),
                "sent_total": len(hb["sent"])}

    def stale(self):
        silent = [a for a in self.agents if a["role"] == "silent" and a["auth_ok"] is not None]
        closed = [a for a in silent if a["close_code"] == CLOSE_STALE]
        close_after = [a["close_at"] - silent_since(a) for a in closed]
        detection = self.latencies["stale"]
        # Per silent agent: when the first and the last dashboard heard of it.
        heard = defaultdict(list)
        for dashboard in self.dashboards:
            for moment, nvr_id, reason, *_ in dashboard["events"]:
                if reason == "stale":
                    heard[nvr_id].append(moment)
        per_agent = []
        for agent in silent:
            since = silent_since(agent)
            times = heard.get(agent["nvr_id"], [])
            per_agent.append({"nvr_id": agent["nvr_id"],
                              "first_dashboard_s": min(times) - since if times else None,
                              "last_dashboard_s": max(times) - since if times else None,
                              "close_code": agent["close_code"],
                              "closed_after_s": agent["close_at"] - since
                              if agent["close_at"] is not None else None})
        return {"silent_agents": len(silent), "closed_4001": len(closed), "per_agent": per_agent,
                "other_closes": dict(Counter(str(a["close_code"]) for a in silent
                                             if a["close_code"] != CLOSE_STALE)),
                "detection_s": distribution(detection, 1, (50, 99)),
                "close_after_s": distribution(close_after, 1, (50, 99))}

    def agent_closes(self):
        """Connections the server closed that no scenario step asked for."""
        unexpected = Counter()
        errors = Counter()
        for agent in self.agents:
            errors.update(agent["errors"])
            if agent["closed_by_us"] is False and not (
                    agent["role"] == "silent" and agent["close_code"] == CLOSE_STALE):
                unexpected[str(agent["close_code"])] += 1
        lost = Counter(str(d["close_code"]) for d in self.dashboards
                       if d["snapshot_at"] is not None and d["close_at"] is not None)
        return {"unexpected_closes": sum(unexpected.values()),
                "unexpected_close_codes": dict(unexpected), "messages": dict(errors),
                "dashboards_lost": sum(lost.values()), "dashboard_close_codes": dict(lost)}

    # ---- the server's cost -------------------------------------------------------
    def server(self):
        monitor = self.o.monitor
        if monitor is None:
            return None
        marks = monitor.marks
        first = monitor.samples[0] if monitor.samples else {}
        figures = {"peak_rss_mb": (monitor.peak("rss") or 0) / 2 ** 20,
                   "processes_started_during_run": (monitor.peak("pids_seen") or 0)
                   - first.get("pids_seen", 0),
                   "peak_largest_process_rss_mb": (monitor.peak("largest_rss") or 0) / 2 ** 20,
                   "peak_threads": monitor.peak("threads"),
                   "processes": monitor.peak("processes")}
        if "steady_start" in marks and "steady_end" in marks:
            before, after = marks["steady_start"], marks["steady_end"]
            cpu = after["cpu"] - before["cpu"]
            acked = self.heartbeat_count_acked()
            figures.update(steady_cpu_seconds=cpu,
                           steady_cpu_cores=cpu / (after["t"] - before["t"]),
                           cpu_per_heartbeat_ms=cpu / acked * 1000 if acked else None)
        if "ramp_start" in marks and "ramp_end" in marks:
            before, after = marks["ramp_start"], marks["ramp_end"]
            cpu = after["cpu"] - before["cpu"]
            authenticated = sum(a["auth_ok"] is not None for a in self.agents)
            figures.update(ramp_cpu_cores=cpu / max(1e-9, after["t"] - before["t"]),
                           cpu_per_connection_ms=cpu / authenticated * 1000
                           if authenticated else None)
        return figures

    def heartbeat_count_acked(self):
        start, end = self.steady
        return sum(1 for acked in self.heartbeats["acked"] if start <= acked <= end)

    def last_seen_lag(self):
        """How far each online NVR's stored ``last_seen`` trails its agent's
        latest heartbeat acknowledged before its page was requested."""
        if self.o.last_seen is None:
            return None
        if isinstance(self.o.last_seen, str):  # the API did not answer
            return {"error": self.o.last_seen}
        found, fetch = self.o.last_seen
        per_agent = defaultdict(list)
        for index, sent, acked in zip(self.heartbeats["agent"], self.heartbeats["sent"],
                                      self.heartbeats["acked"]):
            if not math.isnan(acked):
                per_agent[index].append((acked, sent))
        lags, missing, offline = [], 0, 0
        for agent in self.agents:
            if agent["auth_ok"] is None or agent["role"] == "silent":
                continue
            status, last_seen, asked = found.get(agent["nvr_id"], (None, None, None))
            if status != "online":
                offline += 1
                continue
            beats = sorted(per_agent[agent["index"]])
            position = bisect.bisect_right(beats, (asked, math.inf))
            if position == 0:
                continue  # no heartbeat acknowledged yet when it was read
            if last_seen is None:
                missing += 1
                continue
            heartbeat_wall = beats[position - 1][1] + self.o.wall_offset
            lags.append(max(0.0, heartbeat_wall - last_seen))
        return {"checked": len(lags), "not_online": offline, "null_last_seen": missing,
                "lag_s": distribution(lags, 1, (50, 99)), "fetch": fetch}

    # ---- the client's own cost ---------------------------------------------------
    def client(self):
        t = self.o.timeline
        windows = {"ramp": (t["ramp_start"], t["ramp_end"]), "steady": self.steady}
        processes, shares = [], []
        for worker in self.o.workers:
            entry = {"name": worker.name, "kind": worker.kind,
                     "pid": worker.result["pid"] if worker.result else None}
            for name, (start, end) in windows.items():
                share = worker.cpu_share(start, end)
                peak = worker.peak_cpu_share(start, end)
                entry[f"{name}_cpu"] = share
                entry[f"{name}_peak_cpu"] = peak
                shares.extend(v for v in (share, peak) if v is not None)
                if worker.result:
                    lags = worker.result["lags"]
                    entry[f"{name}_loop_lag_ms"] = distribution(
                        [lags[i + 1] for i in range(0, len(lags), 2)
                         if start <= lags[i] <= end], 1000, (50, 99))
                    pauses = worker.result["gc_pauses"]
                    entry[f"{name}_gc_pauses_ms"] = distribution(
                        [pauses[i + 1] for i in range(0, len(pauses), 2)
                         if start <= pauses[i] <= end], 1000, (50,))
            processes.append(entry)
        coordinator = None
        cpu = self.o.coordinator_cpu or {}
        if "steady_start" in cpu and "steady_end" in cpu:
            coordinator = (cpu["steady_end"] - cpu["steady_start"]) / (self.steady[1]
                                                                       - self.steady[0])
        busy = busy_in_ramp = None
        if self.o.machine_cpu is not None:
            busy = self.o.machine_cpu.busy("steady_start", "steady_end")
            busy_in_ramp = self.o.machine_cpu.busy("ramp_start", "ramp_end")
        peak = max(shares, default=None)
        # What the rest of the machine used meanwhile: on a shared machine
        # other work competes with both sides and every figure suffers.
        others = None
        server = self.server() or {}
        steady = [p.get("steady_cpu") for p in processes]
        if busy is not None and None not in steady and server.get("steady_cpu_cores") is not None:
            others = max(0.0, busy - server["steady_cpu_cores"] - sum(steady)
                         - (coordinator or 0))
        return {"processes": processes, "max_cpu_share": peak,
                "coordinator_steady_cpu": coordinator,
                "machine_busy_cores_steady": busy, "machine_busy_cores_ramp": busy_in_ramp,
                "other_processes_cores_steady": others,
                "bound": peak is not None and peak > CLIENT_BOUND_SHARE}
