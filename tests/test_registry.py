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
