"""The one place that says what time it is; tests may replace ``now``."""

from datetime import datetime, timezone


def now():
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def isoformat(value):
    """ISO 8601 UTC with a ``Z`` suffix (SPEC §3), or None."""
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
