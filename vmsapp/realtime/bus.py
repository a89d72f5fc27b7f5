"""Broadcasts and commands between the code that changes things and the
connections that must hear of it.

``LocalBus`` serves one process; ``redis_bus.RedisBus`` implements the same
methods across workers and instances."""

import os

from flask import current_app

from ..clock import isoformat, now
from . import protocol

EXTENSION_KEY = "vmsapp.bus"


class LocalBus:
    """Delivers straight to this process's registry."""

    def __init__(self, registry):
        self.registry = registry

    def publish(self, message):
        """Send ``message`` to every dashboard, encoded once for all of them."""
        self.registry.deliver(protocol.encode(message))

    def close_nvr(self, nvr_id, code, reason):
        """Close every connection of ``nvr_id``."""
        self.registry.close_nvr(nvr_id, code, reason)

    def close_older(self, nvr_id, claim, code, reason):
        """Close the connections of ``nvr_id`` whose claim number is lower than
        ``claim`` (``Registry.close_older``)."""
        self.registry.close_older(nvr_id, claim, code, reason)

    def stats(self):
        """Connection counts across every process the bus reaches (this one)."""
        counts = self.registry.stats()
        return {**counts, "workers": [{"worker": "local", "pid": os.getpid(),
                                       "reported_at": isoformat(now()), **counts}]}

    def start(self):
        """Nothing runs beside a local bus."""

    def stop(self):
        """Nothing runs beside a local bus."""


def current_bus():
    """The bus of the current app."""
    return current_app.extensions[EXTENSION_KEY]
