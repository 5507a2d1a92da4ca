"""The network's nodes drive the store with their own shapes, with no hand mapping.

The shapes below are this suite's own copies of what the network's node code sends (the reference is read, never
imported): a report as the validators' forward step builds it (``report_id="LMR_..."``, a naive
``datetime.now() - ...``, media with or without hashes), the text flow's analysed-event dicts exactly as a miner
returns them (severity words, free-text location and time, no coordinates), the report flow's events as the reward
step reads them (``source_reports`` by the reports' own ids, ``location["coordinates"]``, ``timestamp_range``,
``summary_tag``, ``clustered_summary``), and the reference access layer's event shape (``severity_level``,
``cluster_id``, ``geotag``).
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from _async import clock, run

from luminar_store import validation
from luminar_store.access import LuminarDB
from luminar_store.errors import NotFoundError, ValidationError

NOW: datetime = None  # type: ignore[assignment]  # when the running test started: set by _clock, never at import
_clock = clock(globals())
MINER = 17
VALIDATOR = 4
SCORES = {"integrity": 0.95, "clustering": 0.88, "novelty": 0.75, "quality": 0.92}


# -- the network's shapes (own copies) --------------------------------------------------------------------------

@dataclass
class ProtocolReport:
    """The protocol's RawIncidentReport: a plain dataclass with a naive timestamp."""

    report_id: str
    text_description: str
    geotag: dict[str, float]
    timestamp: datetime
    media_urls: list[str]
    media_hashes: list[str]
    user_id: str
    metadata: dict[str, Any]


@dataclass
class ProtocolCrimeEvent:
    """The protocol's CrimeEvent of the text flow."""

    event_type: str
    severity: str
    location: str
    time_info: str
    entities: list[str]
    summary: str
    confidence: float


@dataclass
class ReportFlowEvent:
    """An event of the report flow, read by attribute as the validators' reward step reads it."""

    event_id: str
    event_type: str
    source_reports: list[str]
    location: dict[str, Any]
    timestamp_range: dict[str, datetime]
    summary_tag: str
    clustered_summary: str
    confidence_score: float
    severity: str = "medium"
    metadata: dict[str, Any] = field(default_factory=dict)


def forward_report(rng: random.Random, *, lat: float = 40.7128, lng: float = -74.0060, hours_ago: int = 3,
                   media: int = 0, hashes: bool = True) -> ProtocolReport:
    """A report built the way the validators' forward step builds one."""
    timestamp = datetime.now() - timedelta(hours=hours_ago, minutes=rng.randint(0, 59))  # naive, local time
    urls = [f"https://storage.luminar.network/evidence/{uuid.uuid4().hex[:12]}.jpg" for _ in range(media)]
    return ProtocolReport(
        report_id=f"LMR_{timestamp.strftime('%Y%m%d')}_{uuid.uuid4().hex[:8].upper()}",
        text_description="Vehicle break-in reported in the parking lot; two suspects fled eastbound",
        geotag={"lat": lat, "lng": lng},
        timestamp=timestamp,
        media_urls=urls,
        media_hashes=[f"sha256:{uuid.uuid4().hex}" for _ in urls] if hashes else [],
        user_id=f"user_{rng.randint(10000, 99999)}",
        metadata={"incident_type": "theft", "city": "New York", "state": "NY", "severity": rng.randint(1, 5),
                  "verified_user": rng.random() < 0.7, "report_source": "mobile_app"},
    )


def text_flow_events() -> list[dict[str, Any]]:
    """What a miner returns in ``analyzed_events``: its model's answer and its rule-based fallback."""
    return [
        {"event_type": "theft", "severity": "medium", "location": "1245 Main Street, Downtown District",
         "time_info": "September 6, 2025 at approximately 7:00 PM",
         "entities": ["red sedan", "suspect in black hoodie", "suspect in blue baseball cap", "security personnel"],
         "summary": "Vehicle break-in at 1245 Main Street parking lot with two suspects fleeing eastbound",
         "confidence": 0.85},
        {"event_type": "other", "severity": "low", "location": "location not specified",
         "time_info": "time not specified", "entities": [], "summary": "General incident report",
         "confidence": 0.3},
    ]


def reference_event(related: list[uuid.UUID]) -> dict[str, Any]:
    """The reference access layer's event shape."""
    return {"cluster_id": None, "event_type": "assault", "summary": "Assault near the station",
            "confidence_score": 0.8, "geotag": {"lat": 51.5074, "lng": -0.1278}, "timestamp": NOW,
            "severity_level": 4, "related_reports": [str(r) for r in related], "metadata": {"model": "v2"}}


@pytest.fixture
def db(db_settings):
    return LuminarDB(db_settings)


