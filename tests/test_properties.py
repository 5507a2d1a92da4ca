"""Issue 9: every write call of the facade, driven by hypothesis with valid and hostile inputs.

Each example ends one of two ways: the call succeeds and what it stored reads back equal to what was sent, up to
the README's normal forms ("Normal forms", next to the validation rules; each is one function below: ``slug``,
``level``, ``risk``, ``when``, ``json_form`` ...) — or the call raises ``ValidationError`` naming a field (or, only
where the example deliberately names a row that does not exist, ``NotFoundError``). Any other exception fails the
test: a ``ValidationError`` without a field or caused by the server (a server error translated as such), a psycopg
error, a ``TypeError`` ...

The defects it found are fixed; each keeps a plain test of its own here or in ``test_validation_holes.py``.

One database per test (``db_settings``), one event loop per test (the pools live on it), reused by every example;
each example writes rows of its own (unique source ids, uids, rounds), so examples never see each other's writes.
Hypothesis runs derandomized with a bounded number of examples: the same inputs on every run, within the suite's
time budget.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from types import MappingProxyType
from typing import Any, TypeVar

import psycopg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_validation_holes import _deep as deep

from luminar_store.access import LuminarDB
from luminar_store.errors import NotFoundError, ValidationError
from luminar_store.models.inputs import REPORT_STATUSES, VERIFICATION_STATUSES
from luminar_store.severity import LEVEL_OF_WORD

T = TypeVar("T")

EXAMPLES = 60
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])
_ids = itertools.count(1)
REFUSED = object()
MISSING = object()


def unique() -> int:
    return next(_ids)


EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


# -- the harness: one loop, one facade per test --------------------------------------------------------------------

class Harness:
    """A facade on the test's database and the event loop its pools live on; ``outcome`` runs one call."""

    def __init__(self, settings_, conninfo: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.db = LuminarDB(settings_)
        self.conninfo = conninfo
        self.conn: psycopg.Connection | None = None
        self.stored_at: dict[uuid.UUID, tuple[datetime, datetime]] = {}  # event_id: when it was first stored

    def run(self, coro: Awaitable[T]) -> T:
        return self.loop.run_until_complete(coro)

    def outcome(self, call: Callable[[], Awaitable[T]], *, unknown: bool = False) -> Any:
        """The call's result, or ``REFUSED`` when it raised a ``ValidationError`` naming a field (or ``MISSING``
        for a ``NotFoundError`` when the example named a row that does not exist: ``unknown``). Anything else
        propagates and fails the example."""
        async def go():
            try:
                return await call()
            except NotFoundError:
                if not unknown:
                    raise
                event("not found")
                return MISSING
            except ValidationError as exc:
                assert exc.field, f"a ValidationError must name a field: {exc!r}"
                assert not isinstance(exc.__cause__, psycopg.Error), f"refused by the server, not at the door: {exc!r}"
                # statistics labels must be encodable (hypothesis's pytest plugin encodes them as UTF-8)
                event(ascii(f"refused: {exc.field.split('.')[0].split('[')[0]}"))
                event(ascii(f"rule: {exc.field}: {exc.rule[:40]}"))
                return REFUSED

        result = self.run(go())
        if result is not REFUSED and result is not MISSING:
            event("stored")
        return result

    def sql(self, query: str, params: Any = None) -> list[tuple]:
        """Rows of a read beside the facade (one autocommit connection for the whole test)."""
        if self.conn is None:
            self.conn = psycopg.connect(self.conninfo, autocommit=True)
        return self.conn.execute(query, params).fetchall()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.run(self.db.close())
        self.loop.close()


@pytest.fixture(autouse=True)
def far_time_zone(monkeypatch):
    """The process runs in a zone with an odd offset and summer time (+12:45 / +13:45), so that naive times are
    read as local times that are not UTC, and a naive time near 1970 lies before it in UTC."""
    monkeypatch.setenv("TZ", "Pacific/Chatham")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def h(db_settings):
    harness = Harness(db_settings, db_settings.conninfo())
    yield harness
    harness.close()


# -- normal forms (the README's list, one function each) -----------------------------------------------------------

def slug(value: str) -> str:
    """A crime type: stripped, lower-cased, runs of spaces and hyphens become one ``_``."""
    return re.sub(r"[\s\-]+", "_", value.strip().lower())


def level(value: Any) -> int | None:
    """A severity: a level 1..5 as given; a word (any case, surrounding spaces) low/medium/high as 2/3/4."""
    return LEVEL_OF_WORD[value.strip().lower()] if isinstance(value, str) else value


def real(value: Any) -> float:
    """A number (int, float, Decimal) is stored as a double."""
    return float(value)


def risk(value: Any) -> float:
    """An event's risk score is rounded to 2 decimals (the column is numeric(3, 2))."""
    return float(Decimal(f"{float(value):.2f}"))


def when(value: Any) -> datetime:
    """A time: aware as given; naive read as the local time (the default LUMINAR_NAIVE_TIMESTAMPS); ISO text parsed
    (``Z`` is UTC). Compared as instants: timestamptz keeps the instant, not the offset."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None or value.utcoffset() is None:
        value = value.replace(tzinfo=None).astimezone()
    return value


def json_form(value: Any) -> Any:
    """JSON as jsonb keeps it: a number keeps its decimal value, not its Python type (``1e25`` reads back as
    ``10**25``, ``-0.0`` as ``0``, ``2.50`` as ``2.5``); tuples read back as lists; keys as text."""
    return json.loads(json.dumps(plain(value), allow_nan=False), parse_float=Decimal, parse_int=Decimal)


def plain(value: Any) -> Any:
    """Any mapping as a dict, any list or tuple as a list (what JSON holds)."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def same_json(read: Any, sent: Any) -> bool:
    return json_form(read) == json_form(sent)


def point(geotag: Any) -> tuple[float, float]:
    """A geotag: ``lat``/``latitude`` and ``lng``/``lon``/``longitude``, each a double."""
    lat = next(geotag[k] for k in ("lat", "latitude") if k in geotag)
    lng = next(geotag[k] for k in ("lng", "lon", "longitude") if k in geotag)
    return real(lat), real(lng)


# -- strategies: mostly valid values, and hostile ones ----------------------------------------------------------------

def mostly(valid: st.SearchStrategy, hostile: st.SearchStrategy, one_in: int = 6) -> st.SearchStrategy:
    """``valid`` most of the time, ``hostile`` about once in ``one_in`` draws (so that most examples of a call with
    many fields still reach the database, and every field is attacked now and then)."""
    return st.integers(1, one_in).flatmap(lambda i: hostile if i == 1 else valid)


FUTURE = datetime(2100, 1, 1, tzinfo=timezone.utc)  # far ahead of any run; "now" is never read at import
HOSTILE_TEXT = ["", "   ", "\t\n", "a\x00b", "\x00", "a\ud800b", "\udfff", "x" * 10_001, 0, 1.5, True, None,
                b"bytes", ["list"], {"a": 1}]
HOSTILE_NUMBERS = [math.nan, math.inf, -math.inf, 10**400, -(10**400), Decimal("NaN"), Decimal("sNaN"),
                   Decimal("Infinity"), Decimal("1e400"), True, False, "0.5", None, [0.5], complex(0.5, 0),
                   1e-320, -0.0, 2**63, -1e308, 1e308]
HOSTILE_TIMES = [datetime.min, datetime.max, datetime.min.replace(tzinfo=timezone.utc),
                 datetime.max.replace(tzinfo=timezone.utc),
                 datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))),
                 datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-14))),
                 datetime(1969, 12, 31, 23, 59, 59, tzinfo=timezone.utc), datetime(1970, 1, 1),
                 datetime(1970, 1, 1, tzinfo=timezone.utc), "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59",
                 "yesterday", "", "2025-13-01T00:00:00", 1_700_000_000, 1.7e9, None, True, FUTURE,
                 "2025-01-01T00:00:00Z", "2025-01-01T00:00:00+05:30:17"]

