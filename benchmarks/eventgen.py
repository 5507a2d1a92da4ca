"""Realistic crime events for the benchmark, streamed from one seed (a generator: nothing is materialized).

The world: a dozen large cities, each with a handful of tight hotspots (a few hundred metres) that draw most of its
crime and a broad spread over the whole urban area. Timestamps cover the last 30 days with a recent share (about
12 % in the last 24 hours, 40 % in the last 7 days); about 35 % of events are verified; severities 1..5 weighted
towards the low end; metadata a small JSON object. Events come in batches, one miner per batch, as miners store
them.

Events are the nodes' protocol mappings (``{"event_type": ..., "geotag": {"lat": .., "lng": ..}, ...}``), the input
of ``db.store_crime_event`` and of the bulk store. ``as_row()`` is the minimal mapping a hand-written writer does
(no validation), used by the raw baselines.

Example::

    world = World(seed=7)
    for miner_uid, events in world.batches(1_000_000, batch_size=50_000):
        ...  # events is an iterator of mappings
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import uuid
from collections.abc import Iterator
from itertools import accumulate

__all__ = ["World", "as_row"]

_METRES_PER_DEGREE = 111_320.0

# name, latitude, longitude, weight (share of the events), spread (metres, one standard deviation)
_CITIES = [
    ("new_york", 40.7128, -74.0060, 14, 9000),
    ("london", 51.5074, -0.1278, 12, 8000),
    ("lagos", 6.5244, 3.3792, 11, 7000),
    ("sao_paulo", -23.5505, -46.6333, 11, 9000),
    ("mumbai", 19.0760, 72.8777, 10, 6000),
    ("mexico_city", 19.4326, -99.1332, 9, 8000),
    ("johannesburg", -26.2041, 28.0473, 8, 7000),
    ("chicago", 41.8781, -87.6298, 7, 7000),
    ("nairobi", -1.2921, 36.8219, 6, 5000),
    ("manila", 14.5995, 120.9842, 5, 5000),
    ("berlin", 52.5200, 13.4050, 4, 6000),
    ("los_angeles", 34.0522, -118.2437, 3, 12000),
]
_CRIME_TYPES = [("theft", 26), ("burglary", 12), ("robbery", 10), ("assault", 11), ("vandalism", 9),
                ("vehicle_theft", 8), ("fraud", 7), ("drug_activity", 6), ("harassment", 6), ("shooting", 2),
                ("suspicious_activity", 3)]
_SEVERITY = [(1, 25), (2, 30), (3, 25), (4, 14), (5, 6)]
_STATUS = [("verified", 35), ("pending", 45), ("disputed", 12), ("rejected", 8)]
# (share, oldest age in hours, youngest age in hours)
_AGES = [(12, 24.0, 0.02), (28, 24.0 * 7, 24.0), (60, 24.0 * 30, 24.0 * 7)]
_PLACES = ["station", "market", "park", "high street", "bus terminal", "shopping centre", "parking lot",
           "residential block", "nightclub strip", "school gate"]
_SOURCES = ["mobile_app", "web_form", "hotline", "partner_feed"]
_HOTSPOTS_PER_CITY = 8
_HOTSPOT_SHARE = 0.6

def _cumulative(pairs: list[tuple[object, int]]) -> tuple[list[object], list[float]]:
    values = [v for v, _ in pairs]
    total = float(sum(w for _, w in pairs))
    return values, [c / total for c in accumulate(w for _, w in pairs)]


class World:
    """The cities and hotspots of one seed, and the event streams drawn from them."""

    def __init__(self, seed: int = 7, *, now: dt.datetime | None = None) -> None:
        self.seed = seed
        # Ten seconds back: every timestamp is safely in the past for the store's "not in the future" check.
        self.now = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(seconds=10)
        rng = random.Random(seed)
        self.cities: list[tuple[str, float, float, float, float]] = []
        self.hotspots: list[list[tuple[float, float, float]]] = []
        for name, lat, lng, _, spread in _CITIES:
            cos = math.cos(math.radians(lat))
            self.cities.append((name, lat, lng, spread, cos))
            spots = []
            for _ in range(_HOTSPOTS_PER_CITY):
                r = abs(rng.gauss(0.0, spread * 0.5))
                angle = rng.uniform(0.0, 2 * math.pi)
                spots.append((lat + r * math.sin(angle) / _METRES_PER_DEGREE,
                              lng + r * math.cos(angle) / (_METRES_PER_DEGREE * cos),
                              rng.uniform(150.0, 600.0)))
            self.hotspots.append(spots)
        self._city_cum = _cumulative([(i, c[3]) for i, c in enumerate(_CITIES)])[1]

    def query_points(self, count: int, *, seed: int | None = None) -> list[tuple[float, float]]:
        """``count`` points where people ask "what happened near here": hotspots, city centres, random streets."""
        rng = random.Random(self.seed * 7919 + 1 if seed is None else seed)
        points = []
        for i in range(count):
            city = rng.randrange(len(self.cities))
            _, lat, lng, spread, cos = self.cities[city]
            if i % 3 == 0:
                plat, plng, _ = rng.choice(self.hotspots[city])
            elif i % 3 == 1:
                plat, plng = lat, lng
            else:
                plat = lat + rng.gauss(0.0, spread) / _METRES_PER_DEGREE
                plng = lng + rng.gauss(0.0, spread) / (_METRES_PER_DEGREE * cos)
            points.append((plat, plng))
        return points

    def events(self, count: int, *, seed_offset: int = 0) -> Iterator[dict]:
        """``count`` protocol mappings, drawn lazily (about 5 µs each)."""
        rng = random.Random(self.seed * 1_000_003 + seed_offset)
        rand, gauss, uniform, randrange = rng.random, rng.gauss, rng.uniform, rng.randrange
        crime_types, crime_cum = _cumulative(_CRIME_TYPES)
        severities, severity_cum = _cumulative(_SEVERITY)
        statuses, status_cum = _cumulative(_STATUS)
        age_cum = _cumulative([(i, a[0]) for i, a in enumerate(_AGES)])[1]
        city_cum, cities, hotspots, now = self._city_cum, self.cities, self.hotspots, self.now
        timedelta = dt.timedelta

        def pick(values: list, cum: list[float]) -> object:
            x = rand()
            for value, edge in zip(values, cum, strict=True):
                if x <= edge:
                    return value
            return values[-1]

        for _ in range(count):
            x = rand()
            city = next(i for i, edge in enumerate(city_cum) if x <= edge) if x < 1.0 else len(cities) - 1
            name, clat, clng, spread, cos = cities[city]
            if rand() < _HOTSPOT_SHARE:
                clat, clng, sigma = hotspots[city][randrange(_HOTSPOTS_PER_CITY)]
            else:
                sigma = spread
            lat = clat + gauss(0.0, sigma) / _METRES_PER_DEGREE
            lng = clng + gauss(0.0, sigma) / (_METRES_PER_DEGREE * cos)
            x = rand()
            band = 0 if x <= age_cum[0] else (1 if x <= age_cum[1] else 2)
            _, oldest, youngest = _AGES[band]
            when = now - timedelta(hours=uniform(youngest, oldest))
            crime = pick(crime_types, crime_cum)
            severity = pick(severities, severity_cum)
            if crime == "shooting":
                severity = max(severity, 4)
            place = _PLACES[randrange(len(_PLACES))]
            reports = 1 + int(rand() * rand() * 12)
            yield {
                "event_type": crime,
                "title": f"{crime.replace('_', ' ').capitalize()} near the {place}",
                "summary": f"{reports} reports of {crime.replace('_', ' ')} near the {place} in "
                           f"{name.replace('_', ' ').title()}, clustered within {int(sigma)} m.",
                "geotag": {"lat": lat, "lng": lng},
                "timestamp": when,
                "severity": severity,
                "confidence_score": round(0.45 + 0.54 * rand(), 3),
                "verification_status": pick(statuses, status_cum),
                "metadata": {"source": _SOURCES[randrange(4)], "report_count": reports, "city": name,
                             "place": place, "weapon_involved": rand() < 0.1 + 0.15 * (severity - 1)},
            }

    def batches(self, count: int, *, batch_size: int = 50_000, miners: int = 64, first_uid: int = 12,
                seed_offset: int = 0) -> Iterator[tuple[int, Iterator[dict]]]:
        """``count`` events in batches of ``batch_size``, each batch from one miner (uids cycle over ``miners``);
        ``seed_offset`` draws another stream of the same world (growing a database without repeating its events).

        The batches share one stream: consume each batch before asking for the next.
        """
        stream = self.events(count, seed_offset=seed_offset)
        for i, start in enumerate(range(0, count, batch_size)):
            size = min(batch_size, count - start)
            yield first_uid + i % miners, _take(stream, size)


def _take(stream: Iterator[dict], size: int) -> Iterator[dict]:
    for _, item in zip(range(size), stream, strict=False):
        yield item


def as_row(event: dict, miner_uid: int, event_id: uuid.UUID | None = None, *, jsonb: type | None = None) -> tuple:
    """The row a hand-written writer makes from a protocol mapping (no checks), in the repository's column order:
    event_id, miner_uid, event_type, title, summary, latitude, longitude, timestamp, severity_level, confidence_score,
    related_reports, cluster_id, verification_status, risk_score, metadata, then the text-flow columns of a located
    event with its own time: location_text, time_info, entities, time_end, timestamp_source, location_source,
    request_id, and idempotency_key NULL (a hand-written writer keys nothing: the key is the facade's work).

    ``jsonb`` wraps the metadata and entities (psycopg's ``Jsonb``); without it they are JSON strings (asyncpg).
    """
    g = event["geotag"]
    meta = event.get("metadata") or {}
    return (event_id, miner_uid, event["event_type"], event.get("title"), event.get("summary"), g["lat"], g["lng"],
            event["timestamp"], event["severity"], event["confidence_score"], [], None,
            event.get("verification_status", "pending"), None, jsonb(meta) if jsonb else json.dumps(meta),
            None, None, jsonb([]) if jsonb else "[]", None, "event", "event", None, None)
