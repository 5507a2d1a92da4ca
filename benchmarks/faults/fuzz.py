"""Hostile inputs to the write calls: is every refusal a ``ValidationError`` naming the field, before any SQL?

About 5,000 inputs from a seeded generator of hostile values (huge and negative numbers, NaN and infinities,
Decimals, lone surrogates, NUL characters, very long text, deep nesting, wrong types, timestamps at the ends of
datetime's range and naive ones, malformed ids), each planted in one to three fields of a valid input (or given as
the whole input, or as the uid), go to ``store_crime_event``, ``store_crime_events``, ``update_miner_performance``,
``store_raw_report`` and ``update_event_verification``.

Each outcome is one of: ``accepted``; ``refused_named`` (``ValidationError`` with a field); ``unnamed_refusals``
(a ``ValidationError`` without one); ``not_found`` / ``conflicts`` (the documented refusals of a call, e.g. an
unknown event); ``server_errors`` (the input reached SQL and the server refused it, or the connection broke);
``unexpected`` (any other exception: a bug). Goals: 0 ``unnamed_refusals``, ``server_errors`` and ``unexpected``
(``samples`` shows the first of each kind). ``--quick``: 800 inputs.

Example: ``.venv/bin/python benchmarks/faults/fuzz.py --quick``
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import random
import sys
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from typing import Any

import common
import psycopg

from luminar_store.access import LuminarDB
from luminar_store.config import Settings
from luminar_store.errors import ConflictError, LuminarError, NotFoundError, ValidationError

__all__ = ["hostile", "measure", "run"]

SEED = 20261129
#: Seconds one call may take before it counts as hung.
CALL_TIMEOUT = 30.0


def _nested(depth: int, kind: str) -> object:
    value: object = "deep"
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return value


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)  # from the seed: a rerun makes the same inputs


def _naive_now() -> dt.datetime:
    return dt.datetime.now()  # noqa: DTZ005 - a naive time on purpose


#: Makers of hostile values (a fresh value each call: some are mutable).
HOSTILE: list[Callable[[random.Random], object]] = [
    lambda r: 10**r.choice([10, 19, 40, 400]),
    lambda r: -(10**r.choice([1, 10, 40])),
    lambda r: r.choice([2**31, 2**31 - 1, 2**63, -(2**31) - 1, -1, 0]),
    lambda r: r.choice([math.nan, math.inf, -math.inf, -0.0, 1e308, 5e-324, 1e-320]),
    lambda r: r.choice([Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity"), Decimal("1e1000"), Decimal("0.5"),
                        Decimal("-0"), Decimal("1e-1000")]),
    lambda r: r.choice([Fraction(1, 3), complex(1, 1), True, False, None]),
    lambda r: r.choice(["\ud800", "a\udfffb", "x\x00y", "\x00", "", " ", "\u202e", "🚓" * 3, "é\u0301"]),
    lambda r: "A" * r.choice([201, 10_001, 1_000_000]),
    lambda r: r.choice(["NaN", "inf", "1e999", "0x10", "  3 ", "4; DROP TABLE crime_events", "'", "%s", "{}"]),
    lambda r: _nested(r.choice([50, 500, 5000]), r.choice(["list", "dict"])),
    lambda r: r.choice([b"bytes", bytearray(b"x"), set(), frozenset({1}), object(), print, type, Ellipsis]),
    lambda r: r.choice([[], {}, (), [1, 2, 3], {"lat": 1}, {"lat": "x", "lng": None}, {"lat": 91, "lng": 0},
                        {"lat": math.nan, "lng": 0.0}, {1: 2}, {None: 1}]),
    lambda r: r.choice([dt.datetime.min, dt.datetime.max, dt.datetime.min.replace(tzinfo=dt.UTC),
                        dt.datetime.max.replace(tzinfo=dt.UTC),
                        dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=14))),
                        dt.datetime(9999, 12, 31, 23, 59, tzinfo=dt.timezone(dt.timedelta(hours=-14))),
                        dt.datetime(1969, 12, 31, 23, 59, tzinfo=dt.UTC), _naive_now(), dt.date(2025, 1, 1),
                        dt.time(12, 0), dt.timedelta(days=1),
                        dt.datetime.now(dt.UTC) + dt.timedelta(days=365)]),
    lambda r: r.choice(["2025-01-01", "2025-13-45T99:00:00", "yesterday", "0001-01-01T00:00:00+14:00",
                        "9999-12-31T23:59:59-14:00", "1e10", 1.7e9, 10**12]),
    lambda r: r.choice([_uuid(r), str(_uuid(r)), "not-a-uuid", uuid.UUID(int=0), [str(_uuid(r))] * 3,
                        ["LMR_" + "x" * 300]]),
]


def hostile(rng: random.Random) -> object:
    """One hostile value."""
    return rng.choice(HOSTILE)(rng)


def _event(rng: random.Random, n: int) -> dict[str, object]:
    return {"event_type": "theft", "geotag": {"lat": 40.7, "lng": -74.0},
            "timestamp": common.BASE_TIME + dt.timedelta(seconds=n), "severity": 3, "confidence_score": 0.8,
            "title": "t", "summary": "s", "metadata": {"fuzz": n}, "related_reports": [],
            "verification_status": "pending", "risk_score": 0.2}


def _report(rng: random.Random, n: int) -> dict[str, object]:
    return {"report_id": f"fuzz-{n}", "text_description": "a report", "geotag": {"lat": 40.7, "lng": -74.0},
            "timestamp": common.BASE_TIME + dt.timedelta(seconds=n), "crime_type": "theft", "metadata": {"n": n},
            "media_urls": [], "user_id": "u1"}


def _scores(rng: random.Random, n: int) -> dict[str, object]:
    return {"integrity": 0.9, "clustering": 0.8, "novelty": 0.7, "quality": 0.6}


EXTRA_KEYS = ("lat", "latitude", "geotag.lat", "metadata.x", "unknown_field", "event_id", "cluster_id",
              "source_reports", "timestamp_range", "location", "total", "final")


def _mutate(rng: random.Random, base: dict[str, object]) -> tuple[object, str]:
    """``base`` with one to three hostile fields (or wholly hostile); returns it and what was changed."""
    if rng.random() < 0.08:
        return hostile(rng), "(whole input)"
    keys = rng.sample(sorted(base) + list(EXTRA_KEYS), rng.randint(1, 3))
    out: dict[Any, object] = dict(base)
    for key in keys:
        if "." in key:
            outer, inner = key.split(".", 1)
            inner_map = dict(out.get(outer) or {}) if isinstance(out.get(outer), dict) else {}
            inner_map[inner] = hostile(rng)
            out[outer] = inner_map
        elif rng.random() < 0.1:
            out.pop(key, None)
        else:
            out[key] = hostile(rng)
    return out, ",".join(keys)


def _uid(rng: random.Random) -> object:
    return hostile(rng) if rng.random() < 0.15 else rng.randint(0, 1000)


def classify(exc: BaseException | None) -> str:
    """The outcome's kind (see the module's docs). ``NotFoundError`` and ``ConflictError`` are documented refusals
    whatever found them (a foreign key, a unique key); a ``ValidationError`` that the server raised means the input
    got past the checks before SQL, so it counts as a server error."""
    if exc is None:
        return "accepted"
    if isinstance(exc, NotFoundError):
        return "not_found"
    if isinstance(exc, ConflictError):
        return "conflicts"
    if isinstance(exc, psycopg.Error) or isinstance(exc.__cause__, psycopg.Error) \
            or (isinstance(exc, LuminarError) and not isinstance(exc, ValidationError)):
        return "server_errors"
    if isinstance(exc, ValidationError):
        return "refused_named" if exc.field else "unnamed_refusals"
    return "unexpected"


async def measure(settings: Settings, *, inputs: int, seed: int = SEED) -> dict[str, object]:
    """``inputs`` hostile calls on the (migrated) database of ``settings``."""
    rng = random.Random(seed)
    facade = LuminarDB(settings)
    tally = dict.fromkeys(("accepted", "refused_named", "unnamed_refusals", "not_found", "conflicts",
                           "server_errors", "unexpected", "hung"), 0)
    per_call: dict[str, int] = {}
    samples: list[dict[str, str]] = []
    seen: set[tuple[str, str, str]] = set()
    start = time.monotonic()
    try:
        known_event = await facade.store_crime_event(_event(rng, -1), miner_uid=1)
        for n in range(inputs):
            target = rng.choice(("store_crime_event", "store_crime_events", "update_miner_performance",
                                 "store_raw_report", "update_event_verification"))
            if target == "store_crime_event":
                value, changed = _mutate(rng, _event(rng, n))
                call = facade.store_crime_event(value, miner_uid=_uid(rng))
            elif target == "store_crime_events":
                items = [_event(rng, n * 10 + i) for i in range(rng.randint(1, 3))]
                k = rng.randrange(len(items))
                items[k], changed = _mutate(rng, items[k])  # type: ignore[assignment]
                call = facade.store_crime_events(items, miner_uid=_uid(rng))
            elif target == "update_miner_performance":
                value, changed = _mutate(rng, _scores(rng, n))
                hotkey = hostile(rng) if rng.random() < 0.2 else f"hk-{n % 7}"
                call = facade.update_miner_performance(miner_uid=_uid(rng), hotkey=hotkey, scores=value)
            elif target == "store_raw_report":
                value, changed = _mutate(rng, _report(rng, n))
                call = facade.store_raw_report(value)
            else:
                args: list[object] = [known_event, rng.randint(0, 100), "verified", 0.9]
                i = rng.randrange(4)
                args[i] = hostile(rng)
                changed = f"argument {i}"
                call = facade.update_event_verification(*args)
            error: BaseException | None = None
            try:
                await asyncio.wait_for(call, CALL_TIMEOUT)
            except TimeoutError:
                tally["hung"] += 1
                continue
            except Exception as exc:  # noqa: BLE001 - every outcome is classified
                error = exc
            kind = classify(error)
            tally[kind] += 1
            per_call[f"{target}.{kind}"] = per_call.get(f"{target}.{kind}", 0) + 1
            if kind in ("unnamed_refusals", "server_errors", "unexpected") and error is not None:
                key = (target, kind, type(error).__name__)
                if key not in seen and len(samples) < 15:
                    seen.add(key)
                    samples.append({"call": target, "kind": kind, "changed": changed,
                                    "error": f"{type(error).__name__}: {error}"[:240]})
        healthy = await facade.health_check()
    finally:
        await facade.close()
    return {"inputs": inputs, "seed": seed, **tally, "healthy_after": healthy, "per_call": per_call,
            "samples": samples, "seconds": common.elapsed(start)}


async def run(*, quick: bool = False) -> dict[str, object]:
    """The scenario on a scratch server: 5,000 inputs (``quick``: 800)."""
    async with common.scratch_database() as settings:
        return await measure(settings, inputs=800 if quick else 5000)


if __name__ == "__main__":
    sys.exit(common.main("fuzz", run))
