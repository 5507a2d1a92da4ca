"""What the nodes send, for the tests that run the facade as a node's login (roles, audit): a report of an app and an
event of a miner, at a fixed past time (no dependence on the clock)."""

from __future__ import annotations

from datetime import datetime, timezone

__all__ = ["AT", "report", "event", "allowed_statements"]

AT = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)


def report(n: int) -> dict:
    """The app's report number ``n``."""
    return {"report_id": f"app-{n}", "text_description": f"Shop window broken ({n})", "user_id": f"u-{n}",
            "geotag": {"lat": 48.85, "lng": 2.35}, "timestamp": AT}


def event(**over) -> dict:
    """A miner's event, with ``over`` changing or adding fields."""
    data = {"event_type": "vandalism", "geotag": {"lat": 48.85, "lng": 2.35}, "timestamp": AT, "severity": 2,
            "confidence_score": 0.8, "title": "Window broken"}
    data.update(over)
    return data


def allowed_statements(conn, statements) -> list[str]:
    """The ``statements`` that ``conn`` (a node's login, autocommit) was allowed to run; each refused one must be
    refused for want of a privilege."""
    import psycopg

    allowed = []
    for statement in statements:
        try:
            conn.execute(statement)
            allowed.append(statement)
        except psycopg.errors.InsufficientPrivilege:
            pass
    return allowed