plain_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=40).filter(
    str.strip)
wild_text = st.text(st.characters(exclude_categories=()), max_size=30)  # NUL bytes, lone surrogates, anything


def text_values(max_size: int = 40) -> st.SearchStrategy:
    return mostly(plain_text, st.one_of(st.text(max_size=max_size), wild_text, st.sampled_from(HOSTILE_TEXT)))


def numbers(low: float, high: float, one_in: int = 6) -> st.SearchStrategy:
    return mostly(st.one_of(st.floats(low, high), st.integers(math.ceil(low), math.floor(high)),
                            st.decimals(low, high, allow_nan=False, allow_infinity=False, places=6)),
                  st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(),
                            st.sampled_from(HOSTILE_NUMBERS)), one_in)


offsets = st.integers(-14 * 3600 + 1, 14 * 3600 - 1).map(lambda s: timezone(timedelta(seconds=s)))
past = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2026, 1, 1))
times = mostly(
    st.one_of(
        past.map(lambda d: d.replace(tzinfo=timezone.utc)),
        st.builds(lambda d, tz: d.replace(tzinfo=tz), past, offsets),
        past,  # naive: the local time
        past.map(lambda d: d.replace(tzinfo=timezone.utc).isoformat()),
        past.map(lambda d: d.isoformat() + "Z"),
    ),
    st.one_of(st.datetimes(timezones=st.just(timezone.utc)), st.datetimes(),  # anywhere in datetime's range
              st.builds(lambda d, tz: d.replace(tzinfo=tz), st.datetimes(), offsets),
              st.sampled_from(HOSTILE_TIMES)),
)

json_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)
json_scalars = mostly(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), json_text),
    st.one_of(wild_text, st.sampled_from([math.nan, math.inf, 10**1001, "\x00", "\ud800", Decimal("1.5"), FUTURE,
                                          b"x", uuid.UUID(int=1), 2**64, 1e300, -0.0, "x" * 3000])),
    one_in=12)
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(json_text, inner, max_size=4),
    st.lists(inner, max_size=3).map(tuple), st.dictionaries(json_text, inner, max_size=3).map(MappingProxyType)),
    max_leaves=12)




metadata_values = mostly(
    st.dictionaries(json_text, json_values, max_size=5),
    st.one_of(st.dictionaries(st.sampled_from(["\ud800", "a\x00", "k"]), json_values, min_size=1, max_size=2),
              st.sampled_from([None, {}, [1], "text", 5, deep(33), deep(31), {1: "int key"}, {"n": 10**999}])),
)

