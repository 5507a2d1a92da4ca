"""Realistic synthetic data for testing and demos: ``await populate_sample_data()`` as the specification shows.

What a run writes (all tables of the schema but the audit log):

- raw incident reports around 25 major cities of six continents: about 60 % of incidents in tight hotspots (tens of
  metres) at real districts, the rest spread over the city; several reports per incident from victims and
  witnesses minutes and metres apart; local-time day/night rhythms per crime type; descriptions that read like
  reports; metadata (city, location name, weapon, victims, reporter kind, app); media URLs with their SHA-256;
- crime events that group the reports of one incident (``related_reports`` are real report ids), with severity,
  confidence, risk score, the hotspot's crime cluster, and a verification decided by the validators' scores;
- consensus records (2-4 validators per scored event), miners and validators with plausible histories, and risk
  zones around the busiest hotspots;
- one planted rising zone: a hotspot of the first city (New York) whose weekly incidents grow over the window, so
  that the risk zone analysis has a real increasing trend to find (the default window, 91 days, holds 13 weeks).

Deterministic: the same seed on an empty database writes the same rows (given ``now``). A later run of the same
seed continues as run 1, 2, ... (external ids ``syn-<seed>-r<run>-<n>``), so nothing collides.

Example::

    >>> from luminar_store.ops.synthetic import populate_sample_data
    >>> summary = await populate_sample_data(reports=500, days=7)
    >>> summary.reports, summary.events > 0
    (500, True)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import psycopg

from luminar_store import validation
from luminar_store.config import Settings, load_settings
from luminar_store.errors import OperationError
from luminar_store.ops.synthetic.loader import LoadSummary, load_run

__all__ = [
    "DEFAULT_REPORTS",
    "DEFAULT_DAYS",
    "DEFAULT_SEED",
    "LoadSummary",
    "load_sample_data",
    "populate_sample_data",
    "write_sample_data",
]

DEFAULT_REPORTS = 1000
#: 13 weeks: enough weekly counts for the risk zone analysis's trend test (12 by default, at least 8), and the planted
#: rising zone (``stream.RISING_SHARE``) rises over them.
DEFAULT_DAYS = 91
DEFAULT_SEED = 42
MAX_REPORTS = 100_000_000


def load_sample_data(conn: psycopg.Connection, *, reports: int = DEFAULT_REPORTS, days: int = DEFAULT_DAYS,
                     seed: int = DEFAULT_SEED, now: float | None = None, batch_size: int = 20_000,
                     workers: int | None = None, progress: Callable[[int], object] | None = None) -> LoadSummary:
    """Write one run of synthetic data through ``conn`` (a psycopg connection, autocommit or idle).

    ``reports`` raw reports spread over the ``days`` days before ``now`` (epoch seconds; default the current
    time), with the events, consensus records, clusters, zones, miners and validators that go with them. Batches
    of ``batch_size`` reports (rounded down to whole blocks of 1,000) commit one by one, written by ``workers``
    processes, each with its own session (default: 2 from 100,000 reports on, else 1; the rows do not depend on
    it); ``progress(n)`` is called with the report count of each committed batch.

    Raises ``ValidationError`` for a bad argument, ``OperationError`` when the database has no schema, and
    ``psycopg.Error`` for a failure of the server (the batch in flight leaves no row).

    Example: ``load_sample_data(conn, reports=200, seed=7).events``
    """
    validation.integer("reports", reports, minimum=1, maximum=MAX_REPORTS)
    validation.integer("days", days, minimum=1, maximum=3650)
    validation.integer("seed", seed, minimum=0, maximum=2**31 - 1)
    validation.integer("batch_size", batch_size, minimum=1_000, maximum=10_000_000)
    if now is not None:
        validation.number("now", now, minimum=0)
    if workers is None:
        workers = 2 if reports >= 100_000 else 1
    validation.integer("workers", workers, minimum=1, maximum=16)
    return load_run(conn, seed=seed, reports=reports, days=days, now=now, batch_size=batch_size, workers=workers,
                    progress=progress)


def _refuse_production(settings: Settings) -> None:
    if settings.env == "production":
        raise OperationError("sample data is never written to production (LUMINAR_ENV=production); "
                             "use LUMINAR_ENV=local or testing")


def write_sample_data(settings: Settings | None = None, **kwargs) -> LoadSummary:
    """``load_sample_data`` on a new connection from ``settings`` (default ``load_settings()``); refuses
    production with ``OperationError``."""
    settings = settings or load_settings()
    _refuse_production(settings)
    from luminar_store.ops.connect import connect

    with connect(settings) as conn:
        return load_sample_data(conn, **kwargs)


async def populate_sample_data(reports: int = DEFAULT_REPORTS, days: int = DEFAULT_DAYS, seed: int = DEFAULT_SEED,
                               *, settings: Settings | None = None, now: float | None = None,
                               batch_size: int = 20_000, workers: int = 1) -> LoadSummary:
    """The specification's call: write sample data into the database of ``settings`` (default
    ``load_settings()``, i.e. ``LUMINAR_ENV``), off the event loop. Defaults: 1,000 reports over 91 days, seed 42.
    One writer by default: forking writer processes from the loop's worker thread is avoided unless asked for.

    Raises like ``load_sample_data``, plus ``OperationError`` in production and ``DatabaseUnavailableError``
    when the server cannot be reached.

    Example: ``summary = await populate_sample_data()``
    """
    return await asyncio.to_thread(write_sample_data, settings, reports=reports, days=days, seed=seed, now=now,
                                   batch_size=batch_size, workers=workers)
