"""Pool exhaustion: ``PoolExhaustedError`` exactly when every pooled connection is in use, never otherwise.

A facade with a small pool (``DB_POOL_SIZE=3``, ``MAX_OVERFLOW=1``, ``POOL_TIMEOUT=2``) makes store calls:

* with nothing borrowed (false ``PoolExhaustedError`` expected: 0);
* after every pooled backend was killed while idle and had exited (the pool must replace them: no error at all);
* with every connection held by the scenario (a ``PoolExhaustedError`` expected after about ``POOL_TIMEOUT``);
* after the held connections' backends were killed and the connections given back;
* from 4 x max-size concurrent tasks, each call holding a connection briefly (waits, never exhaustion).

Figures: ``false_pool_exhausted_*`` (0 expected each), ``failed_calls_*`` (other errors, 0 expected),
``unexpected_error_when_full`` (0 when the full pool raised ``PoolExhaustedError``), ``seconds_to_exhausted``.
``--quick``: fewer calls.

Example: ``.venv/bin/python benchmarks/faults/pool.py --quick``
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Iterator

import common

from luminar_store.access import LuminarDB
from luminar_store.config import Settings
from luminar_store.errors import PoolExhaustedError

__all__ = ["POOL_ENV", "measure", "run"]

#: The pool of the scenario (kept small so that holding all of it is cheap). The timeout leaves a busy machine time
#: to open replacements for killed connections; it is also how long the full pool makes a caller wait.
POOL_ENV = {"DB_POOL_SIZE": "3", "MAX_OVERFLOW": "1", "POOL_TIMEOUT": "2"}


class Tally:
    """Outcomes of a series of calls."""

    def __init__(self) -> None:
        self.ok = 0
        self.exhausted = 0
        self.failed = 0
        self.errors: list[str] = []

    async def call(self, facade: LuminarDB, seq: int) -> None:
        try:
            await facade.store_crime_event(common.event_input(seq), miner_uid=400)
        except PoolExhaustedError:
            self.exhausted += 1
        except Exception as exc:  # noqa: BLE001 - a figure
            self.failed += 1
            if len(self.errors) < 3:
                self.errors.append(f"{type(exc).__name__}: {exc}"[:200])
        else:
            self.ok += 1

    async def series(self, facade: LuminarDB, seqs: Iterator[int], calls: int) -> Tally:
        """``calls`` calls one after the other; returns this tally."""
        for _ in range(calls):
            await self.call(facade, next(seqs))
        return self


async def measure(settings: Settings, *, calls: int) -> dict[str, object]:
    """The scenario on the (migrated) database of ``settings``, whose pool settings come from ``POOL_ENV``."""
    facade = LuminarDB(settings)
    database = facade.database
    seq = iter(range(2_000_000, 3_000_000))
    out: dict[str, object] = {"pool_min": settings.pool_size, "pool_max": settings.pool_max_size,
                              "pool_timeout_s": settings.pool_timeout}
    admin = await common.admin_connect(settings)
    try:
        await facade.initialize()
        idle = await Tally().series(facade, seq, calls)
        out.update(false_pool_exhausted_idle=idle.exhausted, failed_calls_idle=idle.failed)

        out["backends_killed_idle"] = await common.kill_backends(admin, settings.name, wait=10)
        after_kill = await Tally().series(facade, seq, calls)
        out.update(false_pool_exhausted_after_idle_kill=after_kill.exhausted,
                   failed_calls_after_idle_kill=after_kill.failed)

        async with contextlib.AsyncExitStack() as held:
            for _ in range(settings.pool_max_size):
                await held.enter_async_context(database.connection())
            start = time.monotonic()
            full = Tally()
            await full.call(facade, next(seq))
            out["seconds_to_exhausted"] = common.elapsed(start)
            out["unexpected_error_when_full"] = 0 if full.exhausted == 1 else 1
            out["backends_killed_held"] = await common.kill_backends(admin, settings.name, wait=10)
        after_held = await Tally().series(facade, seq, calls)
        out.update(false_pool_exhausted_after_held_kill=after_held.exhausted,
                   failed_calls_after_held_kill=after_held.failed)

        busy = Tally()

        async def caller() -> None:
            for _ in range(max(calls // 4, 5)):
                await busy.call(facade, next(seq))

        await asyncio.gather(*(caller() for _ in range(4 * settings.pool_max_size)))
        out.update(busy_calls=busy.ok + busy.exhausted + busy.failed, false_pool_exhausted_busy=busy.exhausted,
                   failed_calls_busy=busy.failed)
        out["errors"] = idle.errors + after_kill.errors + after_held.errors + busy.errors
    finally:
        await facade.close()
        await admin.close()
    return out


async def run(*, quick: bool = False) -> dict[str, object]:
    """The scenario on a scratch server (``quick``: 20 calls a phase instead of 200)."""
    async with common.scratch_database(**POOL_ENV) as settings:
        return await measure(settings, calls=20 if quick else 200)


if __name__ == "__main__":
    sys.exit(common.main("pool", run))