@pytest.fixture
def naive_rule():
    """Restores the process's rule for naive datetimes after a test that changes it."""
    before = validation.naive_timestamps()
    yield validation.set_naive_timestamps
    validation.set_naive_timestamps(before)


# -- reports ------------------------------------------------------------------------------------------------------

def test_reports_as_the_validators_build_them_are_stored_as_sent(db):
    rng = random.Random(7)
    with_media = forward_report(rng, media=2)
    no_hashes = forward_report(rng, media=1, hashes=False)
    plain = forward_report(rng)

    async def go():
        ids = [await db.store_raw_report(with_media), await db.store_raw_report(dataclasses.asdict(no_hashes)),
               await db.store_raw_report(plain)]
        again = await db.store_raw_report(with_media)  # the same report again: the first id, nothing new
        records = [await db.get_raw_report(i) for i in ids]
        await db.close()
        return ids, again, records

    ids, again, records = run(go())
    assert again == ids[0] and len(set(ids)) == 3
    for sent, stored in zip((with_media, no_hashes, plain), records, strict=True):
        assert stored["external_id"] == sent.report_id
        assert stored.text_description == sent.text_description and stored.user_id == sent.user_id
        assert (stored.latitude, stored.longitude) == (sent.geotag["lat"], sent.geotag["lng"])
        assert stored.timestamp == sent.timestamp.astimezone()  # naive: the node's local time
        assert stored.media_urls == sent.media_urls and stored.media_hashes == sent.media_hashes
        assert stored.metadata == sent.metadata
    assert records[1].media_hashes == [] and len(records[1].media_urls) == 1


def test_a_uuid_report_id_is_the_sources_id(db):
    source_id = str(uuid.uuid4())

    async def go():
        report_id = await db.store_raw_report({"report_id": source_id, "text_description": "Bike stolen",
                                               "geotag": {"lat": 1.0, "lng": 2.0}, "timestamp": NOW})
        record = await db.get_raw_report(report_id)
        await db.close()
        return report_id, record

    report_id, record = run(go())
    assert record.external_id == source_id and str(report_id) != source_id


@pytest.mark.parametrize("tz", ["America/New_York", "Asia/Kolkata"])
def test_naive_times_follow_the_rule(db, tz, naive_rule, monkeypatch):
    monkeypatch.setenv("TZ", tz)
    time.tzset()
    naive = datetime(2025, 9, 6, 19, 0)
    report = {"text_description": "Shop lifting", "geotag": {"lat": 1.0, "lng": 2.0}}

    async def go():
        local = await db.store_raw_report({**report, "report_id": "LMR_L", "timestamp": naive})
        naive_rule("utc")
        utc = await db.store_raw_report({**report, "report_id": "LMR_U", "timestamp": naive})
        naive_rule("refuse")
        with pytest.raises(ValidationError) as refused:
            await db.store_raw_report({**report, "report_id": "LMR_R", "timestamp": naive})
        stored = [(await db.get_raw_report(i)).timestamp for i in (local, utc)]
        await db.close()
        return stored, refused.value

    try:
        (local, utc), refused = run(go())
    finally:
        monkeypatch.undo()
        time.tzset()
    offset = {"America/New_York": timedelta(hours=-4), "Asia/Kolkata": timedelta(hours=5, minutes=30)}[tz]
    assert local == naive.replace(tzinfo=timezone(offset))
    assert utc == naive.replace(tzinfo=timezone.utc)
    assert refused.field == "timestamp" and "LUMINAR_NAIVE_TIMESTAMPS" in str(refused)


# -- the text flow: unlocated events ------------------------------------------------------------------------------

