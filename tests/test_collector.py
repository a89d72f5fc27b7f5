"""Full garbage collections held back during a reconnect storm, and only then."""

import gc

import pytest

from vmsapp import collector


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    """A hold on a clock of the test's own, with no watch thread: the test
    calls ``release_if_over`` itself. Python's thresholds restored after."""
    thresholds = gc.get_threshold()
    monkeypatch.setattr(collector.threading, "Thread", NoThread)
    yield Clock()
    gc.set_threshold(*thresholds)


class NoThread:
    def __init__(self, **_):
        pass

    def start(self):
        pass


def connects(hold, clock, count, seconds):
    for _ in range(count):
        hold.agent_connected()
        clock.now += seconds / count


def test_agents_connecting_at_the_storm_rate_hold_full_collections_until_quiet(clock):
    gc.set_threshold(700, 10, 100)
    hold = collector.FullCollectionHold(clock)

    connects(hold, clock, collector.STORM_RATE, 0.9)

    assert hold.holding
    assert gc.get_threshold() == (700, 10, collector._HELD)
    clock.now += collector.QUIET / 2
    assert not hold.release_if_over()
    clock.now += collector.QUIET
    assert hold.release_if_over()
    assert gc.get_threshold() == (700, 10, 100)


def test_the_usual_trickle_of_connects_holds_nothing(clock):
    gc.set_threshold(700, 10, 100)
    hold = collector.FullCollectionHold(clock)

    connects(hold, clock, collector.STORM_RATE * 3, 4.0)  # under the rate in every second

    assert not hold.holding
    assert gc.get_threshold() == (700, 10, 100)


def test_a_storm_that_goes_on_is_still_collected_after_the_longest_hold(clock):
    gc.set_threshold(700, 10, 100)
    hold = collector.FullCollectionHold(clock)

    seconds = int(collector.HOLD_AT_MOST) + 1
    for _ in range(seconds):
        connects(hold, clock, collector.STORM_RATE, 1.0)
        if hold.release_if_over():
            break

    assert not hold.holding
    assert gc.get_threshold() == (700, 10, 100)
