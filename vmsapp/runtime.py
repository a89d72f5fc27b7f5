"""What runs beside the requests in a web process: the scheduled jobs, and the
graceful stop. Started by the web entry point (``gunicorn.conf.py``), never on
import or by CLI commands."""

import logging
from datetime import timezone

from apscheduler.schedulers.background import BackgroundScheduler

from . import jobs
from .realtime import protocol
from .realtime.bus import EXTENSION_KEY as BUS_KEY
from .realtime.registry import EXTENSION_KEY as REGISTRY_KEY

log = logging.getLogger(__name__)

SCHEDULER_KEY = "vmsapp.scheduler"


def start(app, url=None):
    """Start the sweep and ``last_seen`` jobs and log the start-up banner."""
    config = app.config
    scheduler = BackgroundScheduler(timezone=timezone.utc, job_defaults={
        "coalesce": True, "max_instances": 1, "misfire_grace_time": None})
    scheduler.add_job(jobs.sweep, "interval", seconds=config["VMS_SWEEP_INTERVAL"],
                      args=[app], id="sweep")
    scheduler.add_job(jobs.flush_last_seen, "interval", seconds=jobs.flush_period(config),
                      args=[app], kwargs={"join_running": True}, id="flush_last_seen")
    scheduler.start()
    app.extensions[SCHEDULER_KEY] = scheduler
    app.extensions[BUS_KEY].start()
    if url:
        log.info("vmsapp serving %s — WebSocket %s/ws — heartbeat %gs, stale after %gs, "
                 "sweep every %gs", url, url.replace("http", "ws", 1),
                 config["VMS_HEARTBEAT_INTERVAL"], config["VMS_STALE_AFTER"],
                 config["VMS_SWEEP_INTERVAL"])
    if config["VMS_AUTH_MODE"] == "open":
        log.warning("auth mode is open: NVRs authenticate by hostname alone and the REST API "
                    "and dashboards need no key (set VMS_AUTH_MODE=token)")


def stop(app):
    """Graceful stop: close every socket with 1001 without marking anyone
    offline (agents reconnect to the next process), write ``last_seen`` one
    last time, stop the jobs. Safe to call twice."""
    registry = app.extensions[REGISTRY_KEY]
    if not registry.begin_stop():
        return
    log.info("stopping: closing %d NVR and %d dashboard connection(s) with 1001",
             len(registry.nvr_sessions()), len(registry.dashboards()))
    jobs.flush_last_seen(app)
    registry.close_all(protocol.CLOSE_GOING_AWAY, "server going away")
    scheduler = app.extensions.pop(SCHEDULER_KEY, None)
    if scheduler is not None:
        # Jobs first: a job falling due during shutdown would be handed to an
        # executor already shut down (APScheduler logs a traceback for it).
        scheduler.remove_all_jobs()
        scheduler.shutdown(wait=False)
    app.extensions[BUS_KEY].stop()