latitudes = numbers(-90, 90)
longitudes = numbers(-180, 180)
geotags = mostly(
    st.one_of(
        st.builds(lambda a, b: {"lat": a, "lng": b}, latitudes, longitudes),
        st.builds(lambda a, b: {"latitude": a, "lon": b}, st.floats(-90, 90), st.floats(-180, 180)),
        st.builds(lambda a, b: {"lat": a, "longitude": b}, st.floats(-90, 90), st.floats(-180, 180)),
    ),
    st.sampled_from([{"lat": 1.0}, {"lng": 1.0}, "40.7,-74.0", [40.7, -74.0], None, {}, {"lat": None, "lng": None},
                     {"lat": 95, "lng": 0}, {"lat": 0, "lng": -181}]),
)
crime_types = mostly(st.one_of(st.sampled_from(["theft", "Armed Robbery", "  car-jacking ", "assault\t",
                                                "VANDALISM", "a" * 64, "x y-z", "b2"]),
                               st.from_regex(r"[a-zA-Z][a-zA-Z0-9_ -]{0,30}", fullmatch=True)),
                     st.one_of(st.sampled_from(["a" * 65, "robbery!!", "9lives", "Straße"]), text_values()))
uids = mostly(st.integers(0, 2**31 - 1), st.sampled_from([-1, 2**31, 10**400, True, 1.0, "7", None]))
scores = numbers(0, 1)


def rarely(values: list) -> st.SearchStrategy:
    """``None`` (leave it out) most of the time, else one of ``values``."""
    return mostly(st.none(), st.sampled_from(values))


# -- raw reports ---------------------------------------------------------------------------------------------------

def report_values() -> st.SearchStrategy:
    """A raw report as a mapping: our field names or the protocol's, maybe an extra key, every value valid or not."""
    return st.fixed_dictionaries(
        {"description": text_values(), "geotag": geotags, "timestamp": times},
        optional={"reporter_id": text_values(), "crime_type": crime_types,
                  "media": st.integers(0, 3), "media_hashes_count": st.integers(0, 3),
                  "metadata": metadata_values, "aliases": st.booleans(), "extra": rarely(["colour", "id", "source_id"]),
                  "external_id": rarely(HOSTILE_TEXT + ["e" * 201]),
                  "source": rarely(["sensor_feed", "web_form", "s" * 101] + HOSTILE_TEXT),
                  "media_urls": rarely(["https://m.example/1.jpg", ["", "a"], ["a\x00"], [1], ["u" * 2049],
                                        ["u"] * 101, ["\ud800"], [None], ("https://m.example/t.jpg",)])},
    ).map(_report)


def _report(draw: dict) -> dict:
    n = unique()
    data: dict[str, Any] = {"external_id": f"LMR_prop_{n}", "description": draw["description"],
                            "geotag": draw["geotag"], "timestamp": draw["timestamp"]}
    if draw.get("external_id") is not None:
        data["external_id"] = draw["external_id"]
    for key in ("reporter_id", "crime_type", "metadata"):
        if key in draw:
            data[key] = draw[key]
    if draw.get("source") is not None:
        data["source"] = draw["source"]
    if "media" in draw:
        data["media_urls"] = [f"https://m.example/{n}/{i}.jpg" for i in range(draw["media"])]
        data["media_hashes"] = [f"{i:064x}" for i in range(draw.get("media_hashes_count", draw["media"]))]
    if draw.get("media_urls") is not None:  # hostile URLs (or a tuple of one)
        data["media_urls"] = draw["media_urls"]
    if draw.get("aliases"):  # the protocol's names
        data["report_id"] = data.pop("external_id")
        data["text_description"] = data.pop("description")
        if "reporter_id" in data:
            data["user_id"] = data.pop("reporter_id")
    if draw.get("extra") is not None:
        data[draw["extra"]] = "unexpected"
    return data


def check_report(record, sent: dict) -> None:
    """A stored report reads back as sent, up to the normal forms."""
    assert record is not None
    assert record.external_id == sent.get("external_id", sent.get("report_id"))
    assert record.text_description == sent.get("description", sent.get("text_description"))
    assert record.user_id == sent.get("reporter_id", sent.get("user_id"))
    assert record.crime_type == (None if sent.get("crime_type") is None else slug(sent["crime_type"]))
    assert (record.latitude, record.longitude) == point(sent["geotag"])
    assert record.timestamp == when(sent["timestamp"])
    assert record.media_urls == list(sent.get("media_urls", []))
    assert record.media_hashes == list(sent.get("media_hashes", []))
    assert same_json(record.metadata, sent.get("metadata") or {})
    assert record.status == "pending" and record.source == sent.get("source", "mobile_app")


def send_as(data: dict, form: str) -> Any:
    """``data`` as the nodes may hand it in: a dict, a read-only mapping, or a dataclass (the protocol's objects)."""
    if form == "proxy":
        return MappingProxyType(data)
    if form == "dataclass" and all(isinstance(k, str) and k.isidentifier() for k in data):
        shape = dataclasses.make_dataclass("ProtocolShape", [(k, Any) for k in data])
        return shape(**data)
    return data


forms = st.sampled_from(["dict", "proxy", "dataclass"])


@PROPERTY
@given(report=report_values(), form=forms)
def test_store_raw_report(h, report, form):
    report_id = h.outcome(lambda: h.db.store_raw_report(send_as(report, form)))
    if report_id is REFUSED:
        return
    check_report(h.run(h.db.get_raw_report(report_id)), report)
    assert h.run(h.db.store_raw_report(report)) == report_id  # idempotent on the source id


@PROPERTY
@given(reports=st.lists(report_values(), max_size=3),
       skip_existing=mostly(st.booleans(), st.sampled_from([1, 0, None, "yes"])))
