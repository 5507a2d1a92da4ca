"""Bulk stores under backend kills: is a batch all or nothing, and does a retried batch duplicate its rows?

200 batches of 500 events, ``store_crime_events`` (binary COPY, one transaction a batch), 4 tasks at once, while a
side connection kills the pool's backends 3 times and ``ackdrop.AckDropProxy`` loses the acknowledgement of 3
committed batches; a failed batch is retried with the same input until it returns.
Then one batch whose backend is killed half-way through the COPY (from inside the input stream, so the kill
certainly lands mid-COPY), counted before and after its retry. Every event carries ``metadata.fault_seq`` and
``metadata.fault_batch``.

Figures: ``batches``, ``batch_size``, ``attempts``, ``retried``, ``acknowledged``, ``partial_batches`` (rows of
a batch neither none nor all of its events), ``duplicates`` (rows beyond one per logical event),
``duplicated_batches``, ``lost`` (events of acknowledged batches with no row), ``kills``, ``acks_dropped_on_purpose``,
``mid_copy.rows_after_kill`` (0 expected), ``mid_copy.partial``, ``mid_copy.duplicates``, ``seconds``.
Then ``kill_9``: the same figures for 60 batches with 3 ``kill -9`` of a running backend on a durable database.
``--quick``: 20 batches of 200, 2 kills, 2 lost acknowledgements; ``kill_9`` 10 batches, 2 kills.

Example: ``.venv/bin/python benchmarks/faults/bulk.py --quick``
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import common

from luminar_store.access import LuminarDB
from luminar_store.config import Settings

__all__ = ["killed_mid_copy", "measure", "run"]

#: Logical events of the mid-COPY batch are numbered from here (apart from the concurrent batches').
MID_COPY_FIRST_SEQ = 10**9
MID_COPY_BATCH = 10**6


def batch_events(batch: int, size: int, *, first_seq: int | None = None) -> list[dict[str, object]]:
    """The inputs of batch ``batch``: ``size`` marked events (seq ``first_seq + i``, default ``batch * size + i``)."""
    first = batch * size if first_seq is None else first_seq
    return [common.event_input(first + i, batch=batch) for i in range(size)]


async def measure(settings: Settings, *, batches: int, size: int, tasks: int, kills: int, lost_acks: int = 0,
                  sigkill: bool = False, first_batch: int = 0) -> dict[str, object]:
    """The concurrent part on the (migrated) database of ``settings``: batches ``first_batch ..`` (``lost_acks``,
    ``sigkill``: see ``writes.measure``)."""
    counters = common.Retried()
    acked: list[int] = []
    numbers = range(first_batch, first_batch + batches)
    queue = list(numbers)

    async def loader(facade: LuminarDB, t: int) -> None:
        while queue:
            b = queue.pop(0)
            events = batch_events(b, size)
            stored = await common.retrying(lambda e=events: facade.store_crime_events(e, miner_uid=200 + t),
                                           counters)
            if stored is not None:
                acked.append(b)

    killer, seconds = await common.under_faults(
        settings, counters, total=batches, kills=kills, lost_acks=lost_acks, sigkill=sigkill,
        workers=lambda facade: (loader(facade, t) for t in range(tasks)))
    async with await common.admin_connect(settings) as admin:
        per_batch = await common.batch_counts(admin)
        counts = await common.marker_counts(admin)
    partial = sum(1 for b in numbers if per_batch.get(b, (0, 0))[1] not in (0, size))
    lost = sum(size - per_batch.get(b, (0, 0))[1] for b in acked)
    doubled = sum(1 for b in numbers if per_batch.get(b, (0, 0))[0] > per_batch.get(b, (0, 0))[1])
    seqs = range(first_batch * size, (first_batch + batches) * size)
    return {**counters.figures(), "batches": batches, "batch_size": size, "partial_batches": partial,
            "duplicated_batches": doubled,
            "duplicates": common.duplicates({s: n for s, n in counts.items() if s in seqs}),
            "lost": lost, "kills": killer.kills, "backends_killed": killer.terminated,
            "acks_dropped_on_purpose": killer.acks_dropped,
            **({"first_success_after_back_s": counters.first_success_after(killer.back_at)} if sigkill else {}),
            "seconds": seconds}


async def killed_mid_copy(settings: Settings, *, size: int = 400) -> dict[str, object]:
    """One batch whose backend is killed when half its events have been handed to the COPY, then retried once.

    The kill runs from inside the input stream on a blocking side connection: the event loop is held for that
    moment, so the COPY is certainly open. Returns ``rows_after_kill`` (0 expected: the transaction never
    committed), ``error`` (what the call raised), ``rows_after_retry``, ``partial`` and ``duplicates``."""
    facade = LuminarDB(settings)
    events = batch_events(MID_COPY_BATCH, size, first_seq=MID_COPY_FIRST_SEQ)
    killed: list[int] = []

    def stream() -> Iterator[dict[str, object]]:
        for i, event in enumerate(events):
            if i == size // 2:
                killed.append(common.kill_backends_sync(settings.conninfo(), settings.name))
            yield event

    error = None
    try:
        await facade.initialize()
        try:
            await facade.store_crime_events(stream(), miner_uid=300)
        except common.RETRYABLE as exc:
            error = type(exc).__name__
        async with await common.admin_connect(settings) as admin:
            after_kill = (await common.batch_counts(admin)).get(MID_COPY_BATCH, (0, 0))[0]
        counters = common.Retried()
        await common.retrying(lambda: facade.store_crime_events(events, miner_uid=300), counters)
    finally:
        await facade.close()
    async with await common.admin_connect(settings) as admin:
        rows, distinct = (await common.batch_counts(admin)).get(MID_COPY_BATCH, (0, 0))
    return {"backends_killed": sum(killed), "error": error, "rows_after_kill": after_kill,
            "partial": int(after_kill not in (0, size)), "rows_after_retry": rows,
            "duplicates": rows - distinct, "lost": size - distinct, "retry_attempts": counters.attempts}


async def run(*, quick: bool = False) -> dict[str, object]:
    """The scenario on a scratch server: 200 x 500, 4 tasks, 3 kills, 3 lost acknowledgements (``quick``:
    20 x 200, 2 and 2)."""
    async with common.scratch_database() as settings:
        figures = await measure(settings, batches=20 if quick else 200, size=200 if quick else 500, tasks=4,
                                kills=2 if quick else 3, lost_acks=2 if quick else 3)
        figures["mid_copy"] = await killed_mid_copy(settings, size=200 if quick else 2000)
        await common.make_durable(settings)
        figures["kill_9"] = await measure(settings, batches=10 if quick else 60, size=200 if quick else 500, tasks=4,
                                          kills=2 if quick else 3, sigkill=True, first_batch=100_000)
        return figures


if __name__ == "__main__":
    sys.exit(common.main("bulk", run))
