"""Full garbage collections held back during a reconnect storm, and only then."""

import gc

import pytest
from support import AnsweringPeer, wait_until

from vmsapp import collector, fleet
from vmsapp.clock import now
from vmsapp.realtime import handlers
from vmsapp.realtime.registry import current_registry


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture(autouse=True)
def thresholds():
    """Each test starts from a worker's thresholds; Python's are put back after."""
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 100)
    yield
    gc.set_threshold(*saved)


def hold_on(clock):
    """A hold on the test's clock whose watch the test runs by hand
    (``release_if_over``)."""
    watches = []
    return collector.FullCollectionHold(clock, start_watch=watches.append), watches


def connects(hold, clock, count, seconds):
    for _ in range(count):
        hold.agent_connected()
        clock.now += seconds / count


def test_agents_connecting_at_the_storm_rate_hold_full_collections_until_quiet():
    clock = Clock()
    hold, watches = hold_on(clock)

    connects(hold, clock, collector.STORM_RATE, 0.9)

    assert hold.holding and len(watches) == 1
    assert gc.get_threshold() == (700, 10, collector._HELD)
    clock.now += collector.QUIET / 2
    assert not hold.release_if_over()
    clock.now += collector.QUIET
    assert hold.release_if_over()
    assert gc.get_threshold() == (700, 10, 100)


def test_a_burst_across_a_second_boundary_is_a_storm():
    clock = Clock()
    hold, _ = hold_on(clock)

    connects(hold, clock, 1, 0.9)
    # Counted per calendar second, neither second would have made the rate.
    connects(hold, clock, collector.STORM_RATE - 2, 0.1)
    connects(hold, clock, collector.STORM_RATE - 1, 0.1)

    assert hold.holding


def test_the_usual_trickle_of_connects_holds_nothing():
    clock = Clock()
    hold, watches = hold_on(clock)

    connects(hold, clock, collector.STORM_RATE * 3, 4.0)  # under the rate in every second

    assert not hold.holding and watches == []
    assert gc.get_threshold() == (700, 10, 100)


def test_a_storm_that_goes_on_is_still_collected_after_the_longest_hold():
    clock = Clock()
    hold, _ = hold_on(clock)

    for _ in range(int(collector.HOLD_AT_MOST) + 1):
        connects(hold, clock, collector.STORM_RATE, 1.0)
        if hold.release_if_over():
            break

    assert not hold.holding
    assert gc.get_threshold() == (700, 10, 100)


def test_no_hold_without_a_watch_to_end_it():
    def no_thread(_):
        raise RuntimeError("can't start new thread")

    hold = collector.FullCollectionHold(Clock(), start_watch=no_thread)
    for _ in range(collector.STORM_RATE):
        hold.agent_connected()

    assert not hold.holding
    assert gc.get_threshold() == (700, 10, 100)


def test_the_watch_thread_ends_the_hold_and_collects(monkeypatch):
    monkeypatch.setattr(collector, "QUIET", 0.05)
    collections = []
    gc.callbacks.append(lambda phase, info: collections.append(info["generation"])
                        if phase == "stop" else None)
    try:
        hold = collector.FullCollectionHold()
        for _ in range(collector.STORM_RATE):
            hold.agent_connected()
        assert hold.holding

        wait_until(lambda: not hold.holding and 2 in collections, message="the hold to end")
    finally:
        gc.callbacks.pop()
    assert gc.get_threshold() == (700, 10, 100)


def test_every_agent_that_authenticates_counts_toward_a_storm(app, monkeypatch):
    counted = []
    monkeypatch.setattr(collector.hold, "agent_connected", lambda: counted.append(1))
    with app.app_context():
        nvr = fleet.create_nvr({"name": "Storm", "hostname": "storm-nvr"}, now())
        token = nvr.token
        peer = AnsweringPeer()

        session = handlers.handle_auth(peer, {"hostname": "storm-nvr", "token": token})
        current_registry().remove_nvr(session)

    assert '"auth_ok"' in peer.sent[0]
    assert counted == [1]
