"""Issue §4: bad input gets a ValidationError naming the field and stores nothing.

Each case runs twice through the facade: against a seeded database, where a fingerprint of every table written by
the facade must not change; and against a server that does not exist, where the ValidationError (not a
DatabaseUnavailableError) proves the refusal happened before any SQL.
"""

from __future__ import annotations

import math
import socket
import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from _async import clock, run

from luminar_store.access import LuminarDB
from luminar_store.errors import ValidationError

NOW: datetime = None  # type: ignore[assignment]  # when the running test started: set by _clock, never at import
_clock = clock(globals())
EVENT_ID = uuid.UUID("11111111-2222-3333-4444-555555555555")
REPORT_ID = uuid.UUID("66666666-7777-8888-9999-000000000000")
TABLES = ("raw_incident_reports", "crime_events", "miner_performance", "validator_performance",
          "consensus_records", "audit_log")
SCORES = {"integrity": 0.95, "clustering": 0.88, "novelty": 0.75, "quality": 0.92}



def report(**over) -> dict:
    data = {"external_id": "app-9", "description": "Phone snatched", "geotag": {"lat": 40.0, "lng": -74.0},
            "timestamp": NOW}
    data.update(over)
    return data


def event(**over) -> dict:
    data = {"event_type": "theft", "geotag": {"lat": 40.0, "lng": -74.0}, "timestamp": NOW, "severity": 3,
            "confidence_score": 0.5}
    data.update(over)
    return data


def without(data: dict, key: str) -> dict:
    return {k: v for k, v in data.items() if k != key}