def test_store_raw_reports(h, reports, skip_existing):
    before = h.sql("SELECT count(*) FROM raw_incident_reports")[0][0]
    stored = h.outcome(lambda: h.db.store_raw_reports(reports, skip_existing=skip_existing))
    after = h.sql("SELECT count(*) FROM raw_incident_reports")[0][0]
    if stored is REFUSED:
        assert after == before  # a refused batch stores none of it
        return
    assert stored == len(reports) == after - before
    for sent in reports:
        external_id = sent.get("external_id", sent.get("report_id"))
        (report_id,) = h.sql("SELECT report_id FROM raw_incident_reports WHERE external_id = %s", (external_id,))[0]
        check_report(h.run(h.db.get_raw_report(report_id)), sent)


# -- report status ---------------------------------------------------------------------------------------------------

def stored_report(h: Harness) -> tuple[uuid.UUID, str]:
    external_id = f"LMR_status_{unique()}"
    report_id = h.run(h.db.store_raw_report({"external_id": external_id, "description": "Bike stolen",
                                             "geotag": {"lat": 1.0, "lng": 2.0},
                                             "timestamp": datetime.now(timezone.utc) - timedelta(hours=1)}))
    return report_id, external_id


report_refs = mostly(st.sampled_from(["ours", "ours-text", "source-id"]),
                     st.sampled_from(["unknown", "unknown-source-id", "", "  ", "x" * 201, 42, None, 1.5,
                                      b"00000000000000000000000000000000", ["id"]]))
# A source id with a NUL byte or a lone surrogate, refused before it reaches the server (test below).
UNSENDABLE_REFS = ["not-a-uuid\x00", "a\ud800"]
messages = st.one_of(plain_text, st.sampled_from(HOSTILE_TEXT + [None]))


def ref(h: Harness, how: Any) -> tuple[Any, uuid.UUID]:
    """A stored report named as ``how`` says (ours, its text, its source id), or a report that does not exist
    (``unknown``: a fresh UUID; ``unknown-source-id``), or ``how`` itself (hostile)."""
    report_id, external_id = stored_report(h)
    named = {"ours": report_id, "ours-text": str(report_id), "source-id": external_id, "unknown": uuid.uuid4(),
             "unknown-source-id": f"LMR_nowhere_{unique()}"}
    return (named.get(how, how) if isinstance(how, str) else how), report_id


@PROPERTY
@given(how=report_refs, status=st.one_of(st.sampled_from(REPORT_STATUSES), text_values()),
       miner_uid=st.one_of(st.none(), uids), error_message=messages)
def test_update_report_status(h, how, status, miner_uid, error_message):
    given_as, report_id = ref(h, how)
    record = h.outcome(lambda: h.db.update_report_status(given_as, status, miner_uid=miner_uid,
                                                         error_message=error_message),
                       unknown=how in ("unknown", "unknown-source-id"))
    if record is REFUSED or record is MISSING:
        return
    assert record.report_id == report_id and record.status == status
    assert h.run(h.db.get_raw_report(report_id)).status == status
    if status == "processing":
        assert record.claimed_by == miner_uid and record.processing_attempts == 1
    if status == "failed":
        assert record.error_message == (error_message or "marked failed (update_report_status)")


@pytest.mark.parametrize("given_as", UNSENDABLE_REFS)
def test_update_report_status_with_an_unsendable_source_id(h, given_as):
    with pytest.raises(ValidationError) as refused:
        h.run(h.db.update_report_status(given_as, "pending"))
    assert refused.value.field == "report_id" and refused.value.__cause__ is None


@PROPERTY
@given(how=report_refs, action=st.sampled_from(["processed", "failed"]), message=messages,
       retry=st.sampled_from([False, True, 0, None]))
def test_mark_report_processed_or_failed(h, how, action, message, retry):
    given_as, report_id = ref(h, how)
    unknown = how == "unknown"  # a source id is no report_id here: refused
    if action == "processed":
        record = h.outcome(lambda: h.db.mark_report_processed(given_as), unknown=unknown)
    else:
        record = h.outcome(lambda: h.db.mark_report_failed(given_as, message, retry=retry), unknown=unknown)
    if record is REFUSED or record is MISSING:
        return
    assert record.report_id == report_id
    if action == "processed":
        assert record.status == "processed" and record.processed_at is not None and record.error_message is None
    else:
        assert record.status == ("pending" if retry else "failed") and record.error_message == message


@PROPERTY
@given(miner_uid=uids, limit=st.one_of(st.integers(-2, 1001), st.sampled_from([10**400, True, 1.0, "5", None])))
def test_claim_reports(h, miner_uid, limit):
    stored_report(h)
    pending = h.sql("SELECT count(*) FROM raw_incident_reports WHERE status = 'pending'")[0][0]
    claimed = h.outcome(lambda: h.db.claim_reports(miner_uid, limit))
    if claimed is REFUSED:
        return
    assert len(claimed) == min(limit, pending)
    assert all(r.status == "processing" and r.claimed_by == miner_uid for r in claimed)


def test_a_reports_source_is_stored(h):
    report = {"external_id": f"LMR_src_{unique()}", "description": "Bike stolen", "geotag": {"lat": 1.0, "lng": 2.0},
              "timestamp": datetime.now(timezone.utc) - timedelta(hours=1), "source": "sensor_feed"}
    assert h.run(h.db.get_raw_report(h.run(h.db.store_raw_report(report)))).source == "sensor_feed"


# -- crime events ----------------------------------------------------------------------------------------------------

