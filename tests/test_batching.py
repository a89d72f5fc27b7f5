"""Flat combining of concurrent writes (vmsapp.batching), below the database."""

import subprocess
import sys
import threading

import pytest
from support import ROOT, wait_until

from vmsapp.batching import Combiner


def submit_in_threads(combiner, args_list):
    """Submit each args from its own thread; {args: result or exception}."""
    outcomes = {}

    def submit(args):
        try:
            outcomes[args] = combiner.submit(*args)
        except Exception as error:
            outcomes[args] = error

    threads = [threading.Thread(target=submit, args=(args,)) for args in args_list]
    for thread in threads:
        thread.start()
    return threads, outcomes


def test_a_lone_request_is_written_at_once_in_a_batch_of_its_own():
    batches = []
    combiner = Combiner(lambda batch: batches.append(batch) or [f"done {a}" for a, in batch])

    assert combiner.submit(1) == "done 1"
    assert batches == [[(1,)]]


class SlowFirstBatch:
    """A write that records its batches and holds the first one until
    ``release``, so requests submitted meanwhile queue up."""

    def __init__(self, result=lambda args: None):
        self.batches = []
        self.result = result
        self.released = threading.Event()

    def __call__(self, batch):
        self.batches.append(batch)
        if len(self.batches) == 1:
            self.released.wait(10)
        return [self.result(args) for args in batch]

    def start(self, combiner, args):
        """Submit ``args`` and wait until its batch is being written."""
        threads, outcomes = submit_in_threads(combiner, [args])
        wait_until(lambda: self.batches, message="the first batch to start")
        return threads, outcomes

    def release(self, threads):
        self.released.set()
        for thread in threads:
            thread.join(10)


def test_requests_arriving_during_a_write_are_written_together_next():
    write = SlowFirstBatch(result=lambda args: args[0] * 10)
    combiner = Combiner(write)
    first, outcomes = write.start(combiner, (1,))
    others, more = submit_in_threads(combiner, [(2,), (3,), (4,)])
    wait_until(lambda: len(combiner._waiting) == 3, message="three waiting requests")
    write.release(first + others)

    batches = write.batches
    assert batches[0] == [(1,)]
    assert sorted(batches[1]) == [(2,), (3,), (4,)] and len(batches) == 2
    assert {**outcomes, **more} == {(1,): 10, (2,): 20, (3,): 30, (4,): 40}


def test_requests_with_one_key_never_share_a_batch():
    write = SlowFirstBatch()
    combiner = Combiner(write, key=lambda args: args[0])
    threads, _ = write.start(combiner, ("a", 0))
    for n in (1, 2):
        more, _ = submit_in_threads(combiner, [("a", n)])
        threads += more
        wait_until(lambda n=n: len(combiner._waiting) == n, message="waiting requests")
    write.release(threads)

    assert write.batches == [[("a", 0)], [("a", 1)], [("a", 2)]]


def test_a_failed_batch_fails_each_of_its_callers_and_the_next_batch_still_runs():
    def write(batch):
        if (0,) in batch:
            raise RuntimeError("database went away")
        return ["ok"] * len(batch)

    combiner = Combiner(write)

    with pytest.raises(RuntimeError, match="database went away"):
        combiner.submit(0)
    assert combiner.submit(1) == "ok"


def test_a_batch_holds_at_most_its_limit():
    write = SlowFirstBatch()
    combiner = Combiner(write, limit=2)
    threads, _ = write.start(combiner, (0,))
    for n in range(1, 6):
        more, _ = submit_in_threads(combiner, [(n,)])
        threads += more
    wait_until(lambda: len(combiner._waiting) == 5, message="five waiting requests")
    write.release(threads)

    assert [len(batch) for batch in write.batches] == [1, 2, 2, 1]


# Under gevent a write to SQLite never yields: without the leader's yield, each
# greenlet would find the previous batch done and write alone.
GEVENT_SUBMITTERS = """
from gevent import monkey
monkey.patch_all()
import gevent
from vmsapp.batching import Combiner

batches = []
combiner = Combiner(lambda batch: batches.append(len(batch)) or [None] * len(batch))
gevent.joinall([gevent.spawn(combiner.submit, n) for n in range(20)])
print(batches)
"""


def test_under_gevent_requests_made_together_share_one_batch():
    result = subprocess.run([sys.executable, "-c", GEVENT_SUBMITTERS], capture_output=True,
                            text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[20]"
