"""Values that used to escape validation untyped (OverflowError, ValueError, UnicodeEncodeError, RecursionError,
TypeError) are refused as ``ValidationError`` naming the field, before any SQL: single and bulk paths alike.

Each call runs against a server that does not exist: a ``ValidationError`` (not ``DatabaseUnavailableError``)
proves nothing was sent.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from _async import run

from luminar_store.access import LuminarDB
from luminar_store.errors import ValidationError


def _deep(levels: int) -> dict:
    root: dict = {}
    node = root
    for _ in range(levels):
        node["a"] = {}
        node = node["a"]
    return root


def event(**over) -> dict:
    data = {"event_type": "theft", "geotag": {"lat": 40.0, "lng": -74.0}, "severity": 3, "confidence_score": 0.5,
            "timestamp": datetime.now(timezone.utc) - timedelta(hours=1)}
    return data | over


def report(**over) -> dict:
    data = {"external_id": "app-1", "description": "Phone snatched", "geotag": {"lat": 40.0, "lng": -74.0},
            "timestamp": datetime.now(timezone.utc) - timedelta(hours=1)}
    return data | over


PLUS_14 = timezone(timedelta(hours=14))
SCORES = {"integrity": 0.9, "clustering": 0.9, "novelty": 0.9, "quality": 0.9}

CASES = [
    ("huge-int-number", lambda db: db.store_crime_event(event(confidence_score=10**400), 1), "confidence_score"),
    ("huge-int-coordinate", lambda db: db.store_crime_event(event(geotag={"lat": 10**400, "lng": 0}), 1),
     "geotag.lat"),
    ("huge-int-level", lambda db: db.store_crime_event(event(severity=10**400), 1), "severity"),
    ("signaling-nan", lambda db: db.store_crime_event(event(confidence_score=Decimal("sNaN")), 1),
     "confidence_score"),
    ("decimal-nan", lambda db: db.store_crime_event(event(confidence_score=Decimal("NaN")), 1), "confidence_score"),
    ("huge-score", lambda db: db.update_miner_performance(1, "hk", SCORES | {"quality": 10**400}), "scores.quality"),
    ("surrogate-text", lambda db: db.store_crime_event(event(summary="a\ud800b"), 1), "summary"),
    ("surrogate-report", lambda db: db.store_raw_report(report(description="x\udfffy")), "description"),
    ("surrogate-hotkey", lambda db: db.update_miner_performance(1, "hk\ud800", SCORES), "hotkey"),
    ("surrogate-metadata-value", lambda db: db.store_crime_event(event(metadata={"k": "a\ud800"}), 1), "metadata.k"),
    ("surrogate-metadata-key", lambda db: db.store_crime_event(event(metadata={"k\ud800": 1}), 1), "metadata"),
    ("surrogate-nested", lambda db: db.store_raw_report(report(metadata={"a": {"b": ["\ud800"]}})),
     "metadata.a.b[0]"),
    ("digits-metadata", lambda db: db.store_crime_event(event(metadata={"n": 10**5000}), 1), "metadata.n"),
    ("deep-metadata", lambda db: db.store_crime_event(event(metadata=_deep(5000)), 1), None),
    ("deep-scores", lambda db: db.store_consensus_record("00000000-0000-0000-0000-000000000001", 1,
                                                         {"accuracy": _deep(5000)}, 1), "scores.accuracy"),
    # a year-1 time at +14:00 was stored as a BC time that every later read failed on
    ("year-one-event", lambda db: db.store_crime_event(event(timestamp=datetime(1, 1, 1, tzinfo=PLUS_14)), 1),
     "timestamp"),
    ("year-one-report-text", lambda db: db.store_raw_report(report(timestamp="0001-01-01T00:00:00+14:00")),
     "timestamp"),
    ("year-one-naive", lambda db: db.store_raw_report(report(timestamp=datetime(1, 1, 1))), "timestamp"),
    ("before-1970", lambda db: db.store_crime_event(event(timestamp=datetime(1969, 12, 31, tzinfo=timezone.utc)),
                                                    1), "timestamp"),
    ("year-one-range", lambda db: db.store_crime_event(
        event(timestamp_range={"start": datetime(1, 1, 1, tzinfo=PLUS_14)}, timestamp=None), 1),
     "timestamp_range.start"),
    # an end without a start: the event's time is taken when stored, and an earlier end failed the table's CHECK
    ("time-end-without-start", lambda db: db.store_crime_event(
        event(timestamp=None, time_end=datetime(2000, 1, 1, tzinfo=timezone.utc)), 1), "time_end"),
    ("bulk-not-iterable", lambda db: db.store_crime_events(5, 1), "events"),
    ("bulk-a-mapping", lambda db: db.store_crime_events(event(), 1), "events"),
    ("bulk-reports-not-iterable", lambda db: db.store_raw_reports(None), "reports"),

]

# Bulk items are validated as they stream into the COPY (a generator is never held in memory): the batch is
# refused naming the item, and nothing of it is stored.
BULK_CASES = [
    ("bulk-surrogate", lambda db: db.store_crime_events([event(), event(title="t\ud800")], 1), "events[1].title"),
    ("bulk-year-one", lambda db: db.store_crime_events([event(), event(timestamp=datetime(1, 1, 1, tzinfo=PLUS_14))],
                                                       1), "events[1].timestamp"),
    ("bulk-huge", lambda db: db.store_raw_reports([report(), report(external_id="b", geotag={"lat": 0,
                                                                                            "lng": 10**400})]),
     "reports[1].geotag.lng"),
]


@pytest.fixture(scope="module")
def nowhere(pg_server):
    return LuminarDB(pg_server.settings("luminar_nowhere", LUMINAR_DB_PORT="1"))


@pytest.mark.parametrize("call, field", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_refused_as_a_validation_error_before_any_sql(nowhere, call, field):
    async def go():
        with pytest.raises(ValidationError) as info:
            await call(nowhere)
        return info.value

    error = run(go())
    if field is None:  # nested thousands deep: named by the path where the depth limit is met
        assert error.field.startswith("metadata.a.a") and "nested too deeply" in str(error)
    else:
        assert error.field == field, str(error)
    assert len(str(error)) < 300  # a 401-digit number is cut short, not printed


@pytest.mark.parametrize("call, field", [c[1:] for c in BULK_CASES], ids=[c[0] for c in BULK_CASES])
def test_a_bad_bulk_item_is_named_and_nothing_is_stored(db_settings, call, field):
    db = LuminarDB(db_settings)

    async def go():
        with pytest.raises(ValidationError) as info:
            await call(db)
        stats = await db.get_database_stats()
        await db.close()
        return info.value, stats

    error, stats = run(go())
    assert error.field == field, str(error)
    assert (stats.raw_reports, stats.crime_events) == (0, 0)


def test_valid_unicode_and_large_but_sane_values_still_pass():
    from luminar_store.models import CrimeEvent

    e = CrimeEvent.coerce(event(summary="Vol à l'arraché près de la gare 🚉", metadata={"ville": "Zürich",
                                                                                    "n": 2**62, "big": 10**200}))
    assert e.summary.endswith("🚉") and e.metadata["big"] == 10**200


def test_json_given_as_other_mappings_and_tuples_is_stored_as_plain_json(db_settings):
    """A nested MappingProxyType passed the checks, then failed json.dumps with a TypeError when the event was
    written; the checks now hand on plain dicts and lists."""
    from types import MappingProxyType

    db = LuminarDB(db_settings)
    metadata = {"model": MappingProxyType({"name": "v2", "weights": (1, 2)})}
    entities = [MappingProxyType({"type": "vehicle", "text": "red sedan"})]

    async def go():
        event_id = await db.store_crime_event(event(metadata=metadata, entities=entities), 1)
        stored = await db.store_crime_events([event(metadata=metadata, entities=entities)], 2)
        report_id = await db.store_raw_report(report(metadata=metadata))
        records = [await db.get_event(event_id), *(await db.get_events_by_miner(2)), await db.get_raw_report(report_id)]
        await db.close()
        return stored, records

    stored, records = run(go())
    assert stored == 1
    for record in records:
        assert record.metadata == {"model": {"name": "v2", "weights": [1, 2]}}
    assert records[0].entities == records[1].entities == [{"type": "vehicle", "text": "red sedan"}]