def test_text_flow_events_are_stored_unlocated_and_kept_out_of_spatial_queries(db):
    async def go():
        ids = [await db.store_crime_event(e, MINER) for e in text_flow_events()]
        # The protocol's object of the first event is that event: sent again, it is not stored twice.
        assert await db.store_crime_event(ProtocolCrimeEvent(**text_flow_events()[0]), MINER) == ids[0]
        ids.append(await db.store_crime_event(ProtocolCrimeEvent(**text_flow_events()[0] | {"summary": "Second"}),
                                              MINER))
        for event_id in ids:
            await db.update_event_verification(event_id, VALIDATOR, "verified", 0.9)
        first = await db.get_event(ids[0])
        recent = await db.get_recent_events(hours=1)
        near = await db.get_events_within_radius(0.0, 0.0, 1_000_000)
        hotspots = await db.get_crime_hotspots(days=7, min_incidents=1)
        stats = await db.get_database_stats()
        located = await db.locate_event(ids[0], 40.7128, -74.0060)
        near_after = await db.get_events_within_radius(40.7128, -74.0060, 100)
        hotspots_after = await db.get_crime_hotspots(days=7, min_incidents=1)
        await db.close()
        return ids, first, recent, near, hotspots, stats, located, near_after, hotspots_after

    ids, first, recent, near, hotspots, stats, located, near_after, hotspots_after = run(go())
    sent = text_flow_events()[0]
    assert first.latitude is None and first.longitude is None and first.geotag is None
    assert first.location_source is None and first.location_text == sent["location"]
    assert first.severity == "medium" and first.severity_level == 3 and first["severity"] == "medium"
    assert first.time_info == sent["time_info"] and first.entities == sent["entities"]
    assert first.summary == sent["summary"] and first.confidence_score == sent["confidence"]
    assert first.timestamp_source == "stored" and NOW <= first.timestamp <= datetime.now(timezone.utc)
    assert {e.event_id for e in recent} == set(ids)  # counted by time
    assert stats.crime_events == 3 and stats.verified_events == 3
    assert near == [] and hotspots == []  # never in a spatial result
    assert (located.latitude, located.longitude, located.location_source) == (40.7128, -74.0060, "geocoded")
    assert [e.event_id for e in near_after] == [ids[0]]
    assert [h.incident_count for h in hotspots_after] == [1]


# -- the report flow: events named by the reports' own ids --------------------------------------------------------

def test_report_flow_events_resolve_their_reports(db):
    rng = random.Random(11)
    reports = [forward_report(rng, lat=40.70, lng=-74.00, hours_ago=5),
               forward_report(rng, lat=40.72, lng=-74.02, hours_ago=4)]
    start = min(r.timestamp for r in reports)
    located = ReportFlowEvent(
        event_id="evt_0001", event_type="theft", source_reports=[r.report_id for r in reports],
        location={"coordinates": {"lat": 40.71, "lng": -74.01}, "address": "Main Street parking lot"},
        timestamp_range={"start": start, "end": start + timedelta(hours=2)},
        summary_tag="Parking lot theft", clustered_summary="Two reports of a vehicle break-in in one parking lot",
        confidence_score=0.8)
    from_reports = {"event_type": "theft", "severity": "high", "source_reports": [r.report_id for r in reports],
                    "confidence_score": 0.7, "summary_tag": "Break-ins"}

    async def go():
        report_ids = [await db.store_raw_report(r) for r in reports]
        first = await db.get_event(await db.store_crime_event(located, MINER))
        second = await db.get_event(await db.store_crime_event(from_reports, MINER))
        await db.close()
        return report_ids, first, second

    report_ids, first, second = run(go())
    assert first.related_reports == report_ids and second.related_reports == report_ids
    assert (first.latitude, first.longitude, first.location_source) == (40.71, -74.01, "event")
    assert first.location_text == "Main Street parking lot"
    assert first.timestamp == start.astimezone() and first.time_end == (start + timedelta(hours=2)).astimezone()
    assert first.title == "Parking lot theft" and first.summary.startswith("Two reports")
    assert first.metadata["source_event_id"] == "evt_0001" and first.timestamp_source == "event"
    # no coordinates, no time: the centroid of its reports and the earliest report's time
    assert second.location_source == "source_reports" and second.timestamp_source == "source_reports"
    assert math.isclose(second.latitude, 40.71, abs_tol=1e-6) and math.isclose(second.longitude, -74.01, abs_tol=1e-3)
    assert second.timestamp == start.astimezone() and second.severity_level == 4


def test_one_source_report_gives_its_point(db):
    report = forward_report(random.Random(3), lat=48.8566, lng=2.3522)

    async def go():
        await db.store_raw_report(report)
        event = await db.get_event(await db.store_crime_event(
            {"event_type": "vandalism", "severity": "low", "confidence": 0.6, "related_reports": [report.report_id]},
            MINER))
        await db.close()
        return event

    event = run(go())
    assert (event.latitude, event.longitude) == (48.8566, 2.3522) and event.severity_level == 2


def test_an_unknown_source_report_is_named_and_nothing_is_stored(db):
    async def go():
        with pytest.raises(NotFoundError) as single:
            await db.store_crime_event({"event_type": "theft", "severity": "low", "confidence": 0.5,
                                        "source_reports": ["LMR_20250101_NOPE0000"]}, MINER)
        report_id = await db.store_raw_report(forward_report(random.Random(5)))
        with pytest.raises(NotFoundError) as bulk:
            await db.store_crime_events([reference_event([report_id]),
                                         {"event_type": "theft", "severity": "low", "confidence": 0.5,
                                          "source_reports": ["LMR_20250101_NOPE0001"]}], MINER)
        stats = await db.get_database_stats()
        await db.close()
        return single.value, bulk.value, stats

    single, bulk, stats = run(go())
    assert "source_reports[0]" in str(single) and "LMR_20250101_NOPE0000" in str(single)
    assert "events[1].source_reports[0]" in str(bulk)
    assert stats.crime_events == 0


