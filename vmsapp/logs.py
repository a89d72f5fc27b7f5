"""Logging, configured once: one line per event, to stdout."""

import logging
import os
import sys

FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"


def configure_logging(app):
    """Send the app's logs to stdout at VMS_LOG_LEVEL (INFO)."""
    level = os.environ.get("VMS_LOG_LEVEL", "INFO").upper()
    package = logging.getLogger("vmsapp")
    if not package.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter(FORMAT))
        package.addHandler(handler)
        package.propagate = False
    package.setLevel(level)
    # The scheduler logs every run of every job at INFO: noise at 1 Hz.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