def known_reports(h: Harness) -> list[tuple[uuid.UUID, str, float, float, datetime]]:
    """Three stored reports the test's events may name: (report_id, external_id, lat, lng, timestamp)."""
    if not hasattr(h, "reports"):
        h.reports = []
        for i, (lat, lng) in enumerate([(40.70, -74.00), (40.72, -74.02), (51.5, -0.12)]):
            ts = datetime.now(timezone.utc) - timedelta(hours=5 - i)
            external_id = f"LMR_known_{unique()}"
            report_id = h.run(h.db.store_raw_report({"external_id": external_id, "description": "Break-in",
                                                     "geotag": {"lat": lat, "lng": lng}, "timestamp": ts}))
            h.reports.append((report_id, external_id, lat, lng, ts))
    return h.reports


severities = st.one_of(st.integers(1, 5), st.sampled_from(["low", "medium", "high", " High ", "MEDIUM", "critical",
                                                          "", "3", 0, 6, 3.0, True, 10**400, None, ["low"]]))
statuses = st.one_of(st.sampled_from(VERIFICATION_STATUSES), st.sampled_from(["ok", "", "VERIFIED", None, 1]))
ref_items = mostly(st.sampled_from(["r0", "r1", "r2", "s0", "s1", "r0-text"]),
                   st.sampled_from([42, None, 3.5, "", "not-a-report", "x\x00", "\ud800"]), one_in=10)
entities = mostly(st.lists(st.one_of(plain_text, json_values), max_size=4),
                  st.sampled_from(["red sedan", {"a": 1}, [math.nan], ["\x00"], [deep(40)], None, 5]))


def event_values() -> st.SearchStrategy:
    """A crime event as a mapping in any of the network's shapes, each value valid or not."""
    return st.fixed_dictionaries(
        {"event_type": crime_types, "confidence_score": scores},
        optional={"severity": severities, "geotag": geotags, "timestamp": times, "title": text_values(),
                  "summary": text_values(), "risk_score": scores, "verification_status": statuses,
                  "metadata": metadata_values, "related": st.lists(ref_items, max_size=3),
                  "location_text": text_values(), "time_info": text_values(), "entities": entities,
                  "time_end": times, "request_id": text_values(),
                  "event_id": mostly(st.sampled_from(["uuid", "evt"]), st.sampled_from(["", 7, "x" * 201, "\x00"])),
                  "aliases": st.booleans(), "shape": st.sampled_from(["location-text", "location-mapping",
                                                                      "timestamp-range", "flat-point"]),
                  "address": text_values(), "extra": rarely(["colour", "miner", "description_text", "two-types"])},
    )


def names_unknown(draw: dict) -> bool:
    """The event names a report by an id no stored report has (a ``NotFoundError``, nothing stored)."""
    return "not-a-report" in draw.get("related", [])


def build_event(h: Harness, draw: dict) -> dict:
    """The mapping sent, from a drawn event (references resolved to the test's stored reports)."""
    data = {k: draw[k] for k in ("event_type", "confidence_score", "severity", "geotag", "timestamp", "title",
                                 "summary", "risk_score", "verification_status", "metadata", "location_text",
                                 "time_info", "entities", "time_end", "request_id") if k in draw}
    if "related" in draw:
        reports = known_reports(h)
        names = {"r0": reports[0][0], "r1": reports[1][0], "r2": reports[2][0], "s0": reports[0][1],
                 "s1": reports[1][1], "r0-text": str(reports[0][0])}
        data["related_reports"] = [names.get(item, item) if isinstance(item, str) else item
                                   for item in draw["related"]]
    if "event_id" in draw:
        data["event_id"] = {"uuid": uuid.uuid4(), "evt": f"evt_{unique()}"}.get(draw["event_id"], draw["event_id"]) \
            if isinstance(draw["event_id"], str) else draw["event_id"]
    shape = draw.get("shape")
    if shape == "location-text" and "location_text" in data:
        data["location"] = data.pop("location_text")
    elif shape == "location-mapping" and "geotag" in data:
        data["location"] = {"coordinates": data.pop("geotag")}
        if "address" in draw:
            data["location"]["address"] = draw["address"]
    elif shape == "timestamp-range" and "timestamp" in data:
        data["timestamp_range"] = {"start": data.pop("timestamp")}
        if "time_end" in data:
            data["timestamp_range"]["end"] = data.pop("time_end")
    elif shape == "flat-point" and isinstance(data.get("geotag"), dict) and {"lat", "lng"} <= set(data["geotag"]):
        geotag = data.pop("geotag")
        data["latitude"], data["longitude"] = geotag["lat"], geotag["lng"]
    if draw.get("aliases"):
        for name, alias in (("event_type", "crime_type"), ("confidence_score", "confidence"),
                            ("severity", "severity_level"), ("title", "summary_tag"), ("summary", "clustered_summary")):
            if name in data:
                data[alias] = data.pop(name)
    if draw.get("extra") == "two-types":  # an alias beside its field, with another value: refused
        data["crime_type" if "event_type" in data else "event_type"] = "other_type"
    elif draw.get("extra") is not None:
        data[draw["extra"]] = "unexpected"
    return data


