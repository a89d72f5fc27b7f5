"""The one place that says what time it is; tests may replace ``now``."""

from datetime import datetime, timezone


def now():
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def isoformat(value):
    """ISO 8601 UTC with a ``Z`` suffix (SPEC §3), or None."""
    if value is None:
        return None
    if value.tzinfo is not timezone.utc:  # what ``now`` gives needs no conversion
        value = value.astimezone(timezone.utc)
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")
