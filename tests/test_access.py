"""The facade: the specification's calls exactly as written, on a real database, with mappings and dataclasses."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from _async import clock, run

import luminar_store
from luminar_store.access import LuminarDB
from luminar_store.errors import NotFoundError
from luminar_store.models import CrimeEvent, RawIncidentReport

NOW: datetime = None  # type: ignore[assignment]  # when the running test started: set by _clock, never at import
_clock = clock(globals())



def crime_event(**over) -> dict:
    data = {"event_type": "burglary", "geotag": {"lat": 40.7128, "lng": -74.0060}, "timestamp": NOW,
            "severity": 4, "confidence_score": 0.9, "title": "Break-in on 5th Avenue"}
    data.update(over)
    return data


def test_the_specifications_calls_as_written(db_settings):
    db = LuminarDB(db_settings)

    async def go():
        await db.initialize()
        assert await db.health_check() is True
        report = {"report_id": "app-1001", "text_description": "Someone broke into the shop", "user_id": "u-1",
                  "geotag": {"lat": 40.7128, "lng": -74.0060}, "timestamp": NOW - timedelta(minutes=3)}
        report_id = await db.store_raw_report(report)
        assert await db.store_raw_report(report) == report_id  # idempotent

        crime = crime_event(related_reports=[report_id])
        success = await db.store_crime_event(crime, miner_uid=123)
        assert success and isinstance(success, uuid.UUID)

        events = await db.get_recent_events(hours=24, limit=100)
        assert [e.event_id for e in events] == [success]
        event = events[0]
        assert (event.latitude, event.longitude, event.timestamp) == (40.7128, -74.0060, NOW)
        assert event.related_reports == [report_id]

        await db.update_miner_performance(
            miner_uid=123,
            hotkey="hotkey_string",
            scores={"integrity": 0.95, "clustering": 0.88, "novelty": 0.75, "quality": 0.92},
        )
        stats = await db.get_miner_stats(miner_uid=123)
        assert stats.total_rounds == 1 and stats.success_rate == 100.0 and stats.events_submitted == 1
        assert stats.overall_score == pytest.approx((0.95 + 0.88 + 0.75 + 0.92) / 4)
        assert await db.get_miner_stats(miner_uid=124) is None

        validator_uid, round_number = 7, 12
        scores = {"integrity": 0.9, "clustering": 0.8, "final": 0.85}
        record_id = await db.store_consensus_record(event.event_id, validator_uid, scores, round_number)
        assert await db.store_consensus_record(event.event_id, validator_uid, scores, round_number) == record_id

        assert await db.get_crime_hotspots(days=7) == []  # nothing verified yet
        verified = await db.update_event_verification(event.event_id, validator_uid, "verified", 0.85)
        assert verified.verification_status == "verified" and verified.validator_uid == 7
        # A cell of one incident is below the default threshold (HOTSPOT_MIN_INCIDENTS, 2); min_incidents=1 lists it
        assert await db.get_crime_hotspots(days=7) == []
        hotspots = await db.get_crime_hotspots(days=7, min_incidents=1)
        assert [(h.incident_count, h.avg_severity, h.max_severity) for h in hotspots] == [(1, 4.0, 4)]
        assert abs(hotspots[0].latitude - 40.7128) < 0.01 and abs(hotspots[0].longitude + 74.006) < 0.01

        db_stats = await db.get_database_stats()
        assert (db_stats.raw_reports, db_stats.pending_reports, db_stats.crime_events, db_stats.verified_events,
                db_stats.verification_rate, db_stats.active_miners, db_stats.active_validators) == \
            (1, 1, 1, 1, 100.0, 1, 0)
        await db.close()

    run(go())


def test_positional_forms_of_the_integration_examples(db_settings):
    db = LuminarDB(db_settings)

    async def go():
        event_id = await db.store_crime_event(crime_event(), 42)  # db.store_crime_event(event, self.uid)
        assert (await db.get_event(event_id)).miner_uid == 42
        await db.close()

    run(go())


def test_dataclass_inputs_and_mapping_aliases_store_the_same(db_settings):
    db = LuminarDB(db_settings)

    async def go():
        as_class = await db.store_crime_event(
            CrimeEvent(event_type="assault", geotag={"lat": 51.5, "lng": -0.12}, timestamp=NOW, severity=2,
                       confidence_score=0.7, summary="Fight outside a pub"), miner_uid=1)
        as_mapping = await db.store_crime_event(
            {"crime_type": "Assault", "latitude": 51.5, "longitude": -0.12, "timestamp": NOW.isoformat(),
             "severity": 2, "confidence": 0.7, "description": "Fight outside a pub"}, miner_uid=1)
        a, b = await db.get_event(as_class), await db.get_event(as_mapping)
        r1 = await db.store_raw_report(RawIncidentReport(external_id="x-1", description="d",
                                                         geotag={"lat": 1.0, "lng": 2.0}, timestamp=NOW))
        r2 = await db.store_raw_report({"external_id": "x-2", "description": "d", "geotag": {"lat": 1, "lon": 2},
                                        "timestamp": NOW})
        raw = await db.get_raw_report(r1), await db.get_raw_report(r2)
        await db.close()
        return a, b, raw

    a, b, (r1, r2) = run(go())
    same = ("event_type", "latitude", "longitude", "timestamp", "severity_level", "confidence_score", "summary")
    assert [getattr(a, f) for f in same] == [getattr(b, f) for f in same]
    assert a.event_type == "assault" and a.summary == "Fight outside a pub"
    assert (r1.latitude, r1.longitude) == (r2.latitude, r2.longitude) == (1.0, 2.0)


def test_bulk_claim_settle_radius_and_miner_calls(db_settings):
    db = LuminarDB(db_settings)

    async def go():
        reports = [{"external_id": f"b-{n}", "description": "d", "geotag": {"lat": 1, "lng": 1},
                    "timestamp": NOW - timedelta(minutes=n)} for n in range(5)]
        assert await db.store_raw_reports(reports) == 5
        assert await db.store_raw_reports(reports) == 0
        batch = await db.claim_reports(miner_uid=3, limit=2)
        assert [r.external_id for r in batch] == ["b-4", "b-3"]
        assert (await db.mark_report_processed(batch[0].report_id)).status == "processed"
        assert (await db.mark_report_failed(batch[1].report_id, "bad media", retry=True)).status == "pending"
        with pytest.raises(NotFoundError):
            await db.mark_report_processed(uuid.uuid4())

        events = [crime_event(geotag={"lat": 40.7128 + n * 0.0011, "lng": -74.0060}) for n in range(20)]
        assert await db.store_crime_events(events, miner_uid=5) == 20
        near = await db.get_events_within_radius(40.7128, -74.0060, 1000, days=7)
        assert len(near) == 9  # 0.0011° of latitude ≈ 122 m: steps 0..8 lie within 1 km (977 m), 9 beyond (1099 m)
        assert max(e.distance_m for e in near) < 1000
        assert len(await db.get_events_by_miner(5, limit=100)) == 20
        await db.close()

    run(go())


def test_reads_through_replicas(db_settings):
    settings = replace(db_settings, replica_urls=(db_settings.conninfo(),))
    db = LuminarDB(settings)

    async def go():
        await db.store_crime_event(crime_event(), miner_uid=1)
        events = await db.get_recent_events(hours=1, limit=10)
        stats = await db.get_database_stats()
        await db.close()
        return events, stats

    events, stats = run(go())
    assert len(events) == 1 and stats.crime_events == 1


def test_module_db_reads_the_environment_lazily_and_survives_successive_event_loops(db_settings, monkeypatch,
                                                                                    pg_server):
    from luminar_store.access import db

    assert luminar_store.db is db and isinstance(db, LuminarDB)
    for name, value in {"LUMINAR_ENV": "testing", "LUMINAR_DB_HOST": pg_server.host,
                        "LUMINAR_DB_PORT": str(pg_server.port), "LUMINAR_DB_NAME": db_settings.name,
                        "LUMINAR_DB_USER": pg_server.user, "LUMINAR_DB_PASSWORD": pg_server.password or ""}.items():
        monkeypatch.setenv(name, value)
    db.configure(None)
    try:
        event_id = run(db.store_crime_event(crime_event(), miner_uid=9))
        events = run(db.get_recent_events(hours=24, limit=100))  # a new event loop: fresh pools
        assert [e.event_id for e in events] == [event_id]
        assert db.database.settings.name == db_settings.name
    finally:
        run(db.close())
        db.configure(None)


def test_protocol_objects_other_dataclasses_and_pydantic_style_models(db_settings):
    from dataclasses import dataclass

    @dataclass
    class ProtocolReport:  # the shape of the nodes' own report objects
        report_id: str
        text_description: str
        geotag: dict
        timestamp: datetime
        user_id: str | None = None

    class PydanticLike:
        def model_dump(self) -> dict:
            return {"crime_type": "vandalism", "geotag": {"lat": 48.85, "lng": 2.35}, "timestamp": NOW,
                    "severity": 1, "confidence_score": 0.6}

    db = LuminarDB(db_settings)

    async def go():
        rid = await db.store_raw_report(ProtocolReport("p-1", "Graffiti on the bridge", {"lat": 48.85, "lng": 2.35},
                                                       NOW, "u-3"))
        eid = await db.store_crime_event(PydanticLike(), miner_uid=3)
        got = await db.get_raw_report(rid), await db.get_event(eid)
        await db.close()
        return got

    report, event = run(go())
    assert (report.external_id, report.user_id, report.text_description) == ("p-1", "u-3", "Graffiti on the bridge")
    assert (event.event_type, event.latitude) == ("vandalism", 48.85)
