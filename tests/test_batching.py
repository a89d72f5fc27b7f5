"""Flat combining of concurrent writes (vmsapp.batching), below the database."""

import threading

import pytest
from support import wait_until

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


def test_requests_arriving_during_a_write_are_written_together_next():
    release = threading.Event()
    batches = []

    def write(batch):
        batches.append(batch)
        if len(batches) == 1:
            release.wait(10)  # the first batch is slow: the others queue up
        return [a * 10 for a, in batch]

    combiner = Combiner(write)
    first, outcomes = submit_in_threads(combiner, [(1,)])
    wait_until(lambda: batches, message="the first batch to start")
    others, more = submit_in_threads(combiner, [(2,), (3,), (4,)])
    wait_until(lambda: len(combiner._waiting) == 3, message="three waiting requests")
    release.set()
    for thread in first + others:
        thread.join(10)

    assert batches[0] == [(1,)]
    assert sorted(batches[1]) == [(2,), (3,), (4,)] and len(batches) == 2
    assert {**outcomes, **more} == {(1,): 10, (2,): 20, (3,): 30, (4,): 40}


def test_requests_with_one_key_never_share_a_batch():
    release = threading.Event()
    batches = []

    def write(batch):
        batches.append(batch)
        if len(batches) == 1:
            release.wait(10)
        return [None] * len(batch)

    combiner = Combiner(write, key=lambda args: args[0])
    first, _ = submit_in_threads(combiner, [("a", 0)])
    wait_until(lambda: batches, message="the first batch to start")
    for n in (1, 2):
        threads, _ = submit_in_threads(combiner, [("a", n)])
        first += threads
        wait_until(lambda n=n: len(combiner._waiting) == n, message="waiting requests")
    release.set()
    for thread in first:
        thread.join(10)

    assert batches == [[("a", 0)], [("a", 1)], [("a", 2)]]


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
    release = threading.Event()
    batches = []

    def write(batch):
        batches.append(batch)
        if len(batches) == 1:
            release.wait(10)
        return [None] * len(batch)

    combiner = Combiner(write, limit=2)
    threads, _ = submit_in_threads(combiner, [(0,)])
    wait_until(lambda: batches, message="the first batch to start")
    for n in range(1, 6):
        more, _ = submit_in_threads(combiner, [(n,)])
        threads += more
    wait_until(lambda: len(combiner._waiting) == 5, message="five waiting requests")
    release.set()
    for thread in threads:
        thread.join(10)

    assert [len(batch) for batch in batches] == [1, 2, 2, 1]
