"""The one clock the app reads: requests, column defaults, the worker and the CLI ask `now()`.

Tests pin it (`pinned_clock` in tests/conftest.py) so the data they build and the app agree on the time,
whenever the run happens; nothing else calls `pin`.
"""

from __future__ import annotations

from datetime import UTC, datetime

_pinned: datetime | None = None


def now() -> datetime:
    """The current time, timezone-aware UTC (the pinned time while a test pins it)."""
    return _pinned or datetime.now(UTC)


def pin(at: datetime | None) -> None:
    """Make `now()` return `at` from here on; None lets the real time through again."""
    global _pinned
    _pinned = at
