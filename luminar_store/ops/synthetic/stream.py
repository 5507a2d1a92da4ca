"""The row stream of one run: incidents become raw reports, processed incidents become crime events, and
validators' scores of those events become consensus records.

An *incident* is one thing that happened: 1-8 people report it within minutes and metres of each other. A run is
cut into blocks of ``BLOCK`` reports, each drawn from its own generator seeded by (seed, run, block): any process
can make any block, and the rows never depend on how many processes wrote them. A block holds whole incidents
(the last one of the run may lose reports), their events and the events' consensus records, plus a ``Tally`` of
what they add to the miners', validators' and clusters' records. Nothing here calls faker: every choice is a
seeded ``random.Random`` pick from the world and the catalogue, so a million reports take seconds.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from itertools import accumulate

from luminar_store.ops.synthetic.catalog import (
    CLOSINGS,
    CRIME_TYPES,
    DIRECTIONS,
    HOURLY_PROFILES,
    ITEMS,
    REPORTER_KINDS,
    SUSPECTS,
    TEMPLATES,
    VEHICLES,
    time_phrase,
)
from luminar_store.ops.synthetic.world import Hotspot, World, offset, pick

__all__ = ["BLOCK", "REPORT_COLUMNS", "EVENT_COLUMNS", "CONSENSUS_COLUMNS", "RunStream", "Block", "Tally",
           "ClusterStats"]

# (column, PostgreSQL type) in COPY order; types drive the binary COPY.
REPORT_COLUMNS = (
    ("report_id", "uuid"), ("external_id", "text"), ("user_id", "text"), ("crime_type", "text"),
    ("text_description", "text"), ("latitude", "float8"), ("longitude", "float8"), ("timestamp", "timestamptz"),
    ("media_urls", "text[]"), ("media_hashes", "text[]"), ("metadata", "jsonb"), ("status", "text"),
    ("processing_attempts", "int4"), ("claimed_by", "int4"), ("claimed_at", "timestamptz"),
    ("processed_at", "timestamptz"), ("error_message", "text"), ("created_at", "timestamptz"),
    ("updated_at", "timestamptz"),
)
EVENT_COLUMNS = (
    ("event_id", "uuid"), ("miner_uid", "int4"), ("event_type", "text"), ("title", "text"), ("summary", "text"),
    ("latitude", "float8"), ("longitude", "float8"), ("timestamp", "timestamptz"), ("severity_level", "int2"),
    ("confidence_score", "float8"), ("related_reports", "uuid[]"), ("cluster_id", "uuid"),
    ("verification_status", "text"), ("validator_uid", "int4"), ("verification_score", "float8"),
    ("verified_at", "timestamptz"), ("metadata", "jsonb"), ("created_at", "timestamptz"),
    ("updated_at", "timestamptz"), ("risk_score", "numeric"),
)
CONSENSUS_COLUMNS = (
    ("record_id", "uuid"), ("event_id", "uuid"), ("validator_uid", "int4"), ("consensus_round", "int4"),
    ("scores", "jsonb"), ("final_score", "float8"), ("created_at", "timestamptz"),
)

BLOCK = 1_000  # reports per independently seeded block
#: The share of incidents that happen at the world's rising hotspot (``World.rising``), on days drawn with a density
#: growing with the square of the time since the start of the window (weekly counts rise from about zero, faster and
#: faster): the planted zone whose trend the risk zone analysis finds increasing.
RISING_SHARE = 0.08
TEMPO_SECONDS = 72 * 60  # one scoring round: 360 chain blocks of 12 s
_REPORTS_PER_INCIDENT = tuple(accumulate((50, 24, 12, 6, 4, 2, 1, 1)))  # 1..8 reports
_MEDIA_COUNT = tuple(accumulate((45, 30, 15, 10)))  # 0..3 photos or videos
_RISK = tuple(Decimal(f"{i / 100:.2f}") for i in range(101))
_REJECTIONS = ("duplicate of an earlier report", "not enough detail to place the incident",
               "media does not match the description", "reported location is implausible for the description")
_FAILURES = ("media could not be downloaded (HTTP 404)", "media download timed out after 30 s")
_APPS = ('"android 2.4.1"', '"android 2.5.0"', '"ios 2.4.1"', '"ios 2.5.0"', '"android 2.3.7"', '"web 2.5.0"')
_CRIMES = CRIME_TYPES
_PROFILE_CUM = {name: tuple(accumulate(w)) for name, w in HOURLY_PROFILES.items()}
_VICTIM_CUM = {c.slug: tuple(accumulate(c.victims)) for c in _CRIMES}
_TIME_PHRASES = tuple(tuple(time_phrase(h, m) for m in range(60)) for h in range(24))


_V4_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_V4_SET = (0x8000 << 48) | (4 << 76)
_new = object.__new__
_set = object.__setattr__
_SAFE = uuid.SafeUUID.unknown


def uuid4_of(bits: int) -> uuid.UUID:
    """``uuid.UUID(int=bits, version=4)``, the same value, made without its argument checks (a third of the time;
    a report, its event and their consensus records take about three): ``bits`` is a 128-bit random number."""
    made = _new(uuid.UUID)
    _set(made, "int", bits & _V4_CLEAR | _V4_SET)
    _set(made, "is_safe", _SAFE)
    return made


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _clamp(x: float, low: float = 0.0, high: float = 1.0) -> float:
    return low if x < low else high if x > high else x


class ClusterStats:
    """What a run's events say about one hotspot's cluster: count, severities, types and time span."""

    __slots__ = ("count", "severity_sum", "first", "last", "types")

    def __init__(self) -> None:
        self.count = 0
        self.severity_sum = 0
        self.first = math.inf
        self.last = -math.inf
        self.types: dict[str, int] = {}

    def add(self, crime: str, severity: int, ts: float) -> None:
        self.count += 1
        self.severity_sum += severity
        self.first = min(self.first, ts)
        self.last = max(self.last, ts)
        self.types[crime] = self.types.get(crime, 0) + 1

    def merge(self, other: ClusterStats) -> None:
        self.count += other.count
        self.severity_sum += other.severity_sum
        self.first = min(self.first, other.first)
        self.last = max(self.last, other.last)
        for crime, n in other.types.items():
            self.types[crime] = self.types.get(crime, 0) + n


@dataclass
class Tally:
    """What rows add to other records (plain dicts, so that it crosses process boundaries):
    ``miner_rounds[(miner_uid, round)] = [sum of event scores, events]``,
    ``validators[uid] = [records, agreements, sum of scores]``, ``clusters[hotspot key] = ClusterStats``."""

    miner_rounds: dict[tuple[int, int], list[float]] = field(default_factory=dict)
    validators: dict[int, list[float]] = field(default_factory=dict)
    clusters: dict[str, ClusterStats] = field(default_factory=dict)

    def merge(self, other: Tally) -> None:
        for key, (total, n) in other.miner_rounds.items():
            mine = self.miner_rounds.setdefault(key, [0.0, 0])
            mine[0] += total
            mine[1] += n
        for uid, (records, agreements, scores) in other.validators.items():
            mine = self.validators.setdefault(uid, [0, 0, 0.0])
            mine[0] += records
            mine[1] += agreements
            mine[2] += scores
        for key, stats in other.clusters.items():
            self.clusters.setdefault(key, ClusterStats()).merge(stats)


@dataclass
class Block:
    """The rows of one block, in COPY column order, and their tally."""

    index: int
    reports: list[tuple]
    events: list[tuple]
    consensus: list[tuple]
    tally: Tally


class RunStream:
    """Rows of run ``run`` of ``world``: ``total`` reports over the ``days`` days before ``now`` (epoch seconds).

    ``external_id`` is ``syn-<seed>-r<run>-<n>``; every id is drawn from the block's own generator, so a run is
    the same on every machine and a later run never reuses an id.
    """

    def __init__(self, world: World, *, run: int, total: int, days: int, now: float) -> None:
        self.world = world
        self.run = run
        self.total = total
        self.days = days
        self.now = now
        self.start = now - days * 86400
        self.rng = random.Random()
        self.emitted = 0
        self.events: list[tuple] = []
        self.consensus: list[tuple] = []
        self.tally = Tally()
        self._tag = f"syn-{world.seed}-r{run}-"
        self._run_json = json.dumps(f"{world.seed}-r{run}")
        self._reporters = max(50, total // 3)
        self._active_validators = [v for v in world.validators if v.active]
        self._places = [self._place_names(plan) for plan in world.cities]
        self._cities_json = [(json.dumps(p.city.name, ensure_ascii=False), json.dumps(p.city.country),
                              json.dumps(p.city.continent)) for p in world.cities]

    @property
    def blocks(self) -> int:
        """How many blocks the run has."""
        return -(-self.total // BLOCK)

    def block(self, index: int) -> Block:
        """Block ``index`` (0 <= index < ``blocks``): reports ``index * BLOCK`` up to the next block or the end."""
        self.rng = random.Random(f"luminar-synthetic-run:{self.world.seed}:{self.run}:{index}")
        self.emitted = index * BLOCK
        end = min(self.total, self.emitted + BLOCK)
        self.events, self.consensus, self.tally = [], [], Tally()
        rows: list[tuple] = []
        while self.emitted < end:
            made = self._incident(min(8, end - self.emitted))
            self.emitted += len(made)
            rows.extend(made)
        return Block(index, rows, self.events, self.consensus, self.tally)

    @staticmethod
    def _place_names(plan) -> list[tuple[str, str, float, float]]:
        """Street-level places of a city for reports outside hotspots: (name, its JSON, district lat, lng)."""
        out = []
        for district, lat, lng in plan.district_centres:
            for street in plan.streets[:12]:
                name = f"{street}, {district}"
                out.append((name, json.dumps(name, ensure_ascii=False), lat, lng))
        return out

    def _reporter(self, index: int) -> int:
        # An odd multiplier is a bijection modulo 2**40: distinct indexes give distinct ids within a seed.
        return (index * 0x9E3779B97F4A7C15 + self.world.seed * 0xBF58476D1CE4E5B9 + 0x2545F491) & 0xFFFFFFFFFF

    # -- one incident ----------------------------------------------------------------------------------------------
    def _incident(self, room: int) -> list[tuple]:
        rng = self.rng
        r = rng.random
        rising = self.world.rising if r() < RISING_SHARE else None
        ci = pick(r(), self.world.city_cum) if rising is None else rising.city_index
        plan = self.world.cities[ci]
        city = plan.city
        hotspot: Hotspot | None = None
        if r() < 0.6 or rising is not None:  # concentrated: tens of metres around a hotspot
            hotspot = plan.hotspots[pick(r(), plan.hotspot_cum)] if rising is None else rising
            lat, lng = offset(hotspot.lat, hotspot.lng, rng.gauss(0, hotspot.radius_m), rng.gauss(0, hotspot.radius_m))
            place, place_json = hotspot.name, json.dumps(hotspot.name, ensure_ascii=False)
            crime = _CRIMES[pick(r(), hotspot.crime_cum)]
        else:  # the city-wide spread around a district
            place, place_json, dlat, dlng = self._places[ci][int(r() * len(self._places[ci]))]
            sigma = city.spread_km * 300
            lat, lng = offset(dlat, dlng, rng.gauss(0, sigma), rng.gauss(0, sigma))
            crime = _CRIMES[pick(r(), self.world.crime_cum)]
        ts = self._incident_time(crime.profile, city.utc_offset, rising=rising is not None)
        n = min(room, pick(r(), _REPORTS_PER_INCIDENT) + 1 + (2 if crime.slug == "shooting" else 0))
        weapon = rng.choice(crime.weapons) if crime.weapons and r() < crime.weapon_rate else None
        victims = pick(r(), _VICTIM_CUM[crime.slug])
        local = ts + city.utc_offset * 3600
        hour, minute = int(local // 3600 % 24), int(local // 60 % 60)
        city_json, country_json, continent_json = self._cities_json[ci]
        # Few keys on purpose: every key and value is an entry of the GIN index on metadata (a quarter of the
        # reports' COPY time). The run is in external_id, the country in the events' metadata.
        armed = f'true, "weapon": {json.dumps(weapon)}' if weapon else "false"
        common = (f'{{"source": "synthetic", "city": {city_json}, "location_name": {place_json}, '
                  f'"weapon_involved": {armed}, "victims": {victims}')
        slots = {"place": place, "when": _TIME_PHRASES[hour][minute], "weapon": weapon or "knife",
                 "item": rng.choice(ITEMS), "vehicle": rng.choice(VEHICLES),
                 "suspect": rng.choice(SUSPECTS), "direction": rng.choice(DIRECTIONS)}
        templates = TEMPLATES[crime.slug]

        ids, rows, lats, lngs, created, media_seen = [], [], [], [], [], False
        for i in range(n):
            rid = uuid4_of(rng.getrandbits(128))
            rlat, rlng = offset(lat, lng, rng.gauss(0, 12), rng.gauss(0, 12)) if i else (lat, lng)
            rts = min(self.now, ts + (r() * 600 if i == 0 else 120 + r() * 2400))
            kind = ("victim" if victims and r() < 0.7 else "witness") if i == 0 else \
                REPORTER_KINDS[1 + int(r() * (len(REPORTER_KINDS) - 1))]
            text = templates[int(r() * len(templates))].format(**slots)
            text = text[0].upper() + text[1:] + CLOSINGS[int(r() * len(CLOSINGS))]
            urls, hashes = [], []
            for j in range(pick(r(), _MEDIA_COUNT)):
                media = f"{rid.hex}/{j}.{'mp4' if r() < 0.15 else 'jpg'}"
                urls.append(f"https://media.luminar.network/reports/{media}")
                hashes.append(hashlib.sha256(f"luminar-synthetic-media:{media}".encode()).hexdigest())
            media_seen = media_seen or bool(urls)
            metadata = (f'{common}, "reporter_kind": "{kind}", "app": {_APPS[int(r() * len(_APPS))]}, '
                        f'"gps_accuracy_m": {int(4 + r() * 30)}}}')
            reporter = self._reporter(int(self._reporters * r() ** 2))
            created_at = min(self.now, rts + 1 + r() * 90)
            ids.append(rid)
            lats.append(rlat)
            lngs.append(rlng)
            created.append(created_at)
            rows.append([rid, f"{self._tag}{self.emitted + i}", f"usr_{reporter:010x}",
                         crime.slug if r() > 0.05 else None, text, rlat, rlng, _dt(rts), urls, hashes, metadata,
                         created_at])
        # Miners need a few minutes to pick reports up; some incidents never become events.
        if self.now - ts > 900 and r() < 0.82:
            done = self._event(crime, hotspot, place, place_json, city, ci, ids, lats, lngs, ts, max(created),
                               weapon, victims, media_seen, slots)
            return [self._processed(row, *done) for row in rows]
        return [self._unprocessed(row) for row in rows]

    def _incident_time(self, profile: str, utc_offset: float, *, rising: bool = False) -> float:
        """A time in the window with the crime's rhythm of the day; ``rising``: on a day drawn with a density
        growing with the square of the time since the window's start."""
        r = self.rng.random
        cum = _PROFILE_CUM[profile]
        for _ in range(8):
            day = int((1.0 - r() ** (1 / 3)) * self.days) if rising else int(r() * self.days)  # days before today
            local_now = self.now + utc_offset * 3600
            midnight = local_now - local_now % 86400 - day * 86400
            ts = midnight + pick(r(), cum) * 3600 + r() * 3600 - utc_offset * 3600
            if self.start <= ts <= self.now:
                return ts
        return self.start + r() * (self.now - self.start)

    def _processed(self, row: list, miner_uid: int, event_created: float) -> tuple:
        claimed = event_created - 5 - self.rng.random() * 25
        created_at = row.pop()
        claimed = max(claimed, created_at)
        return (*row, "processed", 1, miner_uid, _dt(claimed), _dt(event_created), None, _dt(created_at),
                _dt(event_created))

    def _unprocessed(self, row: list) -> tuple:
        r = self.rng.random
        created_at = row.pop()
        age = self.now - created_at
        if age < 900:
            if r() < 0.3:
                miner = self.world.miners[pick(r(), self.world.miner_cum)].uid
                claimed = min(self.now, created_at + r() * 60)
                return (*row, "processing", 1, miner, _dt(claimed), None, None, _dt(created_at), _dt(claimed))
            return (*row, "pending", 0, None, None, None, None, _dt(created_at), _dt(created_at))
        x = r()
        if x < 0.55:
            done = min(self.now, created_at + 60 + r() * 1800)
            miner = self.world.miners[pick(r(), self.world.miner_cum)].uid
            return (*row, "rejected", 1, miner, _dt(done - 20), _dt(done), _REJECTIONS[int(r() * 4)],
                    _dt(created_at), _dt(done))
        if x < 0.65:
            done = min(self.now, created_at + 300 + r() * 3600)
            return (*row, "failed", 3, None, None, None, _FAILURES[int(r() * 2)], _dt(created_at), _dt(done))
        return (*row, "pending", 0, None, None, None, None, _dt(created_at), _dt(created_at))

    # -- the event of an incident, and the validators' scores of it --------------------------------------------------
    def _event(self, crime, hotspot, place, place_json, city, ci, ids, lats, lngs, ts, last_created, weapon,
               victims, media_seen, slots) -> tuple[int, float]:
        rng = self.rng
        r = rng.random
        miner = self.world.miners[pick(r(), self.world.miner_cum)]
        n = len(ids)
        created = min(self.now, last_created + 30 + r() * 870)
        severity = max(1, min(5, crime.severity + (1 if weapon else 0) + (1 if victims >= 2 else 0)))
        confidence = round(_clamp(0.42 + 0.11 * min(n, 4) + (0.05 if media_seen else 0) + rng.gauss(0, 0.05),
                                  0.05, 0.99), 4)
        truth = _clamp(miner.skill + rng.gauss(0, 0.1) + 0.03 * min(n, 4) - 0.05)
        event_id = uuid4_of(rng.getrandbits(128))
        status, validator_uid, score, verified_at = "pending", None, None, None
        if self.now - created > 600 and self._active_validators:
            status, validator_uid, score, verified_at = self._score(event_id, miner.uid, truth, created)
        local = ts + city.utc_offset * 3600
        first = f"{int(local // 3600 % 24):02d}:{int(local // 60 % 60):02d}"
        summary = (f"{n} report{'s' if n > 1 else ''} of {crime.label.lower()} at {place}, {city.name}, from "
                   f"{first} local time." + (f" A {weapon} was involved." if weapon else "")
                   + (f" {victims} victim{'s' if victims > 1 else ''}." if victims else "")
                   + (f" Suspect described as {slots['suspect']}." if crime.slug not in ("vandalism", "fraud") else ""))
        city_json, country_json, continent_json = self._cities_json[ci]
        metadata = (f'{{"source": "synthetic", "synthetic_run": {self._run_json}, "city": {city_json}, '
                    f'"country": {country_json}, "continent": {continent_json}, "location_name": {place_json}, '
                    f'"report_count": {n}, "weapon_involved": {"true" if weapon else "false"}, '
                    f'"victims": {victims}, "hotspot": {json.dumps(hotspot.key) if hotspot else "null"}}}')
        risk = _RISK[int(round(_clamp(severity / 5 * 0.7 + confidence * 0.3 + rng.gauss(0, 0.03)) * 100))]
        cluster_id = hotspot.cluster_id if hotspot is not None else None
        self.events.append((
            event_id, miner.uid, crime.slug, f"{crime.label} near {place}", summary,
            sum(lats) / n, sum(lngs) / n, _dt(ts), severity, confidence, ids, cluster_id, status, validator_uid,
            score, _dt(verified_at) if verified_at else None, metadata, _dt(created),
            _dt(verified_at or created), risk))
        if hotspot is not None and cluster_id is not None:
            self.tally.clusters.setdefault(hotspot.key, ClusterStats()).add(crime.slug, severity, ts)
        return miner.uid, created

    def _score(self, event_id: uuid.UUID, miner_uid: int, truth: float, created: float):
        rng = self.rng
        r = rng.random
        k = min(len(self._active_validators), 2 + int(r() * 3))
        judges = rng.sample(self._active_validators, k)
        verified_at = min(self.now, created + 120 + r() * 3600)
        round_number = int(verified_at // TEMPO_SECONDS)
        finals, records = [], []
        for v in judges:
            base = truth + v.skill + rng.gauss(0, v.noise)
            integrity, clustering = _clamp(base + rng.gauss(0, 0.04)), _clamp(base + rng.gauss(0, 0.05))
            novelty, quality = _clamp(base - 0.05 + rng.gauss(0, 0.08)), _clamp(base + rng.gauss(0, 0.04))
            final = round(0.3 * integrity + 0.3 * clustering + 0.2 * novelty + 0.2 * quality, 4)
            finals.append(final)
            scores = (f'{{"integrity": {integrity:.3f}, "clustering": {clustering:.3f}, "novelty": {novelty:.3f}, '
                      f'"quality": {quality:.3f}}}')
            at = created + (verified_at - created) * r()
            records.append([uuid4_of(rng.getrandbits(128)), event_id, v.uid, round_number, scores,
                            final, _dt(at)])
        mean = sum(finals) / k
        for v, final, record in zip(judges, finals, records, strict=True):
            tally = self.tally.validators.setdefault(v.uid, [0, 0, 0.0])
            tally[0] += 1
            tally[1] += abs(final - mean) <= 0.1
            tally[2] += final
            self.consensus.append(tuple(record))
        rounds = self.tally.miner_rounds.setdefault((miner_uid, round_number), [0.0, 0])
        rounds[0] += mean
        rounds[1] += 1
        status = "verified" if mean >= 0.6 else "disputed" if mean >= 0.42 else "rejected"
        lead = max(judges, key=lambda v: v.stake)
        return status, lead.uid, round(mean, 4), verified_at
