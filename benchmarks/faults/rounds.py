"""Scoring rounds under backend kills: is a retried ``update_miner_performance`` counted once?

16 validator tasks, each scoring its own miner 200 times through the facade, while a side connection kills the
pool's backends 3 times and ``ackdrop.AckDropProxy`` loses the acknowledgement of 3 committed rounds; a failed
call is retried with the same arguments until it returns. Each miner's
``total_rounds`` is then compared with the rounds acknowledged for it.

Figures: ``calls``, ``attempts``, ``retried``, ``acknowledged``, ``rounds_counted_twice`` (rounds recorded beyond
those acknowledged), ``rounds_lost`` (acknowledged rounds not recorded), ``kills``, ``acks_dropped_on_purpose``,
``seconds``. Then ``kill_9``: the same for 16 other miners x 100 rounds with 3 ``kill -9`` of a running backend on a
durable database. ``--quick``: 4 miners x 50 rounds, 2 kills, 2 lost acknowledgements; ``kill_9`` 4 x 25, 2.

Example: ``.venv/bin/python benchmarks/faults/rounds.py --quick``
"""

from __future__ import annotations

import sys

import common

from luminar_store.access import LuminarDB
from luminar_store.config import Settings

__all__ = ["measure", "run"]

FIRST_UID = 5000

#: Rounds recorded per miner of the scenario.
TOTAL_ROUNDS = """
SELECT miner_uid, total_rounds
FROM miner_performance
WHERE miner_uid >= %(first)s AND miner_uid < %(last)s
"""


def scores(miner: int, round_no: int) -> dict[str, float]:
    """Round ``round_no``'s scores of a miner: varied, all in [0, 1]."""
    base = ((miner * 31 + round_no * 7) % 100) / 100
    return {"integrity": base, "clustering": 1 - base, "novelty": 0.5, "quality": round(base / 2, 2)}


async def measure(settings: Settings, *, miners: int, rounds: int, kills: int, lost_acks: int = 0,
                  sigkill: bool = False, first_uid: int = FIRST_UID) -> dict[str, object]:
    """The scenario on the (migrated) database of ``settings``: miners ``first_uid ..`` get ``rounds`` each
    (``lost_acks``, ``sigkill``: see ``writes.measure``)."""
    counters = common.Retried()
    acked = dict.fromkeys(range(first_uid, first_uid + miners), 0)

    async def validator(facade: LuminarDB, uid: int) -> None:
        for r in range(rounds):
            s = scores(uid, r)
            # the README's usage: each round names itself (round_number), so a retried round counts once
            done = await common.retrying(
                lambda s=s, r=r: facade.update_miner_performance(miner_uid=uid, hotkey=f"hotkey-{uid}", scores=s,
                                                                 round_number=r),
                counters)
            if done is not None:
                acked[uid] += 1

    killer, seconds = await common.under_faults(
        settings, counters, total=miners * rounds, kills=kills, lost_acks=lost_acks, sigkill=sigkill,
        workers=lambda facade: (validator(facade, uid) for uid in acked))
    async with await common.admin_connect(settings) as admin:
        rows = await (await admin.execute(TOTAL_ROUNDS, {"first": first_uid, "last": first_uid + miners})).fetchall()
    recorded = {int(uid): int(n) for uid, n in rows}
    twice = sum(max(recorded.get(uid, 0) - n, 0) for uid, n in acked.items())
    lost = sum(max(n - recorded.get(uid, 0), 0) for uid, n in acked.items())
    return {**counters.figures(), "miners": miners, "rounds_per_miner": rounds, "rounds_counted_twice": twice,
            "rounds_lost": lost, "kills": killer.kills, "backends_killed": killer.terminated,
            "acks_dropped_on_purpose": killer.acks_dropped,
            **({"first_success_after_back_s": counters.first_success_after(killer.back_at)} if sigkill else {}),
            "seconds": seconds}


async def run(*, quick: bool = False) -> dict[str, object]:
    """The scenario on a scratch server: 16 miners x 200 rounds, 3 kills, 3 lost acknowledgements (``quick``:
    4 x 50, 2 and 2)."""
    async with common.scratch_database() as settings:
        figures = await measure(settings, miners=4 if quick else 16, rounds=50 if quick else 200,
                                kills=2 if quick else 3, lost_acks=2 if quick else 3)
        await common.make_durable(settings)
        figures["kill_9"] = await measure(settings, miners=4 if quick else 16, rounds=25 if quick else 100,
                                          kills=2 if quick else 3, sigkill=True, first_uid=FIRST_UID + 1000)
        return figures


if __name__ == "__main__":
    sys.exit(common.main("rounds", run))