def expected_event(h: Harness, sent: dict) -> dict:
    """What a stored event reads back as, by the normal forms."""
    def pick(*names, default=None):
        return next((sent[n] for n in names if n in sent), default)

    location = sent.get("location")
    geotag = pick("geotag")
    if isinstance(location, dict):
        geotag = location["coordinates"]
    if geotag is None and "latitude" in sent:
        geotag = {"lat": sent["latitude"], "lng": sent["longitude"]}
    span = sent.get("timestamp_range") or {}
    timestamp = pick("timestamp", default=span.get("start"))
    time_end = pick("time_end", default=span.get("end"))
    metadata = dict(sent.get("metadata") or {})
    if isinstance(location, dict) and set(location) - {"coordinates"}:
        metadata["location"] = {k: v for k, v in location.items() if k != "coordinates"}
    event_id = sent.get("event_id")
    if event_id is not None and not isinstance(event_id, uuid.UUID):
        metadata["source_event_id"] = event_id
    # report references: ours and the reports' own ids, resolved, duplicates dropped, ours first
    by_any = {}
    for report_id, external_id, lat, lng, ts in getattr(h, "reports", []):
        by_any[report_id] = by_any[str(report_id)] = by_any[external_id] = (report_id, lat, lng, ts)
    refs = sent.get("related_reports") or []
    ours = [by_any[r] for r in refs if isinstance(r, uuid.UUID) or _is_uuid_text(r)]
    theirs = [by_any[r] for r in refs if not (isinstance(r, uuid.UUID) or _is_uuid_text(r))]
    reports = list({r[0]: r for r in ours + theirs}.values())
    location_source = "event" if geotag is not None else None
    if geotag is not None:
        lat, lng = point(geotag)
    elif reports:
        lat = lng = None  # their centroid: checked separately
        location_source = "source_reports"
    else:
        lat = lng = None
    timestamp_source = "event" if timestamp is not None else ("source_reports" if reports else "stored")
    severity = pick("severity", "severity_level")
    text = location if isinstance(location, str) else (location or {}).get("address") \
        if isinstance((location or {}).get("address") if isinstance(location, dict) else None, str) else None
    return {
        "event_type": slug(pick("event_type", "crime_type")),
        "confidence_score": real(pick("confidence_score", "confidence")),
        "severity_level": None if severity is None else level(severity),
        "latitude": lat, "longitude": lng, "location_source": location_source,
        "timestamp": None if timestamp is None else when(timestamp),
        "timestamp_source": timestamp_source,
        "earliest": min((r[3] for r in reports), default=None),
        "title": pick("title", "summary_tag"), "summary": pick("summary", "clustered_summary"),
        "related_reports": [r[0] for r in reports],
        "risk_score": None if sent.get("risk_score") is None else risk(sent["risk_score"]),
        "verification_status": sent.get("verification_status", "pending"),
        "metadata": metadata,
        "location_text": pick("location_text", default=text),
        "time_info": sent.get("time_info"), "entities": list(sent.get("entities") or []),
        "time_end": None if time_end is None else when(time_end),
        "request_id": sent.get("request_id"),
        "event_id": event_id if isinstance(event_id, uuid.UUID) else None,
    }


def _is_uuid_text(value: Any) -> bool:
    try:
        uuid.UUID(value)
    except (TypeError, ValueError, AttributeError):
        return False
    return True


def check_event(record, want: dict, miner_uid: int, stored_between: tuple[datetime, datetime]) -> None:
    """A stored event reads back as ``want`` (``expected_event``)."""
    assert record is not None and record.miner_uid == miner_uid
    if want["event_id"] is not None:
        assert record.event_id == want["event_id"]
    for name in ("event_type", "confidence_score", "severity_level", "location_source", "timestamp_source", "title",
                 "summary", "related_reports", "risk_score", "verification_status", "location_text", "time_info",
                 "time_end", "request_id"):
        assert getattr(record, name) == want[name], (name, getattr(record, name), want[name])
    assert same_json(record.metadata, want["metadata"]) and same_json(record.entities, want["entities"])
    if want["location_source"] == "source_reports":
        assert record.latitude is not None and record.longitude is not None
    else:
        assert (record.latitude, record.longitude) == (want["latitude"], want["longitude"])
    if want["timestamp_source"] == "event":
        assert record.timestamp == want["timestamp"]
    elif want["timestamp_source"] == "source_reports":
        assert record.timestamp == want["earliest"]
    else:
        assert stored_between[0] <= record.timestamp <= stored_between[1]
    if record.severity_level is not None:
        assert record.severity == {1: "low", 2: "low", 3: "medium", 4: "high", 5: "high"}[record.severity_level]


def clock_now(h: Harness) -> datetime:
    return h.sql("SELECT clock_timestamp()")[0][0]


@PROPERTY
@given(draw=event_values(), miner_uid=uids, form=forms)
def test_store_crime_event(h, draw, miner_uid, form):
    event = build_event(h, draw)
    before = clock_now(h)
    event_id = h.outcome(lambda: h.db.store_crime_event(send_as(event, form), miner_uid), unknown=names_unknown(draw))
    if event_id is REFUSED or event_id is MISSING:
        return
    # An event equal to one stored before (same key) returns that one: it was stamped when first stored.
    window = h.stored_at.setdefault(event_id, (before, clock_now(h)))
    check_event(h.run(h.db.get_event(event_id)), expected_event(h, event), miner_uid, window)


