"""Peak memory of a process that only bulk-stores a stream of events (run by ``run.py`` in a subprocess).

Usage: ``python benchmarks/memprobe.py facade|psycopg EVENTS SEED BATCH_SIZE``, connection from the
``LUMINAR_DB_*`` environment (``load_settings()``). It streams ``EVENTS`` generated events (never a list) through
the facade's ``store_crime_events`` (``facade``) or a hand-written binary COPY (``psycopg``, the baseline) and
prints one JSON line: rows stored, seconds, the resident-set high-water mark (``VmHWM``) and the resident set right
after the imports, in KiB.

Example: ``LUMINAR_DB_PORT=5433 python benchmarks/memprobe.py facade 1000000 7 50000``
"""

from __future__ import annotations

import asyncio
import json
import sys
import time


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def _store(path: str, events: int, seed: int, batch_size: int) -> int:
    from eventgen import World
    from paths import bulk_psycopg

    from luminar_store.access import LuminarDB
    from luminar_store.config import load_settings

    settings = load_settings()
    batches = World(seed).batches(events, batch_size=batch_size)
    if path == "facade":
        facade = LuminarDB(settings)
        stored = 0
        try:
            for uid, stream in batches:
                stored += await facade.store_crime_events(stream, miner_uid=uid)
        finally:
            await facade.close()
        return stored
    await bulk_psycopg(settings.conninfo(), batches)  # batches is lazy: the rows stream
    return events


def main(argv: list[str]) -> int:
    path, events, seed, batch_size = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    import eventgen  # noqa: F401  # the imports' memory counts as the baseline of the process
    import paths  # noqa: F401

    import luminar_store.access  # noqa: F401

    after_imports = _status_kib("VmRSS")
    start = time.perf_counter()
    stored = asyncio.run(_store(path, events, seed, batch_size))
    seconds = time.perf_counter() - start
    print(json.dumps({"path": path, "rows": stored, "seconds": seconds, "vmhwm_kib": _status_kib("VmHWM"),
                      "rss_after_imports_kib": after_imports}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
