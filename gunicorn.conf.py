"""gunicorn settings for vmsapp (``Procfile``'s web process and ``make run``).

gthread workers (the default): each WebSocket holds one pool thread for its
whole life plus simple-websocket's reader thread, so ``threads``
(``VMS_THREADS``) is the number of connections — NVRs, dashboards and REST
requests together — one worker serves. gevent workers
(``VMS_WORKER_CLASS=gevent``), for larger fleets: every connection is a
greenlet, so one worker holds thousands of WebSockets in one OS thread, up to
``worker_connections`` (``VMS_WORKER_CONNECTIONS``). BENCHMARKS.md has what
a worker of each class holds."""

import logging
import os
import resource
import signal
import sys
import threading

bind = f"0.0.0.0:{os.environ.get('PORT', '3000')}"
WORKER_CLASSES = ("gthread", "gevent")
worker_class = os.environ.get("VMS_WORKER_CLASS", "gthread")
if worker_class not in WORKER_CLASSES:
    raise SystemExit(f"VMS_WORKER_CLASS={worker_class!r}: use one of {', '.join(WORKER_CLASSES)}")
if worker_class == "gthread":
    # Threads start as connections need them: a large pool costs nothing idle.
    # 3,100: the 3,000 NVRs one worker holds within 350 MB (BENCHMARKS.md),
    # with room for dashboards and the API; past the pool, further sockets
    # wait for a thread.
    threads = int(os.environ.get("VMS_THREADS", "3100"))
    # gunicorn's default (1000) would cap a worker below its threads; the
    # margin is for kept-alive REST calls.
    worker_connections = threads + 64
else:
    # Bounded by file descriptors (`ulimit -n`), not threads.
    worker_connections = int(os.environ.get("VMS_WORKER_CONNECTIONS", "10000"))


# Descriptors a worker needs besides its connections: the listening socket,
# the database pool, Redis, the log, gevent's own.
OTHER_OPEN_FILES = 256
# Descriptors per connection: its socket and, under gthread, the selector of
# simple-websocket's reader thread.
FILES_PER_CONNECTION = 2 if worker_class == "gthread" else 1
# How long a thread may run before another waiting for the GIL asks for it
# (Python's default: 5 ms). Under gthread a busy worker has thousands of
# threads waiting for it, each waking at every interval to ask: at the default
# a worker with 3,000 sockets, once held up (a full garbage collection after a
# reconnect), spent both cores on those wake-ups and answered nothing again.
GTHREAD_SWITCH_INTERVAL = 0.05
# How an operator sets the connections a worker holds.
CONNECTIONS_SETTING = "VMS_THREADS" if worker_class == "gthread" else "VMS_WORKER_CONNECTIONS"
# macOS refuses a soft limit above its per-process cap (kern.maxfilesperproc,
# 10,240 by default) even under an unlimited hard limit.
MACOS_OPEN_FILES = 10240


def _raise_open_files_limit(needed):
    """Raise this process's soft limit on open files to ``needed``, or as
    near as the hard limit allows; how many of ``needed`` it now allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return needed
    wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    for limit in sorted({wanted, min(wanted, MACOS_OPEN_FILES)}, reverse=True):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
            return limit
        except (ValueError, OSError):
            continue
    return soft


# Each worker keeps its own connection registry: without a shared bus (Redis)
# a second worker would split the fleet silently, so one is all we run.
requested_workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
workers = requested_workers if os.environ.get("REDIS_URL") else 1
# One listening socket per worker (SO_REUSEPORT): the kernel spreads new
# connections across workers. On one shared socket, the worker that went idle
# last wins nearly every accept, and one worker ends up holding the fleet.
reuse_port = workers > 1
# Dynos get 30 s between SIGTERM and SIGKILL; sockets are closed with 1001 at
# once, so this only bounds REST requests in flight.
graceful_timeout = 20
# The arbiter kills a worker whose main loop has not checked in for this long.
# With a thousand sockets' threads contending for the GIL a busy worker's loop
# can be late by many seconds; killing it would drop every socket it holds.
timeout = 120
keepalive = 5
# Never --max-requests: a restarted worker drops every socket it holds.
max_requests = 0
accesslog = os.environ.get("VMS_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("VMS_LOG_LEVEL", "info").lower()
# One path per user would make several instances (and the test suite) collide.
control_socket_disable = True


def on_starting(server):
    """Before the workers fork, so they inherit it: the soft limit on open
    files raised to what their connections need. A shell's (1,024 on most
    Linux, 256 on macOS) would otherwise stop a worker accepting long before
    ``worker_connections``, with an error at every accept. Where the hard
    limit is lower, a worker holds fewer connections, and the log says so."""
    asked = server.cfg.worker_connections
    needed = asked * FILES_PER_CONNECTION + OTHER_OPEN_FILES
    open_files = _raise_open_files_limit(needed)
    if open_files >= needed:
        return
    held = max(open_files - OTHER_OPEN_FILES, open_files // 2) // FILES_PER_CONNECTION
    server.cfg.set("worker_connections", held)
    server.log.warning(
        "open files limit (ulimit -n) is %d: a worker holds at most %d connections, not the "
        "%d asked (%s); more wait to be accepted. Raise the hard limit (ulimit -Hn, "
        "systemd's LimitNOFILE) to hold more.", open_files, held, asked, CONNECTIONS_SETTING)


def when_ready(server):
    """Once listening: say why fewer workers run than asked, if they do."""
    if workers != requested_workers:
        server.log.warning(
            "WEB_CONCURRENCY=%s but REDIS_URL is not set: running 1 worker, because workers "
            "without a shared bus would each see only part of the fleet. Set REDIS_URL to "
            "run more.", requested_workers)


def post_worker_init(worker):
    """Start the app's background jobs in this worker, make SIGTERM close
    sockets with 1001 before gunicorn's own graceful stop, and under gthread
    lengthen the GIL's switch interval (``GTHREAD_SWITCH_INTERVAL``)."""
    from vmsapp import collector, runtime

    if worker_class == "gthread":
        sys.setswitchinterval(GTHREAD_SWITCH_INTERVAL)
    app = worker.wsgi
    host, _, port = bind.rpartition(":")
    runtime.start(app, url=f"http://{'localhost' if host == '0.0.0.0' else host}:{port}")
    gunicorn_handler = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame):
        # Off the signal handler: closing sockets takes locks and does I/O.
        if worker_class == "gevent":
            # A signal handler runs inside the event loop: it may not wait, not
            # even for a (patched) thread to start.
            import gevent

            gevent.spawn(runtime.stop, app)
        else:
            threading.Thread(target=runtime.stop, args=(app,), name="vmsapp-stop").start()
        gunicorn_handler(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
    collector.configure_worker()


def worker_int(worker):
    """SIGINT/SIGQUIT (Ctrl-C under ``make run``): the same clean close."""
    from vmsapp import runtime

    runtime.stop(worker.wsgi)


def worker_exit(server, worker):
    from vmsapp import runtime

    if getattr(worker, "wsgi", None) is not None:
        runtime.stop(worker.wsgi)
    logging.shutdown()
