"""The synthetic world of one seed: hotspots in real districts of the catalogue's cities, street names, miners and
validators with their skills. Built once per load with faker (a few hundred calls, never per report).

The world depends on the seed only, so a second run with the same seed reports from the same hotspots, and the
same uids keep the same hotkeys whatever the seed (miners and validators are upserted by uid).
"""

from __future__ import annotations

import hashlib
import math
import random
from bisect import bisect
from dataclasses import dataclass, field
from itertools import accumulate

from faker import Faker

from luminar_store.ops.synthetic.catalog import CITIES, CRIME_TYPES, STREET_WORDS, City

__all__ = ["Hotspot", "CityPlan", "Node", "World", "build_world", "hotkey", "pick", "offset"]

#: Miners and validators share one uid space, as on a subnet: validators first.
VALIDATOR_UIDS = range(0, 12)
MINER_UIDS = range(12, 76)
_METRES_PER_DEGREE = 111_320.0
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

# Which crimes a kind of place attracts (multipliers of the overall mix).
_PLACE_KINDS: dict[str, dict[str, float]] = {
    "nightlife strip": {"assault": 4, "robbery": 2, "harassment": 3, "drug_activity": 2, "vandalism": 1.5},
    "transit hub": {"theft": 3, "robbery": 1.5, "harassment": 2, "fraud": 2, "suspicious_activity": 2},
    "shopping street": {"theft": 4, "fraud": 2, "robbery": 1.2},
    "residential block": {"burglary": 4, "vehicle_theft": 3, "vandalism": 2, "shooting": 1.5},
    "market": {"theft": 3, "fraud": 3, "robbery": 1.5, "assault": 1.2},
    "park": {"drug_activity": 4, "robbery": 2, "harassment": 2, "assault": 1.5},
}
_PLACE_NAMES = {
    "nightlife strip": ("{street}", "{street} & {street2}", "bars on {street}"),
    "transit hub": ("{district} Station", "{street} bus terminal", "{district} metro entrance"),
    "shopping street": ("{street}", "{street} shopping arcade", "{district} Mall"),
    "residential block": ("{street}", "{street} estate", "flats on {street}"),
    "market": ("{district} Market", "market stalls on {street}"),
    "park": ("{district} Park", "{street} playground", "riverside path off {street}"),
}


@dataclass
class Hotspot:
    """A tight place (tens of metres) where crime concentrates. ``crime_cum`` are cumulative weights over
    ``CRIME_TYPES``; ``cluster_id`` is set by the loader for the run."""

    key: str
    city_index: int
    district: str
    kind: str
    name: str
    lat: float
    lng: float
    radius_m: float
    weight: float
    crime_cum: tuple[float, ...]
    cluster_id: object = None

    @property
    def signature(self) -> list[str]:
        """The crime types this kind of place attracts most, alphabetically."""
        boost = _PLACE_KINDS[self.kind]
        return sorted(sorted(boost, key=boost.__getitem__, reverse=True)[:3])


@dataclass
class CityPlan:
    """A city with its hotspots, district centres and street names, ready for fast weighted picks."""

    city: City
    hotspots: list[Hotspot]
    hotspot_cum: tuple[float, ...]
    district_centres: list[tuple[str, float, float]]
    streets: list[str]


@dataclass
class Node:
    """A miner or validator: uid, hotkey, skill (miners: how good its events are) or bias (validators: how far
    its scores sit from the truth), stake in TAO, and whether it is active."""

    uid: int
    hotkey: str
    skill: float
    stake: float
    active: bool
    registered_days_ago: float
    noise: float = 0.05


@dataclass
class World:
    """Everything a run draws from: cities with hotspots, the overall crime mix, miners and validators, and the
    hotspot planted as a rising zone."""

    seed: int
    cities: list[CityPlan]
    city_cum: tuple[float, ...]
    crime_cum: tuple[float, ...]
    miners: list[Node]
    validators: list[Node]
    miner_cum: tuple[float, ...] = field(default=())
    #: The planted rising zone: the hotspot whose incidents grow week by week (``stream.RISING_SHARE`` of all).
    rising: Hotspot | None = None

    @property
    def hotspots(self) -> list[Hotspot]:
        return [h for plan in self.cities for h in plan.hotspots]


def pick(rng_value: float, cum: tuple[float, ...]) -> int:
    """Index drawn from cumulative weights ``cum`` for a uniform ``rng_value`` in [0, 1)."""
    return bisect(cum, rng_value * cum[-1])


def offset(lat: float, lng: float, north_m: float, east_m: float) -> tuple[float, float]:
    """The point ``north_m`` metres north and ``east_m`` metres east of (lat, lng), clamped to valid ranges."""
    new_lat = lat + north_m / _METRES_PER_DEGREE
    new_lng = lng + east_m / (_METRES_PER_DEGREE * max(math.cos(math.radians(lat)), 0.01))
    new_lng = (new_lng + 180.0) % 360.0 - 180.0
    return max(-90.0, min(90.0, new_lat)), new_lng


