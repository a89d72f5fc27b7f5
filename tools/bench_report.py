"""The benchmark's verdict: each figure against its target, as a table on
the terminal and, with everything else, as JSON (see ``tools.bench``)."""

import json
import math
import textwrap
from dataclasses import asdict, dataclass
from pathlib import Path

from .bench_stats import CLIENT_BOUND_SHARE

PASS, FAIL, NA, WARN, OK = "PASS", "FAIL", "n/a", "WARN", "ok"

LATENCY_P99_MS = 50.0
RTT_P99_MS = 10.0
CPU_PER_HEARTBEAT_MS = 0.2
STALE_SLACK_S = 0.5
PEAK_RSS_MB = 350.0
DB_WRITES_PER_S = 10.0  # the flush and the sweep: a few a second whatever the fleet size
LAST_SEEN_SLACK_S = 0.25
RATE_SHARE = 0.98  # of the heartbeats scheduled in the steady window
LOOP_LAG_P99_MS = 5.0  # a client loop running later than this inflates every latency
OTHER_LOAD_CORES = 0.25  # CPU used by neither side, above which the run is suspect
# Of all cores busy during the ramp, above which every process waited for one.
SATURATED_SHARE = 0.9


@dataclass
class Check:
    figure: str
    value: str
    target: str
    result: str  # PASS, FAIL, n/a; ok or WARN for informative rows; "" for none


def ms(value, digits=1):
    return "—" if value is None else f"{value:.{digits}f}"


def verdict(ok):
    return NA if ok is None else (PASS if ok else FAIL)


def spread(summary, keys, unit="ms", digits=1):
    """'p50 1.2 / p99 3.4 / max 5.6 ms' from a distribution summary."""
    if not summary or not summary.get("count"):
        return "no samples"
    parts = " / ".join(f"{k} {ms(summary[k], digits)}" for k in keys)
    return f"{parts} {unit} (n={summary['count']})"