@PROPERTY
@given(draws=st.lists(event_values(), max_size=3), miner_uid=uids)
def test_store_crime_events(h, draws, miner_uid):
    events = [build_event(h, d) for d in draws]
    before_count = h.sql("SELECT count(*) FROM crime_events")[0][0]
    before = clock_now(h)
    stored = h.outcome(lambda: h.db.store_crime_events(events, miner_uid), unknown=any(map(names_unknown, draws)))
    after_count = h.sql("SELECT count(*) FROM crime_events")[0][0]
    if stored is REFUSED or stored is MISSING:
        assert after_count == before_count  # a refused batch stores none of it
        return
    assert stored == after_count - before_count <= len(events)  # the new ones: repeats are stored once
    after = clock_now(h)
    rows = h.sql("SELECT event_id, created_at >= %s FROM crime_events WHERE miner_uid = %s", (before, miner_uid))
    records = [(h.run(h.db.get_event(event_id)), new) for event_id, new in rows]
    matched = set()
    for sent in events:  # a batch keeps no order: each sent event matches a record, new or stored before
        want = expected_event(h, sent)
        for record, new in records:
            try:
                check_event(record, want, miner_uid, (before, after) if new else (EPOCH, before))
            except AssertionError:
                continue
            matched.add((record.event_id, new))
            break
        else:
            raise AssertionError(f"no stored record reads back as {sent!r}")
    assert sum(new for _, new in matched) == stored


# -- verification and geocoding of stored events ---------------------------------------------------------------------

def stored_event(h: Harness, **over: Any) -> uuid.UUID:
    event = {"event_type": "theft", "confidence_score": 0.5, "severity": 3, "geotag": {"lat": 40.0, "lng": -74.0},
             "timestamp": datetime.now(timezone.utc) - timedelta(hours=1)} | over
    return h.run(h.db.store_crime_event(event, 1))


event_refs = mostly(st.sampled_from(["ours", "ours-text"]),
                    st.sampled_from(["unknown", "", "42", "not-a-uuid", "a\x00", "\ud800", 42, None, 1.5,
                                     uuid.UUID(int=0).bytes, str(uuid.UUID(int=0)) + "x"]))


def event_ref(h: Harness, how: Any, **over: Any) -> tuple[Any, uuid.UUID]:
    event_id = stored_event(h, **over)
    if isinstance(how, str) and how in ("ours", "ours-text", "unknown"):
        return {"ours": event_id, "ours-text": str(event_id), "unknown": uuid.uuid4()}[how], event_id
    return how, event_id


@PROPERTY
@given(how=event_refs, validator_uid=uids, status=statuses, score=st.one_of(st.none(), scores))
def test_update_event_verification(h, how, validator_uid, status, score):
    given_as, event_id = event_ref(h, how)
    record = h.outcome(lambda: h.db.update_event_verification(given_as, validator_uid, status, score),
                       unknown=how == "unknown")
    if record is REFUSED or record is MISSING:
        return
    for stored in (record, h.run(h.db.get_event(event_id))):
        assert stored.event_id == event_id and stored.verification_status == status
        assert stored.validator_uid == validator_uid and stored.verified_at is not None
        assert stored.verification_score == (None if score is None else real(score))


@PROPERTY
@given(how=event_refs, latitude=latitudes, longitude=longitudes, located=st.booleans())
def test_locate_event(h, how, latitude, longitude, located):
    over = {} if located else {"geotag": None, "location_text": "Main Street"}
    given_as, event_id = event_ref(h, how, **over)
    record = h.outcome(lambda: h.db.locate_event(given_as, latitude, longitude), unknown=how == "unknown")
    if record is REFUSED or record is MISSING:
        return
    for stored in (record, h.run(h.db.get_event(event_id))):
        assert stored.event_id == event_id and stored.location_source == "geocoded"
        assert (stored.latitude, stored.longitude) == (real(latitude), real(longitude))
        assert stored.geotag == {"lat": real(latitude), "lng": real(longitude)}


# -- miners, validators, consensus -----------------------------------------------------------------------------------

score_names = ("integrity", "clustering", "novelty", "quality")
round_scores = st.fixed_dictionaries(
    {name: numbers(0, 1, one_in=20) for name in score_names},
    optional={"total": scores, "final": mostly(st.just("same"), scores), "extra": rarely(["accuracy", "Integrity", 5,
                                                                                        "\ud800"]),
              "drop": rarely(list(score_names))},
).map(lambda d: _round_scores(d))
#: Uids no other example uses ("fresh": a new one each time), or not uids at all.
fresh_uids = mostly(st.just("fresh"), st.sampled_from([-1, 2**31, 10**400, True, 1.0, "7", None]))


def _round_scores(draw: dict) -> dict:
    scores_ = {k: v for k, v in draw.items() if k not in ("extra", "drop")}
    if scores_.get("final") == "same":  # total and final both given: the same overall score, or not
        scores_["final"] = scores_.get("total", 0.5)
    if draw.get("extra") is not None:
        scores_[draw["extra"]] = 0.5
    if draw.get("drop") is not None:
        scores_.pop(draw["drop"])
    return scores_


def overall(scores_: dict) -> float:
    """A round's overall score: ``total`` (or ``final``) when given, else the mean of the four."""
    for key in ("total", "final"):
        if key in scores_:
            return real(scores_[key])
    return sum(real(scores_[k]) for k in score_names) / 4


hotkeys = mostly(st.one_of(st.just("hotkey_string"), plain_text), st.one_of(
    st.sampled_from(["", " ", "h" * 129, "hk\x00", "hk\ud800", 7, None, b"hk"]), wild_text))


@PROPERTY
@given(uid=fresh_uids, hotkey=hotkeys, rounds=st.lists(round_scores, min_size=1, max_size=3),
       new_hotkey=st.booleans())