def hotkey(role: str, uid: int) -> str:
    """A stable SS58-looking hotkey for a uid (48 characters starting with 5), the same for every seed."""
    digest = int.from_bytes(hashlib.sha256(f"luminar-synthetic:{role}:{uid}".encode()).digest(), "big")
    chars = []
    for _ in range(47):
        digest, rest = divmod(digest, 58)
        chars.append(_B58[rest])
    return "5" + "".join(chars)


def _street_names(city: City, fake: Faker | None, rng: random.Random, count: int) -> list[str]:
    if fake is not None:
        return list(dict.fromkeys(fake.street_name() for _ in range(count)))
    names = []
    for _ in range(count):
        names.append(city.street_pattern.format(n=rng.randint(1, 9), word=rng.choice(STREET_WORDS),
                                                district=rng.choice(city.districts)))
    return list(dict.fromkeys(names))


def _crime_cum(kind: str) -> tuple[float, ...]:
    boost = _PLACE_KINDS[kind]
    return tuple(accumulate(c.weight * boost.get(c.slug, 0.6) for c in CRIME_TYPES))


def build_world(seed: int) -> World:
    """The world of ``seed``: 4-8 hotspots per city around real districts, 40 street names per city, 64 miners
    and 12 validators. Deterministic for a seed (for a given faker version)."""
    rng = random.Random(f"luminar-synthetic-world:{seed}")
    fakers: dict[str, Faker] = {}
    plans: list[CityPlan] = []
    for ci, city in enumerate(CITIES):
        fake = None
        if city.locale:
            fake = fakers.get(city.locale)
            if fake is None:
                fake = fakers[city.locale] = Faker(city.locale)
            fake.seed_instance(rng.getrandbits(32))
        streets = _street_names(city, fake, rng, 40)
        sigma = city.spread_km * 1000 / 2
        centres = []
        for district in city.districts:
            lat, lng = offset(city.lat, city.lng, rng.gauss(0, sigma), rng.gauss(0, sigma))
            centres.append((district, lat, lng))
        hotspots = []
        for k in range(rng.randint(4, 8)):
            district, dlat, dlng = centres[rng.randrange(len(centres))]
            kind = rng.choice(tuple(_PLACE_KINDS))
            street, street2 = rng.sample(streets, 2)
            name = rng.choice(_PLACE_NAMES[kind]).format(street=street, street2=street2, district=district)
            lat, lng = offset(dlat, dlng, rng.gauss(0, 400), rng.gauss(0, 400))
            hotspots.append(Hotspot(
                key=f"{seed}:{ci}:{k}", city_index=ci, district=district, kind=kind, name=f"{name}, {district}",
                lat=lat, lng=lng, radius_m=rng.uniform(15, 60),
                # Zipf-like popularity: a few hotspots take most of the city's concentrated crime.
                weight=1.0 / (k + 1) ** 1.1, crime_cum=_crime_cum(kind)))
        plans.append(CityPlan(city=city, hotspots=hotspots, hotspot_cum=tuple(accumulate(h.weight for h in hotspots)),
                              district_centres=centres, streets=streets))

    miners = []
    for uid in MINER_UIDS:
        skill = min(0.97, max(0.2, rng.gauss(0.7, 0.13)))
        miners.append(Node(uid=uid, hotkey=hotkey("miner", uid), skill=skill, stake=round(rng.lognormvariate(3, 1), 3),
                           active=rng.random() < 0.9, registered_days_ago=rng.uniform(5, 240)))
    validators = []
    for uid in VALIDATOR_UIDS:
        validators.append(Node(uid=uid, hotkey=hotkey("validator", uid), skill=rng.gauss(0, 0.04),
                               stake=round(rng.lognormvariate(9.5, 1.0), 3), active=rng.random() < 0.92,
                               registered_days_ago=rng.uniform(30, 365), noise=rng.uniform(0.02, 0.08)))
    if not any(v.active for v in validators):
        validators[0].active = True
    if not any(m.active for m in miners):
        miners[0].active = True
    world = World(seed=seed, cities=plans, city_cum=tuple(accumulate(c.weight for c in CITIES)),
                  crime_cum=tuple(accumulate(c.weight for c in CRIME_TYPES)), miners=miners, validators=validators)
    # The planted rising zone: a hotspot of its own, 2.5 km north-east of the first city's centre, placed without a
    # draw (the rest of the world is as before); never picked by the city's hotspot weights (its cumulative weights
    # end before it), only by stream.RISING_SHARE.
    first = plans[0]
    lat, lng = offset(first.city.lat, first.city.lng, 1770.0, 1770.0)
    world.rising = Hotspot(key=f"{seed}:0:rising", city_index=0, district=first.city.districts[0],
                           kind="nightlife strip", name=f"{first.streets[0]}, {first.city.districts[0]}", lat=lat,
                           lng=lng, radius_m=30.0, weight=0.0, crime_cum=_crime_cum("nightlife strip"))
    first.hotspots.append(world.rising)
    # Better miners win more work: weight by skill squared, inactive miners none.
    world.miner_cum = tuple(accumulate((m.skill ** 2 if m.active else 0.0) for m in miners))
    return world