# (case id, the call, the field the error must name)
CASES = [
    # locations: PostGIS would wrap 95 to 85 and store NaN
    ("report-lat-95", lambda db: db.store_raw_report(report(geotag={"lat": 95, "lng": 0})), "geotag.lat"),
    ("report-lat--91", lambda db: db.store_raw_report(report(geotag={"lat": -91, "lng": 0})), "geotag.lat"),
    ("report-lng-181", lambda db: db.store_raw_report(report(geotag={"lat": 0, "lng": 181})), "geotag.lng"),
    ("event-lng--180.5", lambda db: db.store_crime_event(event(geotag={"lat": 0, "lng": -180.5}), 1), "geotag.lng"),
    ("event-lat-nan", lambda db: db.store_crime_event(event(geotag={"lat": math.nan, "lng": 0}), 1), "geotag.lat"),
    ("event-lng-inf", lambda db: db.store_crime_event(event(geotag={"lat": 0, "lng": math.inf}), 1), "geotag.lng"),
    ("event-geotag-text", lambda db: db.store_crime_event(event(geotag="40.0,-74.0"), 1), "geotag"),
    ("radius-lat-91", lambda db: db.get_events_within_radius(91, 0, 1000), "latitude"),
    ("radius-nan", lambda db: db.get_events_within_radius(0, 0, math.nan), "radius_m"),
    # scores and confidence in [0, 1], severity 1..5
    ("confidence-1.5", lambda db: db.store_crime_event(event(confidence_score=1.5), 1), "confidence_score"),
    ("confidence-neg", lambda db: db.store_crime_event(event(confidence_score=-0.01), 1), "confidence_score"),
    ("confidence-nan", lambda db: db.store_crime_event(event(confidence_score=math.nan), 1), "confidence_score"),
    ("risk-score-2", lambda db: db.store_crime_event(event(risk_score=2), 1), "risk_score"),
    ("severity-0", lambda db: db.store_crime_event(event(severity=0), 1), "severity"),
    ("severity-6", lambda db: db.store_crime_event(event(severity=6), 1), "severity"),
    ("severity-float", lambda db: db.store_crime_event(event(severity=3.0), 1), "severity"),
    ("severity-text", lambda db: db.store_crime_event(event(severity="3"), 1), "severity"),
    ("severity-word", lambda db: db.store_crime_event(event(severity="critical"), 1), "severity"),
    ("severity-level-word", lambda db: db.store_crime_event(without(event(severity_level="extreme"), "severity"), 1),
     "severity"),
    ("location-coordinates-lat", lambda db: db.store_crime_event(
        without(event(location={"coordinates": {"lat": 90.5, "lng": 0}}), "geotag"), 1), "location.coordinates.lat"),
    ("timestamp-range-start", lambda db: db.store_crime_event(
        without(event(timestamp_range={"start": NOW + timedelta(hours=1)}), "timestamp"), 1), "timestamp_range.start"),
    ("miner-score-1.5", lambda db: db.update_miner_performance(1, "hk", {**SCORES, "integrity": 1.5}),
     "scores.integrity"),
    ("miner-score-nan", lambda db: db.update_miner_performance(1, "hk", {**SCORES, "novelty": math.nan}),
     "scores.novelty"),
    ("consensus-score-2", lambda db: db.store_consensus_record(EVENT_ID, 1, {"accuracy": 2.0}, 1),
     "scores.accuracy"),
    ("verification-score", lambda db: db.update_event_verification(EVENT_ID, 1, "verified", 1.2), "score"),
    # text: empty, oversized, NUL bytes
    ("description-empty", lambda db: db.store_raw_report(report(description="")), "description"),
    ("description-blank", lambda db: db.store_raw_report(report(description="   ")), "description"),
    ("description-10001", lambda db: db.store_raw_report(report(description="x" * 10_001)), "description"),
    ("description-nul", lambda db: db.store_raw_report(report(description="a\x00b")), "description"),
    ("external-id-201", lambda db: db.store_raw_report(report(external_id="e" * 201)), "external_id"),
    ("title-501", lambda db: db.store_crime_event(event(title="t" * 501), 1), "title"),
    ("summary-nul", lambda db: db.store_crime_event(event(summary="\x00"), 1), "summary"),
    ("metadata-nul", lambda db: db.store_crime_event(event(metadata={"note": "a\x00"}), 1), "metadata.note"),
    ("metadata-nan", lambda db: db.store_crime_event(event(metadata={"score": math.nan}), 1), "metadata.score"),
    ("metadata-nested-nul", lambda db: db.store_crime_event(event(metadata={"a": {"b": "\x00"}}), 1),
     "metadata.a.b"),
    ("metadata-not-json", lambda db: db.store_crime_event(event(metadata={"when": NOW}), 1), "metadata.when"),
    ("metadata-list", lambda db: db.store_raw_report(report(metadata=["a"])), "metadata"),
    ("event-type-empty", lambda db: db.store_crime_event(event(event_type=""), 1), "event_type"),
    ("event-type-symbols", lambda db: db.store_crime_event(event(event_type="robbery!!"), 1), "event_type"),
    ("hotkey-empty", lambda db: db.update_miner_performance(1, "", SCORES), "hotkey"),
    ("hotkey-nul", lambda db: db.update_miner_performance(1, "hk\x00", SCORES), "hotkey"),
    ("error-message-empty", lambda db: db.mark_report_failed(REPORT_ID, ""), "error_message"),
    ("media-hash-count", lambda db: db.store_raw_report(report(media_urls=["https://m/1.jpg", "https://m/2.jpg"],
                                                               media_hashes=["ab" * 32])), "media_hashes"),
    # malformed UUIDs
    ("related-report-uuid", lambda db: db.store_crime_event(event(related_reports=[42]), 1),
     "related_reports[0]"),
    ("related-reports-text", lambda db: db.store_crime_event(event(related_reports="abc"), 1), "related_reports"),
    ("cluster-id", lambda db: db.store_crime_event(event(cluster_id="cluster-1"), 1), "cluster_id"),
    ("consensus-event-id", lambda db: db.store_consensus_record("evt-1", 1, {"a": 0.5}, 1), "event_id"),
    ("verification-event-id", lambda db: db.update_event_verification("42", 1, "verified"), "event_id"),
    ("get-report-id", lambda db: db.get_raw_report("zzz"), "report_id"),
    # datetimes: far future (naive ones are read as local time: tests/test_node_shapes.py), not a time
    ("event-future", lambda db: db.store_crime_event(event(timestamp=NOW + timedelta(minutes=10)), 1),
     "timestamp"),
    ("report-not-a-time", lambda db: db.store_raw_report(report(timestamp="yesterday")), "timestamp"),
    ("report-naive-future", lambda db: db.store_raw_report(report(timestamp=datetime.now() + timedelta(hours=1))),
     "timestamp"),
    # unknown status words
    ("verification-status", lambda db: db.update_event_verification(EVENT_ID, 1, "approved"), "verification_status"),
    ("event-verification-status", lambda db: db.store_crime_event(event(verification_status="ok"), 1),
     "verification_status"),
    # missing required fields, unknown fields
    ("report-no-external-id", lambda db: db.store_raw_report(without(report(), "external_id")), "external_id"),
    ("report-two-source-ids", lambda db: db.store_raw_report({**report(), "report_id": "LMR_20250101_00000001"}),
     "report_id"),
    ("report-no-geotag", lambda db: db.store_raw_report(without(report(), "geotag")), "geotag"),
    ("report-no-description", lambda db: db.store_raw_report(without(report(), "description")), "description"),
    ("geotag-no-lng", lambda db: db.store_raw_report(report(geotag={"lat": 1})), "geotag.lng"),
    ("event-no-confidence", lambda db: db.store_crime_event(without(event(), "confidence_score"), 1),
     "confidence_score"),
    ("event-no-type", lambda db: db.store_crime_event(without(event(), "event_type"), 1), "event_type"),
    ("event-unknown-field", lambda db: db.store_crime_event(event(colour="red"), 1), "colour"),
    ("event-not-a-mapping", lambda db: db.store_crime_event(["theft", 40, -74], 1), "crime_event"),
    ("miner-score-missing", lambda db: db.update_miner_performance(1, "hk", {"integrity": 0.9}),
     "scores.clustering"),
    # hours, days, limit and uids: integers in range, nothing else
    ("hours-injection", lambda db: db.get_recent_events(hours="24; DROP TABLE crime_events"), "hours"),
    ("hours-float", lambda db: db.get_recent_events(hours=1.5), "hours"),
    ("hours-bool", lambda db: db.get_recent_events(hours=True), "hours"),
    ("hours-negative", lambda db: db.get_recent_events(hours=-24), "hours"),
    ("hours-zero", lambda db: db.get_recent_events(hours=0), "hours"),
    ("hours-none", lambda db: db.get_recent_events(hours=None), "hours"),
    ("limit-text", lambda db: db.get_recent_events(hours=24, limit="100"), "limit"),
    ("limit-huge", lambda db: db.get_recent_events(hours=24, limit=10**9), "limit"),
    ("days-text", lambda db: db.get_crime_hotspots(days="7"), "days"),
    ("days-negative", lambda db: db.get_crime_hotspots(days=-7), "days"),
    ("days-float", lambda db: db.get_crime_hotspots(days=7.0), "days"),
    ("radius-days-and-hours", lambda db: db.get_events_within_radius(0, 0, 10, hours=1, days=1), "hours"),
    ("miner-uid-text", lambda db: db.get_miner_stats(miner_uid="123"), "miner_uid"),
    ("miner-uid-negative", lambda db: db.get_miner_stats(miner_uid=-1), "miner_uid"),
    ("miner-uid-bool", lambda db: db.store_crime_event(event(), miner_uid=True), "miner_uid"),
    ("miner-uid-too-big", lambda db: db.update_miner_performance(2**31, "hk", SCORES), "miner_uid"),
    ("validator-uid-float", lambda db: db.store_consensus_record(EVENT_ID, 1.0, {"a": 0.5}, 1), "validator_uid"),
    ("round-negative", lambda db: db.store_consensus_record(EVENT_ID, 1, {"a": 0.5}, -1), "round_number"),
    ("claim-limit-zero", lambda db: db.claim_reports(miner_uid=1, limit=0), "limit"),
]