def test_update_miner_performance(h, uid, hotkey, rounds, new_hotkey):
    miner_uid = unique() if uid == "fresh" else uid
    kept: list[dict] = []  # the rounds of the current registration
    for i, scores_ in enumerate(rounds):
        key = f"{hotkey}-new" if new_hotkey and i == len(rounds) - 1 and i > 0 and isinstance(hotkey, str) else hotkey
        result = h.outcome(lambda key=key, scores_=scores_: h.db.update_miner_performance(miner_uid, key, scores_))
        if result is REFUSED:
            continue
        kept = [scores_] if key != hotkey or result.created or result.reregistered else kept + [scores_]
        stats = h.run(h.db.get_miner_stats(miner_uid))
        for stored in (result, stats):
            assert stored.miner_uid == miner_uid and stored.hotkey == key and stored.is_active
            assert [getattr(stored, f"{k}_score") for k in score_names] == [real(scores_[k]) for k in score_names]
            assert stored.overall_score == overall(scores_)
            assert stored.total_rounds == len(kept)
            assert stored.successful_rounds == sum(overall(s) >= 0.5 for s in kept)
            assert math.isclose(stored.avg_overall_score, sum(map(overall, kept)) / len(kept), abs_tol=1e-12)
            assert math.isclose(stored.total_score, sum(map(overall, kept)), abs_tol=1e-12)


consensus_scores = mostly(
    st.dictionaries(st.one_of(st.sampled_from(list(score_names) + ["final", "final_score", "accuracy"]), plain_text),
                    numbers(0, 1, one_in=20), min_size=1, max_size=5).filter(lambda d: all(len(k) <= 64 for k in d)),
    st.one_of(st.dictionaries(st.one_of(text_values(), st.integers(), st.just("k" * 65)), scores, max_size=3),
              st.sampled_from([{}, None, [0.5], "0.5", {f"s{i}": 0.5 for i in range(65)},
                               {"accuracy": deep(40)}, {"accuracy": {"nested": 0.5}}])),
)


def final_of(scores_: dict, final_score: Any) -> float:
    """A consensus record's final score: the argument, else ``final``, else ``final_score``, else the mean."""
    if final_score is not None:
        return real(final_score)
    for key in ("final", "final_score"):
        if key in scores_:
            return real(scores_[key])
    return min(1.0, max(0.0, sum(real(v) for v in scores_.values()) / len(scores_)))


@PROPERTY
@given(how=event_refs, validator_uid=uids, scores_=consensus_scores,
       round_number=mostly(st.just("fresh"), st.sampled_from([-1, 2**31, 1.0, True, "3", None, 10**400])),
       final_score=st.one_of(st.none(), scores))
def test_store_consensus_record(h, how, validator_uid, scores_, round_number, final_score):
    if not hasattr(h, "judged"):
        h.judged = stored_event(h)
    event_id = h.judged
    given_as = {"ours": event_id, "ours-text": str(event_id), "unknown": uuid.uuid4()}.get(how, how) \
        if isinstance(how, str) else how
    round_ = unique() if round_number == "fresh" else round_number
    record_id = h.outcome(lambda: h.db.store_consensus_record(given_as, validator_uid, scores_, round_,
                                                              final_score=final_score), unknown=how == "unknown")
    if record_id is REFUSED or record_id is MISSING:
        return
    (row,) = h.sql("SELECT event_id, validator_uid, consensus_round, scores, final_score, integrity_score, "
                   "clustering_score, novelty_score, quality_score FROM consensus_records WHERE record_id = %s",
                   (record_id,))
    assert row[:3] == (event_id, validator_uid, round_)
    assert row[3] == {k: real(v) for k, v in scores_.items()} and same_json(row[3], {k: real(v) for k, v in
                                                                                     scores_.items()})
    assert row[4] == final_of(scores_, final_score)
    assert list(row[5:]) == [None if k not in scores_ else real(scores_[k]) for k in score_names]
    again = h.run(h.db.store_consensus_record(given_as, validator_uid, scores_, round_, final_score=final_score))
    assert again == record_id  # the same record again: the same id


@PROPERTY
@given(uid=fresh_uids, hotkey=hotkeys,
       agreed=mostly(st.booleans(), st.sampled_from([1, 0, None, "yes"])), score_given=scores,
       stake=st.one_of(st.none(), mostly(numbers(0, 1e15), st.sampled_from([-1, 1e16, 10**400]))),
       at=st.one_of(st.none(), times))
def test_record_validation(h, uid, hotkey, agreed, score_given, stake, at):
    """Validator performance: the repository's write (the facade has none), on the facade's pool."""
    from luminar_store.repositories.validators import ValidatorRepository

    validator_uid = unique() if uid == "fresh" else uid
    validators = ValidatorRepository(h.db.database.connection)
    result = h.outcome(lambda: validators.record_validation(validator_uid, hotkey, agreed=agreed,
                                                            score_given=score_given, stake=stake, at=at))
    if result is REFUSED:
        return
    stored = h.run(validators.stats(validator_uid))
    for record in (result, stored):
        assert record.validator_uid == validator_uid and record.hotkey == hotkey and record.is_active
        assert record.avg_score_given == real(score_given) and record.agreements == (1 if agreed else 0)
        assert record.stake_amount == (0.0 if stake is None else real(stake))
        if at is not None:
            assert record.last_activity == when(at)


def test_a_tiny_score_reads_back_in_its_column(h):
    event_id = stored_event(h)
    record_id = h.run(h.db.store_consensus_record(event_id, 1, {"clustering": 2.2250738585072014e-308}, unique()))
    assert h.sql("SELECT clustering_score FROM consensus_records WHERE record_id = %s",
                 (record_id,)) == [(2.2250738585072014e-308,)]