class Report:
    """Builds the checks from the figures, prints them, writes the JSON."""

    def __init__(self, scenario, figures, context):
        self.scenario = scenario
        self.figures = figures
        self.context = context  # machine, server, database, started_at …
        self.checks = self.build()

    @property
    def passed(self):
        return all(check.result != FAIL for check in self.checks)

    def build(self):
        self._checks = []
        self._correctness()
        self._latency()
        self._cost()
        self._information()
        return self._checks

    def add(self, figure, value, target="", result=""):
        self._checks.append(Check(figure, value, target, result))

    def _correctness(self):
        s, f, add = self.scenario, self.figures, self.add
        auth, casts, stale = f["auth"], f["broadcasts"], f["stale"]
        add("agents authenticated", f"{auth['authenticated']}/{auth['agents']}"
            + (f" ({auth['failed']} failed)" if auth["failed"] else ""), "all",
            verdict(auth["authenticated"] == auth["agents"]))
        subscribed = f["setup"]["dashboards_subscribed"]
        add("dashboards subscribed", f"{subscribed}/{s.dashboards}", "all",
            verdict(subscribed == s.dashboards))
        for kind in ("missing", "duplicate"):
            detail = " / ".join(str(casts[r][kind]) for r in ("connected", "disconnected", "stale"))
            add(f"{kind} broadcasts (conn / disc / stale)", f"{casts[kind]} ({detail})", "0",
                verdict(casts[kind] == 0))
        add("unexpected transitions", str(casts["unexpected"]), "0",
            verdict(casts["unexpected"] == 0))
        add("silent agents closed with 4001", f"{stale['closed_4001']}/{stale['silent_agents']}"
            + (f" (others: {_codes(stale['other_closes'])})" if stale["other_closes"] else ""),
            "all", verdict(stale["closed_4001"] == stale["silent_agents"]) if s.silent else NA)

    def _latency(self):
        s, f, add = self.scenario, self.figures, self.add
        auth, casts, hb, stale = f["auth"], f["broadcasts"], f["heartbeat"], f["stale"]
        lat = auth["latency_ms"]
        add("auth latency (auth → auth_ok)", spread(lat, ("p50", "p95", "p99", "max")),
            f"p99 ≤ {LATENCY_P99_MS:g} ms", verdict(_le(lat["p99"], LATENCY_P99_MS)))
        for reason, label, wanted in (("connected", "connect-notify (auth → nvr_status)", True),
                                      ("disconnected", "disconnect-notify (close → nvr_status)",
                                       s.disconnects > 0)):
            summary = casts[reason]["latency_ms"]
            add(label, spread(summary, ("p50", "p99", "max")), f"p99 ≤ {LATENCY_P99_MS:g} ms",
                verdict(_le(summary["p99"], LATENCY_P99_MS)) if wanted else NA)
        rtt = hb["steady_rtt_ms"]
        add("heartbeat → ack RTT (steady)", spread(rtt, ("p50", "p99", "max"), digits=2),
            f"p99 ≤ {RTT_P99_MS:g} ms", verdict(_le(rtt["p99"], RTT_P99_MS)))
        rate, scheduled = hb["rate_per_s"], hb["scheduled_per_s"]
        add("heartbeats acknowledged (steady)",
            f"{ms(rate, 0)}/s of {ms(scheduled, 0)}/s scheduled, {hb['unacked_in_steady']} unacked",
            f"≥ {RATE_SHARE:.0%} of scheduled",
            verdict(rate is not None and rate >= RATE_SHARE * scheduled))
        limit = s.stale_after + STALE_SLACK_S
        detection = stale["detection_s"]
        add("stale detection (last heartbeat → stale)",
            spread(detection, ("p50", "max"), unit="s", digits=3), f"max ≤ {limit:g} s",
            verdict(_le(detection["max"], limit) and casts["stale"]["missing"] == 0)
            if s.silent else NA)
        seen = f["last_seen"]
        if seen is None:
            add("last_seen lag behind heartbeats", "n/a (the server has no GET /api/nvrs)",
                f"max ≤ {s.heartbeat + LAST_SEEN_SLACK_S:g} s", NA)
        elif "error" in seen:
            add("last_seen lag behind heartbeats", f"not read: {seen['error']}",
                f"max ≤ {s.heartbeat + LAST_SEEN_SLACK_S:g} s", FAIL)
        elif seen is not None:
            limit = s.heartbeat + LAST_SEEN_SLACK_S
            lag = seen["lag_s"]
            problems = seen["not_online"] + seen["null_last_seen"]
            add("last_seen lag behind heartbeats",
                spread(lag, ("p50", "max"), unit="s", digits=3)
                + (f"; {seen['not_online']} not online, {seen['null_last_seen']} null"
                   if problems else ""),
                f"max ≤ {limit:g} s", verdict(_le(lag["max"], limit) and problems == 0))

    def _cost(self):
        """What the server spent: CPU, memory, database writes."""
        f, add = self.figures, self.add
        server = f["server"]
        if server is None:
            add("server CPU per heartbeat (steady)", "n/a (no --server-pid)",
                f"≤ {CPU_PER_HEARTBEAT_MS:g} ms", NA)
            add("peak RSS, whole server tree", "n/a (no --server-pid)",
                f"≤ {PEAK_RSS_MB:g} MB", NA)
        else:
            per = server.get("cpu_per_heartbeat_ms")
            add("server CPU per heartbeat (steady)",
                f"{ms(per, 3)} ms ({ms(server.get('steady_cpu_cores', 0) * 100, 0)} % of a core)",
                f"≤ {CPU_PER_HEARTBEAT_MS:g} ms", verdict(_le(per, CPU_PER_HEARTBEAT_MS)))
            add("peak RSS, whole server tree",
                f"{server['peak_rss_mb']:.0f} MB ({server['processes']} processes, "
                f"{server['peak_threads']} threads)",
                f"≤ {PEAK_RSS_MB:g} MB", verdict(server["peak_rss_mb"] <= PEAK_RSS_MB))
            restarted = server.get("processes_started_during_run", 0)
            add("server processes started during the run", str(restarted), "0",
                WARN if restarted else OK)
        database = f["database"]
        target = f"≤ {DB_WRITES_PER_S:g}/s, not ∝ N"
        if database is None:
            add("DB write transactions/s (steady)",
                "n/a (database not visible: pass --database-url)", target, NA)
        else:
            rows = database.get("rows_written_per_s")
            # PostgreSQL's counters arrive up to seconds late: short windows are rough.
            short = database["seconds"] < 20 and database.get("method", "").startswith("pg_")
            add("DB write transactions/s (steady)",
                f"{database['commits_per_s']:.1f}/s"
                + (f", {rows:.0f} rows/s" if rows is not None else "")
                + f" [{self.context.get('database_kind')}"
                + (f", approximate: {database['seconds']:.0f} s window]" if short else "]"),
                target,
                WARN if short else verdict(database["commits_per_s"] <= DB_WRITES_PER_S))

    def _information(self):
        """Rows without a target: where the time went, and how far to trust the run."""
        s, f, add = self.scenario, self.figures, self.add
        setup, ramp, auth, hb = f["setup"], f["ramp"], f["auth"], f["heartbeat"]
        add("set-up over REST",
            f"{s.nvrs} NVRs + {s.nvrs * s.cameras} cameras in {setup['rest_seconds']:.1f} s "
            f"({setup['rest_requests'] / max(setup['rest_seconds'], 1e-9):.0f} req/s, "
            f"client CPU {_pct(setup.get('client_cpu_share'))})")
        add("dashboard subscribe + snapshot",
            spread(setup["dashboard_subscribe_ms"], ("p50", "max"))
            + f", snapshot {(setup['snapshot_bytes'] or 0) / 1024:.0f} KiB")
        if ramp.get("seconds"):
            add("ramp", f"{auth['authenticated']} agents in {ramp['seconds']:.2f} s "
                f"({ramp['authenticated_per_s']:.0f}/s; asked {ramp['mode']})")
        add("TCP + upgrade", spread(auth["upgrade_ms"], ("p50", "p99", "max")))
        add("heartbeat RTT during ramp", spread(hb["ramp_rtt_ms"], ("p50", "p99", "max"), digits=2))
        server = f["server"]
        if server is not None and server.get("ramp_cpu_cores") is not None:
            add("server CPU during ramp",
                f"{server['ramp_cpu_cores'] * 100:.0f} % of a core, "
                f"{ms(server.get('cpu_per_connection_ms'), 2)} ms per connection")
        closes = f["agents"]
        add("unexpected agent closes", f"{closes['unexpected_closes']}"
            + (f" ({_codes(closes['unexpected_close_codes'])})"
               if closes["unexpected_closes"] else ""))
        add("dashboard connections lost", f"{closes['dashboards_lost']}"
            + (f" ({_codes(closes['dashboard_close_codes'])})"
               if closes["dashboards_lost"] else ""))
        log = self.context.get("server", {}).get("log_counts")
        if log:
            add("server log", f"{log['errors']} errors, {log['warnings']} warnings, "
                f"{log['tracebacks']} tracebacks")
        if closes["messages"]:
            add("unexpected messages to agents", _codes(closes["messages"]))
        add("broadcasts with wrong camera_ids", str(f["broadcasts"]["wrong_camera_ids"]))
        self._client()

    def _client(self):
        """The client's own cost, and whether the machine was the bench's alone."""
        client, add = self.figures["client"], self.add
        shares = ", ".join(f"{p['name']} {_pct(p.get('ramp_cpu'))}/{_pct(p.get('steady_cpu'))}"
                           for p in client["processes"])
        add("client CPU per process (ramp/steady)",
            f"{shares}; peak {_pct(client['max_cpu_share'])}",
            f"< {CLIENT_BOUND_SHARE:.0%} of a core", "CLIENT-BOUND" if client["bound"] else OK)
        lags = [p.get("steady_loop_lag_ms") or {} for p in client["processes"]]
        worst = max((lag.get("max") or 0 for lag in lags), default=0)
        p99 = max((lag.get("p99") or 0 for lag in lags), default=0)
        pauses = [p.get("steady_gc_pauses_ms") or {} for p in client["processes"]]
        longest = max((pause.get("max") or 0 for pause in pauses), default=0)
        add("client event-loop lag (steady)", f"p99 {p99:.1f} / max {worst:.1f} ms; "
            f"longest GC pause {longest:.1f} ms", f"p99 ≤ {LOOP_LAG_P99_MS:g} ms",
            WARN if p99 > LOOP_LAG_P99_MS else OK)
        machine = self.context["machine"]
        speed, at_end = machine.get("python_loop_ms"), machine.get("python_loop_ms_at_end")
        if speed is not None:
            # The reference Python loop's time (``python_speed``), lower is faster.
            add("machine speed", f"{speed:g} ms at the start"
                + (f", {at_end:g} ms at the end" if at_end is not None else "")
                + " (lower is faster)")
        busy = client.get("machine_busy_cores_steady")
        if busy is not None:
            add("machine CPU busy (steady)",
                f"{busy:.2f} of {self.context['machine']['nproc']} cores")
        busy_in_ramp = client.get("machine_busy_cores_ramp")
        if busy_in_ramp is not None:
            nproc = self.context["machine"]["nproc"]
            add("machine CPU busy (ramp)", f"{busy_in_ramp:.2f} of {nproc} cores",
                f"< {SATURATED_SHARE * nproc:g} cores", WARN if self._saturated_in_ramp() else OK)
        others = client.get("other_processes_cores_steady")
        if others is not None:
            add("other processes' CPU (steady)", f"{others:.2f} cores",
                f"< {OTHER_LOAD_CORES:g} cores", WARN if others > OTHER_LOAD_CORES else OK)

    def table(self, value_width=64):
        """The checks as aligned text; long values wrap onto extra lines."""
        rows = [("figure", ["value"], "target", "result")]
        rows += [(c.figure, textwrap.wrap(c.value, value_width) or [""], c.target, c.result)
                 for c in self.checks]
        widths = [max(len(row[0]) for row in rows),
                  max(len(part) for row in rows for part in row[1]),
                  max(len(row[2]) for row in rows)]
        lines = []
        for n, (figure, value, target, result) in enumerate(rows):
            first = [figure.ljust(widths[0]), value[0].ljust(widths[1]),
                     target.ljust(widths[2]), result]
            lines.append("  ".join(first).rstrip())
            lines += [" " * widths[0] + "  " + part for part in value[1:]]
            if n == 0:
                lines.append("  ".join("-" * w for w in widths) + "  ------")
        return "\n".join(lines)

    def summary(self):
        failed = [c.figure for c in self.checks if c.result == FAIL]
        lines = []
        failures = self.figures["auth"]["failures"]
        if failures:
            lines.append("agents that did not authenticate: " + _codes(failures))
        if self.figures["client"]["bound"]:
            lines.append(f"WARNING: a client process used more than {CLIENT_BOUND_SHARE:.0%} of "
                         "a core: the client, not the server, may have been the bottleneck "
                         "(CLIENT-BOUND); latencies are inflated. Try --agent-processes.")
        log = self.context.get("server", {}).get("log_counts") or {}
        for line in log.get("first_errors", []):
            lines.append(f"server log: {line}")
        told = [float(k) for k in self.figures["auth"]["server_heartbeat_intervals"]
                if k != "None"]
        if any(abs(interval - self.scenario.heartbeat) > 1e-9 for interval in told):
            lines.append(f"WARNING: the server told agents to heartbeat every {told} s, the "
                         f"agents used {self.scenario.heartbeat:g} s (--heartbeat): give the "
                         "server's settings to compare against the right targets.")
        lags = [p.get("steady_loop_lag_ms") or {} for p in self.figures["client"]["processes"]]
        lag = max((entry.get("p99") or 0 for entry in lags), default=0)
        if lag > LOOP_LAG_P99_MS and not self.figures["client"]["bound"]:
            lines.append(f"WARNING: the client's event loops ran late (p99 {lag:.0f} ms) though "
                         "they had CPU to spare: the machine's cores were saturated (by the "
                         "server or by others); every latency above includes that delay.")
        if self._saturated_in_ramp():
            lines.append("WARNING: every core of the machine was busy during the ramp (server, "
                         "database and clients together): the reconnect latencies include "
                         "waiting for a core, not only the server's work.")
        others = self.figures["client"].get("other_processes_cores_steady")
        if others is not None and others > OTHER_LOAD_CORES:
            lines.append(f"WARNING: other processes used {others:.2f} cores during the steady "
                         "state: the machine was shared, the figures are pessimistic.")
        if self.figures["broadcasts"]["unexpected_examples"]:
            lines.append("unexpected transitions, e.g.: "
                         + "; ".join(self.figures["broadcasts"]["unexpected_examples"][:5]))
        if failed:
            lines.append(f"FAILED {len(failed)} target(s): {', '.join(failed)}")
        else:
            lines.append("all targets passed")
        return "\n".join(lines)

    def _saturated_in_ramp(self):
        busy = self.figures["client"].get("machine_busy_cores_ramp")
        return busy is not None and busy > SATURATED_SHARE * self.context["machine"]["nproc"]

    def document(self):
        return {"tool": "tools.bench", "format": 1, **self.context,
                "scenario": asdict(self.scenario), "figures": _clean(self.figures),
                "checks": [asdict(c) for c in self.checks], "passed": self.passed}

    def write_json(self, path):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.document(), indent=2, ensure_ascii=False) + "\n")
        return path


def _le(value, limit):
    return value is not None and value <= limit


def _codes(counts):
    """'1006 × 794, 4001 × 8' from a {code: count} mapping."""
    return ", ".join(f"{code} × {n}" for code, n in sorted(counts.items(), key=lambda i: -i[1]))


def _pct(share):
    return "—" if share is None else f"{share * 100:.0f}%"


def _clean(value):
    """JSON-safe: NaN and infinities become null, tuples lists, keys strings."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, 6)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value