def test_every_shape_goes_through_the_bulk_path(db):
    rng = random.Random(13)
    report = forward_report(rng)

    async def go():
        report_id = await db.store_raw_report(report)
        stored = await db.store_crime_events(
            [reference_event([report_id]), *text_flow_events(),
             {"event_type": "theft", "severity": 5, "confidence": 0.9, "source_reports": [report.report_id]}],
            MINER)
        events = await db.get_events_by_miner(MINER)
        await db.close()
        return report_id, stored, events

    report_id, stored, events = run(go())
    assert stored == 4 and len(events) == 4
    by_type = {}
    for e in events:
        by_type.setdefault(e.event_type, []).append(e)
    assert by_type["assault"][0].severity_level == 4 and by_type["assault"][0].related_reports == [report_id]
    assert by_type["other"][0].latitude is None and by_type["other"][0].severity == "low"
    from_source = [e for e in by_type["theft"] if e.related_reports]
    assert from_source[0].latitude == report.geotag["lat"] and from_source[0].location_source == "source_reports"


# -- the reference access layer's event shape and the validators' calls -------------------------------------------

def test_the_reference_event_shape_and_the_validators_calls(db):
    async def go():
        report_id = await db.store_raw_report(forward_report(random.Random(2)))
        event_id = await db.store_crime_event(reference_event([report_id]), MINER)
        await db.update_event_verification(event_id, VALIDATOR, "verified", 0.93)
        record_id = await db.store_consensus_record(event_id, VALIDATOR, SCORES, 1)
        await db.update_miner_performance(MINER, "hotkey_string", SCORES)
        event = await db.get_event(event_id)
        hotspots = await db.get_crime_hotspots(days=7, min_incidents=1)
        await db.close()
        return report_id, event, record_id, hotspots

    report_id, event, record_id, hotspots = run(go())
    assert event.severity_level == 4 and event.severity == "high" and event.related_reports == [report_id]
    assert event.verification_status == "verified" and event.validator_uid == VALIDATOR
    assert event.verification_score == 0.93 and dict(event)["event_type"] == "assault"
    # read like the dicts the reference returned: keys, values, iteration, get
    assert list(event) == list(event.keys()) and len(list(event.values())) == len(event)
    assert event.get("severity_level") == 4 and event.get("no_such_column", "-") == "-" and "summary" in event
    assert isinstance(record_id, uuid.UUID)
    assert [(h.incident_count, h.max_severity) for h in hotspots] == [(1, 4)]


# -- refusals: the new shapes widen what is accepted, not what slips through ---------------------------------------

@pytest.mark.parametrize(("event", "field"), [
    ({"event_type": "theft", "severity": "critical", "confidence": 0.5}, "severity"),
    ({"event_type": "theft", "severity": "low", "confidence": 0.5,
      "location": {"coordinates": {"lat": 91, "lng": 0}}}, "location.coordinates.lat"),
    ({"event_type": "theft", "severity": "low", "confidence": 0.5,
      "location": {"coordinates": {"lat": 0, "lng": float("nan")}}}, "location.coordinates.lng"),
    ({"event_type": "theft", "severity": "low", "confidence": 0.5, "location": 42}, "location"),
    ({"event_type": "theft", "severity": "low", "confidence": 0.5,
      "timestamp_range": {"start": "yesterday"}}, "timestamp_range.start"),
    ({"event_type": "theft", "severity": "low", "confidence": 0.5, "timestamp_range": {"end": "2025-01-01"}},
     "timestamp_range"),
    ({"event_type": "theft", "severity": "low", "confidence": 1.5}, "confidence_score"),
    ({"event_type": "theft", "severity": "low", "confidence": 0.5, "entities": "red sedan"}, "entities"),
    ({"event_type": "theft", "severity": "low", "confidence": 0.5, "source_reports": [3.5]}, "source_reports[0]"),
    ({"event_type": "theft", "severity": "low", "confidence": 0.5, "geotag": {"lat": 1, "lng": 2},
      "location": {"coordinates": {"lat": 3, "lng": 4}}}, "location.coordinates"),
])
def test_bad_shapes_are_refused_before_any_sql(pg_server, event, field):
    nowhere = LuminarDB(pg_server.settings("luminar_nowhere", LUMINAR_DB_PORT="1"))

    async def go():
        with pytest.raises(ValidationError) as info:
            await nowhere.store_crime_event(event, MINER)
        return info.value

    assert run(go()).field == field
