"""Acknowledged single writes under backend kills: do retried ``store_crime_event`` calls lose or duplicate?

32 tasks x 400 ``store_crime_event`` calls through the facade (the README's usage: no ``event_id``), while a side
connection kills the pool's backends 3 times, spread through the run. A caller retries a failed call (the server
unreachable or the connection broken) with the same input until it returns. Each input carries the marker
``metadata.fault_seq``, one per logical event. A kill lands on a commit's acknowledgement only by chance, so the pool
also goes through ``ackdrop.AckDropProxy``, which loses the acknowledgement of 3 committed writes on purpose (the
commit happened, the caller sees a broken connection and retries).

Figures: ``calls``, ``attempts``, ``retried``, ``acknowledged``, ``lost`` (acknowledged ids not in the table),
``missing_events`` (logical events with no row), ``duplicates`` (rows beyond one per logical event), ``kills``,
``backends_killed``, ``acks_dropped_on_purpose``, ``seconds``. ``--quick``: 8 tasks x 100, 2 kills, 2 lost
acknowledgements. Then ``kill_9``: the same figures for 32 x 100 calls with 3 ``kill -9`` of a running backend
(the whole server restarts and recovers), on a durable database, plus ``first_success_after_back_s``: the longest
wait from the server accepting connections again to the next acknowledged call (it includes the callers' retry
pause, 10 ms x attempt, at most 0.5 s).

Example: ``.venv/bin/python benchmarks/faults/writes.py --quick``
"""

from __future__ import annotations

import sys
import uuid

import common

from luminar_store.access import LuminarDB
from luminar_store.config import Settings

__all__ = ["measure", "run"]


async def measure(settings: Settings, *, tasks: int, per_task: int, kills: int, lost_acks: int = 0,
                  sigkill: bool = False, first_seq: int = 0) -> dict[str, object]:
    """The scenario on the (migrated) database of ``settings``; its ``crime_events`` gets ``tasks * per_task``
    marked events, numbered from ``first_seq``. ``lost_acks`` > 0 routes the pool through an ``AckDropProxy`` that
    loses that many acknowledgements of committed writes; ``sigkill`` kills with ``kill -9`` (see ``Killer``)."""
    counters = common.Retried()
    acked: list[uuid.UUID] = []
    total = tasks * per_task

    async def writer(facade: LuminarDB, t: int) -> None:
        for i in range(per_task):
            event = common.event_input(first_seq + t * per_task + i)
            event_id = await common.retrying(lambda e=event: facade.store_crime_event(e, miner_uid=100 + t), counters)
            if event_id is not None:
                acked.append(event_id)

    killer, seconds = await common.under_faults(
        settings, counters, total=total, kills=kills, lost_acks=lost_acks, sigkill=sigkill,
        workers=lambda facade: (writer(facade, t) for t in range(tasks)))
    async with await common.admin_connect(settings) as admin:
        counts = {seq: n for seq, n in (await common.marker_counts(admin)).items()
                  if first_seq <= seq < first_seq + total}
        lost = await common.missing_ids(admin, acked)
    return {**counters.figures(), "lost": lost, "missing_events": total - len(counts),
            "duplicates": common.duplicates(counts), "kills": killer.kills, "backends_killed": killer.terminated,
            "acks_dropped_on_purpose": killer.acks_dropped,
            **({"first_success_after_back_s": counters.first_success_after(killer.back_at)} if sigkill else {}),
            "tasks": tasks, "per_task": per_task, "seconds": seconds}


async def run(*, quick: bool = False) -> dict[str, object]:
    """The scenario on a scratch server: 32 x 400 with 3 kills and 3 lost acknowledgements (``quick``: 8 x 100,
    2 and 2); then, as ``kill_9``, 32 x 100 with 3 ``kill -9`` of a running backend (``quick``: 8 x 50, 2) on a
    durable database (``synchronous_commit = on``: an acknowledged commit must survive the crash)."""
    async with common.scratch_database() as settings:
        figures = await measure(settings, tasks=8 if quick else 32, per_task=100 if quick else 400,
                                kills=2 if quick else 3, lost_acks=2 if quick else 3)
        await common.make_durable(settings)
        figures["kill_9"] = await measure(settings, tasks=8 if quick else 32, per_task=50 if quick else 100,
                                          kills=2 if quick else 3, sigkill=True, first_seq=10_000_000)
        return figures


if __name__ == "__main__":
    sys.exit(common.main("writes", run))
