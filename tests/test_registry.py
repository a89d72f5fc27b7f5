"""The connection registry: what a worker says it holds."""

from vmsapp.clock import now
from vmsapp.realtime.registry import Registry
from vmsapp.realtime.sessions import DashboardSession, NvrSession


def test_stats_follow_connections_as_they_come_and_go():
    registry = Registry()
    first = NvrSession(peer=None, nvr_id=1, hostname="nvr-b", now=now())
    newer = NvrSession(peer=None, nvr_id=1, hostname="nvr-b", now=now())
    other = NvrSession(peer=None, nvr_id=2, hostname="nvr-a", now=now())
    dashboard = DashboardSession(peer=None)

    def after(change, *args):
        change(*args)
        stats = registry.stats()
        return stats["nvr_connections"], stats["dashboard_clients"], stats["nvr_hostnames"]

    assert after(lambda: None) == (0, 0, [])
    assert after(registry.add_nvr, first) == (1, 0, ["nvr-b"])
    assert after(registry.add_dashboard, dashboard) == (1, 1, ["nvr-b"])
    assert after(registry.add_nvr, other) == (2, 1, ["nvr-a", "nvr-b"])
    assert after(registry.add_nvr, newer) == (3, 1, ["nvr-a", "nvr-b"])
    assert after(registry.remove_nvr, first) == (2, 1, ["nvr-a", "nvr-b"])
    assert after(registry.remove_nvr, other) == (1, 1, ["nvr-b"])
    assert after(registry.remove_dashboard, dashboard) == (1, 0, ["nvr-b"])
    assert after(registry.remove_nvr, newer) == (0, 0, [])


def test_last_seen_is_taken_once_per_nvr_heard_from():
    registry = Registry()
    sessions = [NvrSession(peer=None, nvr_id=i, hostname=f"nvr-{i}", now=now())
                for i in range(3)]
    for session in sessions:
        registry.add_nvr(session)
    sessions[0].touch(now())
    registry.heard_from(sessions[0])
    later = now()
    sessions[2].touch(later)
    registry.heard_from(sessions[2])

    assert registry.take_last_seen() == {0: sessions[0].last_seen, 2: later}
    assert registry.take_last_seen() == {}


class RecordingPeer:
    """A socket that records how it was closed."""

    def __init__(self):
        self.closes = []

    def close(self, code, reason=""):
        self.closes.append(code)


def claimed(registry, nvr_id, claim):
    """A session of ``nvr_id`` that took claim number ``claim``, registered if
    ``registry`` takes it: ``(session, whether it did)``."""
    session = NvrSession(peer=RecordingPeer(), nvr_id=nvr_id, hostname=f"nvr-{nvr_id}",
                         now=now(), claim=claim)
    return session, registry.add_nvr(session)


def test_only_connections_of_a_lower_claim_are_closed_as_older():
    registry = Registry()
    older, _ = claimed(registry, 1, claim=3)
    same, _ = claimed(registry, 1, claim=5)
    newer, _ = claimed(registry, 1, claim=6)
    other_nvr, _ = claimed(registry, 2, claim=1)

    registry.close_older(1, 5, 4000, "replaced")

    assert [s.peer.closes for s in (older, same, newer, other_nvr)] == [[4000], [], [], []]


def test_a_connection_registering_after_a_newer_claim_was_heard_of_is_closed_at_once():
    """The newer connection's command came first (from another worker)."""
    registry = Registry()
    registry.close_older(1, 5, 4000, "replaced")

    lower, lower_taken = claimed(registry, 1, claim=4)
    equal, equal_taken = claimed(registry, 1, claim=5)
    higher, higher_taken = claimed(registry, 1, claim=7)
    after_higher, after_higher_taken = claimed(registry, 1, claim=6)
    other_nvr, other_taken = claimed(registry, 2, claim=1)

    assert (lower_taken, lower.peer.closes) == (False, [4000])
    assert (after_higher_taken, after_higher.peer.closes) == (False, [4000])
    assert [(taken, s.peer.closes) for taken, s in (
        (equal_taken, equal), (higher_taken, higher), (other_taken, other_nvr))] == [
        (True, [])] * 3
    assert sorted(s.claim for s in registry.nvr_sessions(1)) == [5, 7]
    assert registry.stats()["nvr_connections"] == 3
