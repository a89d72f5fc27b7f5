"""Flat combining: concurrent callers share one trip to the database (a
transaction of agents' auths, a batch of disconnects, a dashboards' snapshot).

A caller that finds no batch being written writes its own request, and whatever
else arrives while it yields once to the threads ready to run. Callers arriving
meanwhile wait; when the batch is done, the first of them writes all that waited,
together. No thread of its own and no added delay for a lone caller, while a
reconnect storm costs the database a handful of statements instead of one per agent."""

import queue
import threading
import time

from flask import current_app

# Requests per transaction at most: bounds its length, and its statements'
# parameters (SQLite allows 32,766).
BATCH_LIMIT = 1000
COMBINERS_KEY = "vmsapp.combiners"


class _Request:
    __slots__ = ("args", "done", "leads", "result", "error")

    def __init__(self, args):
        self.args = args
        self.done = threading.Event()
        self.leads = False  # handed the writing of the next batch
        self.result = None
        self.error = None


class Combiner:
    """Runs ``write(batch)`` — a list of argument tuples, returning one result
    each, in order — for requests submitted from any number of threads."""

    def __init__(self, write, key=None, limit=BATCH_LIMIT):
        """``key(args)``: requests with equal keys never share a batch, so the
        later one is written after the earlier, as it would be alone."""
        self._write = write
        self._key = key
        self._limit = limit
        self._lock = threading.Lock()
        self._waiting = []
        self._writing = False

    def submit(self, *args):
        """Write ``args`` with whatever else is waiting; its result, or the
        exception that failed its batch."""
        request = _Request(args)
        with self._lock:
            self._waiting.append(request)
            leads = not self._writing
            self._writing = True
        if not leads:
            request.done.wait()
        if leads or request.leads:
            self._write_next_batch()
        if request.error is not None:
            raise request.error
        return request.result

    def _write_next_batch(self):
        # Yield once, so requests that are ready to be made join this batch:
        # under gevent, with SQLite (which never yields), nothing else would
        # run until the write is done, and every batch would hold one request;
        # under threads it lets the callers already woken reach the queue.
        time.sleep(0)
        with self._lock:
            batch, later, keys = [], [], set()
            for request in self._waiting:
                key = self._key(request.args) if self._key else None
                if len(batch) >= self._limit or (key is not None and key in keys):
                    later.append(request)
                else:
                    batch.append(request)
                    keys.add(key)
            self._waiting = later
        try:
            results = self._write([request.args for request in batch])
        except BaseException as error:  # every caller raises its batch's failure
            for request in batch:
                request.error = error
            if not isinstance(error, Exception):
                raise
        else:
            for request, result in zip(batch, results, strict=True):
                request.result = result
        finally:
            with self._lock:
                if self._waiting:
                    self._waiting[0].leads = True
                    self._waiting[0].done.set()
                else:
                    self._writing = False
            for request in batch:
                request.done.set()


def by_first_argument(args):
    """A ``Combiner`` key: requests with the same first argument (an NVR's id,
    or its lowercased hostname, which is unique whatever its case) never share
    a batch, so each batch's compare-and-sets are of distinct NVRs."""
    return args[0]


def shared_combiner(name, write, key=None):
    """The app's one ``Combiner`` called ``name``, made on first use."""
    combiners = current_app.extensions.setdefault(COMBINERS_KEY, {})
    combiner = combiners.get(name)
    if combiner is None:
        combiner = combiners.setdefault(name, Combiner(write, key=key))
    return combiner


def take_batch(source, timeout, limit):
    """Up to ``limit`` items of the queue ``source``: the first waited for up
    to ``timeout``, the rest only if already there; an empty list when none came."""
    try:
        batch = [source.get(timeout=timeout)]
    except queue.Empty:
        return []
    try:
        while len(batch) < limit:
            batch.append(source.get_nowait())
    except queue.Empty:
        pass  # all that was waiting is in the batch
    return batch