def fingerprint(conn) -> dict[str, tuple[int, str]]:
    out = {}
    for table in TABLES:
        out[table] = conn.execute(
            f"SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM {table} AS t"
        ).fetchone()
    return out


@pytest.fixture(scope="module")
def seeded_settings(pg_server):
    """One database for the module's refusals: none of them may change it, and each test checks that it did not."""
    name = f"r_{uuid.uuid4().hex[:12]}"
    with pg_server.janitor(name, template=pg_server.template):
        yield pg_server.settings(name)


@pytest.fixture(scope="module")
def conn(seeded_settings):
    with psycopg.connect(seeded_settings.conninfo(), autocommit=True) as connection:
        yield connection


@pytest.fixture(scope="module")
def seeded(seeded_settings, conn):
    """A database holding one report, one event (EVENT_ID) and one miner, and its fingerprint."""
    global NOW
    NOW = datetime.now(timezone.utc)  # set up before the first test's clock: take the time now
    db = LuminarDB(seeded_settings)

    async def seed():
        rid = await db.store_raw_report(report(external_id="seed"))
        await db.store_crime_event(event(event_id=EVENT_ID, related_reports=[rid]), miner_uid=1)
        await db.update_miner_performance(1, "hk", SCORES)
        await db.close()

    run(seed())
    return db, fingerprint(conn)


@pytest.mark.parametrize("call, field", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_refused_with_the_field_named_and_nothing_stored(seeded, conn, call, field):
    db, before = seeded

    async def go():
        with pytest.raises(ValidationError) as info:
            await call(db)
        await db.close()
        return info.value

    error = run(go())
    assert error.field == field, str(error)
    assert isinstance(error, ValueError) and str(error).startswith(f"{field}: ")
    assert fingerprint(conn) == before


@pytest.fixture(scope="module")
def nowhere(pg_server):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return LuminarDB(pg_server.settings("luminar_nowhere", LUMINAR_DB_PORT=str(port)))


@pytest.mark.parametrize("call, field", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_refused_before_any_sql(nowhere, call, field):
    async def go():
        with pytest.raises(ValidationError) as info:  # not DatabaseUnavailableError: no connection was tried
            await call(nowhere)
        return info.value

    assert run(go()).field == field


def test_a_bad_item_in_a_bulk_store_names_its_index_and_stores_nothing(seeded, conn):
    db, before = seeded

    async def go():
        with pytest.raises(ValidationError) as events_error:
            await db.store_crime_events([event(), event(severity=9)], miner_uid=1)
        with pytest.raises(ValidationError) as reports_error:
            await db.store_raw_reports([report(external_id="n1"), report(external_id="n2", timestamp="soon")])
        await db.close()
        return events_error.value, reports_error.value

    events_error, reports_error = run(go())
    assert events_error.field == "events[1].severity" and reports_error.field == "reports[1].timestamp"
    assert fingerprint(conn) == before
