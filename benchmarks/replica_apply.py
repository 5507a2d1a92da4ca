"""How fast a streaming read replica (physical replication, WAL replay) applies the primary's writes.

Two scratch servers (``scratchpg.py``, removed at the end): the primary (``wal_level = replica``), migrated with
``migrate_database``, and its replica, made by ``pg_basebackup -R`` (a replication slot, WAL streamed during the copy)
and started on another free port with ``hot_standby = on``; both run as the unprivileged service user under root. The
initdb of the scratch server already lets the owner connect for replication from 127.0.0.1 (trust). Events are
stored on the primary through the package's bulk path (``LuminarDB.store_crime_events``, batches of 50,000, one
transaction each), so the WAL is the real schema's: indexes, triggers, incidents, cell-days, audit.

* following: N events loaded while the replica streams. The primary's write rate (rows/s), the WAL it generated
  (``pg_current_wal_insert_lsn()`` before and after), the largest replay lag sampled during the load (every 50 ms, by
  the package's own lag query, ``luminar_store.replicas``: ``pg_current_wal_lsn()`` against
  ``pg_last_wal_replay_lsn()``) and the seconds from the load's last commit until the replica has replayed all of it.
* catching up: replay paused on the replica (``pg_wal_replay_pause()``, until ``pg_get_wal_replay_pause_state()``
  says paused), another N events loaded (the replica receives the WAL but applies none), replay resumed: the seconds
  to replay the backlog give the apply rate itself, in WAL MB/s and events/s, and its ratio to the primary's write
  rate for the same rows. Beside it the CPU share of the replica's startup process (the one process that replays).

Each load starts after a ``CHECKPOINT`` (both pay the full-page images of the first writes after one). A load's end
is the primary's insert position after its last commit (``pg_current_wal_insert_lsn()``: with ``synchronous_commit =
off`` the last commit record may still be in the WAL buffers, past ``pg_current_wal_lsn()``), made durable at once by
one synchronous commit: the wait after the load is streaming and replay, not the WAL writer's delay (``--durable``:
every commit synchronous, as in production). MB are 10^6 bytes. It is a benchmark, not a test; the figures depend on
the machine and its load (recorded at the start and the end). Prints a table and writes
``benchmarks/results/replica-<UTC start>.json``.

Example: ``.venv/bin/python benchmarks/replica_apply.py --events 200000``
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))

import psycopg  # noqa: E402
from scratchpg import DBNAME, SERVER_SETTINGS, USER, ScratchServer, free_port, stop_on_sigterm  # noqa: E402

from luminar_store.ops.cluster import is_root, service_user  # noqa: E402
from luminar_store.replicas import PRIMARY_WAL_POSITION, REPLICA_LAG  # noqa: E402

#: Settings of the primary beyond the scratch server's; the replica copies the primary's postgresql.conf.
PRIMARY_SETTINGS = {"wal_level": "replica", "max_wal_senders": "4", "max_replication_slots": "4"}
SLOT = "luminar_bench_replica"
POLL = 0.01  # seconds between looks at the replica's replay position
SAMPLE = 0.05  # seconds between lag samples during the following load
MB = 1_000_000


class ReplicaServer(ScratchServer):
    """A streaming replica of ``primary``: ``pg_basebackup -R`` into a new temporary directory, then started on a free
    port. ``stop()`` (inherited) stops it and deletes its directory."""

    def __init__(self, primary: ScratchServer) -> None:
        super().__init__(host=primary.host)
        self.primary = primary

    def start(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="luminar-bench-replica-"))
        if is_root():
            shutil.chown(self.home, user=service_user())
        self.port = free_port(self.host)
        source = self.primary.conninfo("postgres")
        self._run("pg_basebackup", [str(self.bindir / "pg_basebackup"), "-d", source, "-D", str(self.data_dir),
                                    "-R", "-X", "stream", "-c", "fast", "-C", "-S", SLOT, "--no-sync"], timeout=600)
        # Later lines win: the copied postgresql.conf names the primary's port and socket directory.
        own = {"port": str(self.port), "unix_socket_directories": str(self.home), "hot_standby": "on"}
        with (self.data_dir / "postgresql.conf").open("a") as handle:
            handle.write("\n# luminar benchmark replica\n" + "".join(f"{k} = '{v}'\n" for k, v in own.items()))
        self._run("pg_ctl start", [str(self.bindir / "pg_ctl"), "start", "-D", str(self.data_dir), "-l",
                                   str(self.log_file), "-w", "-t", "120"])
        self.running = True


def lsn(text: str | None) -> int:
    """A WAL position ``X/Y`` as a byte number."""
    if text is None:
        raise RuntimeError("no WAL position (is the replica a standby?)")
    high, low = text.split("/")
    return (int(high, 16) << 32) + int(low, 16)


def insert_position(primary: psycopg.Connection) -> int:
    return lsn(primary.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0])


def flushed_position(primary: psycopg.Connection) -> int:
    """The primary's insert position, once the WAL up to it is on disk: a transaction that writes one WAL record (a
    transactional ``pg_logical_emit_message``, which no decoder reads at ``wal_level = replica``) and commits with
    ``synchronous_commit = on`` flushes it. Otherwise the WAL sender, which sends flushed WAL only, waits for the WAL
    writer (up to ``wal_writer_delay`` after an asynchronous commit; never for a partial page holding no commit)."""
    position = insert_position(primary)
    with primary.transaction():
        primary.execute("SET LOCAL synchronous_commit = on")
        primary.execute("SELECT pg_logical_emit_message(true, 'luminar_bench', 'flush')")
    return position


def replay_position(replica: psycopg.Connection) -> int:
    return lsn(replica.execute("SELECT pg_last_wal_replay_lsn()::text").fetchone()[0])


def wait_until(replica: psycopg.Connection, query: str, target: int, what: str, deadline: float) -> float:
    """Seconds until the position ``query`` reads on the replica reaches ``target`` (polled every ``POLL`` s); raises
    ``RuntimeError`` after ``deadline`` seconds."""
    start = time.perf_counter()
    while lsn(replica.execute(query).fetchone()[0]) < target:
        if time.perf_counter() - start > deadline:
            raise RuntimeError(f"the replica has not {what} within {deadline:g} s")
        time.sleep(POLL)
    return time.perf_counter() - start


def wait_for(conn: psycopg.Connection, query: str, expected: object, what: str, deadline: float = 60) -> None:
    start = time.monotonic()
    while (found := conn.execute(query).fetchone()[0]) != expected:
        if time.monotonic() - start > deadline:
            raise RuntimeError(f"{what}: still {found!r} after {deadline:g} s")
        time.sleep(POLL)


class LagSampler(threading.Thread):
    """Samples the replica's replay lag in bytes (the package's own measurement) until ``stop()``."""

    def __init__(self, primary: str, replica: str) -> None:
        super().__init__(daemon=True)
        self.conninfos = (primary, replica)
        self.samples: list[int] = []
        self.error: BaseException | None = None
        self._done = threading.Event()

    def run(self) -> None:
        try:
            with psycopg.connect(self.conninfos[0], autocommit=True) as up, \
                    psycopg.connect(self.conninfos[1], autocommit=True) as down:
                while not self._done.is_set():
                    position = up.execute(PRIMARY_WAL_POSITION).fetchone()[0]
                    self.samples.append(down.execute(REPLICA_LAG, {"primary_lsn": position}).fetchone()[1])
                    self._done.wait(SAMPLE)
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def stop(self) -> list[int]:
        self._done.set()
        self.join(timeout=30)
        if self.error is not None:
            raise RuntimeError(f"lag sampling failed: {self.error}")
        return self.samples


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def materialize(world: Any, count: int, batch_size: int, seed_offset: int) -> list[tuple[int, list[dict]]]:
    """The batches of a load as lists (generated before the clock starts, and sendable again on a retry)."""
    batches = [(uid, list(events)) for uid, events in world.batches(count, batch_size=batch_size,
                                                                     seed_offset=seed_offset)]
    gc.collect()
    gc.freeze()  # the live event dicts are not rescanned by every full collection during the load
    return batches


async def measure(args: argparse.Namespace, primary: ScratchServer, replica: ReplicaServer) -> dict[str, Any]:
    """Both phases; the raw figures as a dict."""
    from eventgen import World
    from paths import bulk_facade

    from luminar_store.access import LuminarDB
    from luminar_store.config import load_settings

    settings = load_settings("local", environ={
        "LUMINAR_DB_HOST": primary.host, "LUMINAR_DB_PORT": str(primary.port), "LUMINAR_DB_NAME": DBNAME,
        "LUMINAR_DB_USER": USER, "LUMINAR_DB_PASSWORD": ""})
    world = World(args.seed)
    facade = LuminarDB(settings)
    await facade.initialize()
    out: dict[str, Any] = {}
    try:
        with psycopg.connect(primary.conninfo(), autocommit=True) as up, \
                psycopg.connect(replica.conninfo(), autocommit=True) as down:
            wait_for(up, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'", 1,
                     "replicas streaming from the primary")
            seconds = wait_until(down, "SELECT pg_last_wal_replay_lsn()::text", flushed_position(up),
                                 "replayed the migrated schema", args.deadline)
            say(f"replica streaming on port {replica.port}, schema replayed ({seconds:.2f} s)")

            # -- following -------------------------------------------------------------------------------------
            batches = materialize(world, args.events, args.batch_size, 0)
            up.execute("CHECKPOINT")  # each load starts after a checkpoint (see the module's docs)
            sampler = LagSampler(primary.conninfo(), replica.conninfo())
            start_lsn = insert_position(up)
            sampler.start()
            try:
                load_seconds = await bulk_facade(facade, batches)
                start = time.perf_counter()  # the last commit has returned
                end_lsn = flushed_position(up)
                wait_until(down, "SELECT pg_last_wal_receive_lsn()::text", end_lsn, "received the load", args.deadline)
                received = time.perf_counter() - start
                wait_until(down, "SELECT pg_last_wal_replay_lsn()::text", end_lsn, "replayed the load", args.deadline)
                caught_up = time.perf_counter() - start
            finally:
                lags = sampler.stop()
            batches.clear()
            gc.unfreeze()
            wal = end_lsn - start_lsn
            out["following"] = {
                "events": args.events, "primary_seconds": round(load_seconds, 3),
                "primary_rows_per_second": round(args.events / load_seconds),
                "wal_bytes": wal, "wal_mb": round(wal / MB, 1),
                "primary_wal_mb_per_second": round(wal / MB / load_seconds, 1),
                "received_seconds_after_last_commit": round(received, 3),
                "replay_done_seconds_after_last_commit": round(caught_up, 3),
                "max_replay_lag_bytes": max(lags, default=0), "max_replay_lag_mb": round(max(lags, default=0) / MB, 1),
                "lag_samples": len(lags)}
            say(f"following: {args.events:,} events in {load_seconds:.1f} s ({args.events / load_seconds:,.0f} "
                f"rows/s), {wal / MB:,.1f} MB of WAL; replayed {caught_up:.2f} s after the last commit; max lag "
                f"{max(lags, default=0) / MB:,.1f} MB over {len(lags)} samples")

            # -- catching up -----------------------------------------------------------------------------------
            batches = materialize(world, args.events, args.batch_size, 1)
            up.execute("CHECKPOINT")
            down.execute("SELECT pg_wal_replay_pause()")
            wait_for(down, "SELECT pg_get_wal_replay_pause_state()", "paused", "replay pause state")
            paused_at = replay_position(down)
            start_lsn = insert_position(up)
            load_seconds = await bulk_facade(facade, batches)
            committed = time.perf_counter()
            end_lsn = flushed_position(up)
            batches.clear()
            gc.unfreeze()
            # The whole backlog on the replica's disk before the clock starts: the time is replay, not transfer.
            wait_until(down, "SELECT pg_last_wal_receive_lsn()::text", end_lsn, "received the load", args.deadline)
            received = time.perf_counter() - committed
            if replay_position(down) != paused_at:
                raise RuntimeError("the replica replayed while paused")
            startup = down.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'startup'").fetchone()[0]
            cpu_before = cpu_seconds(startup)
            start = time.perf_counter()
            down.execute("SELECT pg_wal_replay_resume()")
            wait_until(down, "SELECT pg_last_wal_replay_lsn()::text", end_lsn, "replayed the backlog", args.deadline)
            replay_seconds = time.perf_counter() - start  # from the resume call
            replay_cpu = cpu_seconds(startup) - cpu_before
            backlog = end_lsn - paused_at
            wal = end_lsn - start_lsn
            primary_rate = args.events / load_seconds
            apply_rate = args.events / replay_seconds
            out["catching_up"] = {
                "events": args.events, "primary_seconds": round(load_seconds, 3),
                "primary_rows_per_second": round(primary_rate), "wal_bytes": wal, "wal_mb": round(wal / MB, 1),
                "primary_wal_mb_per_second": round(wal / MB / load_seconds, 1),
                "received_seconds_after_last_commit": round(received, 3),
                "backlog_bytes": backlog, "backlog_mb": round(backlog / MB, 1),
                "replay_seconds": round(replay_seconds, 3),
                "apply_wal_mb_per_second": round(backlog / MB / replay_seconds, 1),
                "apply_events_per_second": round(apply_rate),
                "apply_to_primary_write_ratio": round(apply_rate / primary_rate, 2),
                "startup_process_cpu_seconds": round(replay_cpu, 2),
                "startup_process_cpu_share": round(replay_cpu / replay_seconds, 2)}
            say(f"catching up: {backlog / MB:,.1f} MB of WAL ({args.events:,} events) replayed in "
                f"{replay_seconds:.2f} s: {backlog / MB / replay_seconds:,.1f} MB/s, {apply_rate:,.0f} events/s, "
                f"{apply_rate / primary_rate:.2f}x the primary's {primary_rate:,.0f} rows/s")

            count = "SELECT count(*) FROM crime_events"
            out["crime_events"] = {"primary": up.execute(count).fetchone()[0],
                                   "replica": down.execute(count).fetchone()[0]}
            out["postgresql"] = up.execute("SHOW server_version").fetchone()[0]
            if out["crime_events"]["primary"] != out["crime_events"]["replica"]:
                raise RuntimeError(f"the replica differs from the primary: {out['crime_events']}")
    finally:
        await facade.close()
    return out


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=False)
    except OSError:
        return None
    return done.stdout.strip() or None


def table(report: dict[str, Any]) -> str:
    f, c = report["following"], report["catching_up"]
    rows = [
        ("following: primary write rate", f"{f['primary_rows_per_second']:,} rows/s ({f['primary_seconds']} s)"),
        ("following: WAL generated", f"{f['wal_mb']:,} MB ({f['primary_wal_mb_per_second']} MB/s)"),
        ("following: replayed after the last commit", f"{f['replay_done_seconds_after_last_commit']} s (received "
                                                      f"after {f['received_seconds_after_last_commit']} s)"),
        ("following: max replay lag", f"{f['max_replay_lag_mb']:,} MB ({f['lag_samples']} samples)"),
        ("catching up: primary write rate", f"{c['primary_rows_per_second']:,} rows/s ({c['primary_seconds']} s)"),
        ("catching up: backlog", f"{c['backlog_mb']:,} MB"),
        ("catching up: replay time", f"{c['replay_seconds']} s"),
        ("catching up: apply rate", f"{c['apply_wal_mb_per_second']} MB/s of WAL, "
                                    f"{c['apply_events_per_second']:,} events/s"),
        ("catching up: apply / primary write", f"{c['apply_to_primary_write_ratio']}x"),
        ("catching up: startup process CPU", f"{c['startup_process_cpu_share']:.0%} of one core"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join([f"| {'figure':<{width}} | value |", f"|{'-' * (width + 2)}|---|",
                      *(f"| {name:<{width}} | {value} |" for name, value in rows)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="events of each load (default 200,000)")
    parser.add_argument("--batch-size", type=int, default=50_000, help="events per COPY, one miner each "
                                                                       "(default 50,000)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the synthetic world (default 7)")
    parser.add_argument("--deadline", type=float, default=600, help="seconds any wait for the replica may take "
                                                                    "(default 600)")
    parser.add_argument("--durable", action="store_true", help="servers with synchronous_commit = on (as production)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args(argv)
    if args.events < 1 or args.batch_size < 1:
        parser.error("--events and --batch-size must be at least 1")

    from luminar_store.errors import LuminarError
    from luminar_store.migrator import migrate_database

    stop_on_sigterm()
    started = dt.datetime.now(dt.UTC)
    load_start = os.getloadavg()
    try:
        with ScratchServer(durable=args.durable, extra=PRIMARY_SETTINGS) as primary:
            say(f"primary on port {primary.port}: migrating")
            migrate_database(primary.conninfo())
            with ReplicaServer(primary) as replica:
                raw = asyncio.run(measure(args, primary, replica))
                load_end = os.getloadavg()
        say("scratch servers stopped and removed")
    except (LuminarError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (the scratch servers were stopped and removed)", file=sys.stderr)
        return 130

    report = {
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "plan": {"events": args.events, "batch_size": args.batch_size, "seed": args.seed, "durable": args.durable},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average_start": load_start,
                    "load_average_end": load_end, "postgresql": raw.pop("postgresql")},
        "code": {"git_commit": _git_commit()},
        "server": {"kind": "scratch", "settings": dict(SERVER_SETTINGS, **PRIMARY_SETTINGS,
                                                       synchronous_commit="on" if args.durable else "off"),
                   "replica": "pg_basebackup -R -X stream, replication slot, hot_standby = on, same settings"},
        **raw,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"replica-{started:%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(f"load average {', '.join(f'{x:.2f}' for x in load_start)} at the start, "
          f"{', '.join(f'{x:.2f}' for x in load_end)} at the end; written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
