"""``luminar-db reports release-claims``: hand back to the queue the raw reports whose claim has expired.

The command names its exact target (database, host, port, environment; never the password) before it acts, and
prints how many reports it released. The work is the facade's ``LuminarDB.release_stale_claims``.
"""

from __future__ import annotations

import asyncio

import click

from luminar_store.access import LuminarDB
from luminar_store.cli.common import env_option, settings_for
from luminar_store.config import Settings
from luminar_store.limits import MAX_STALE_MINUTES

__all__ = ["reports_group", "release_claims_command"]


@click.group("reports")
def reports_group() -> None:
    """Look after the queue of raw incident reports that miners claim and process.

    Example: luminar-db reports release-claims --older-than 60
    """


async def _release(settings: Settings, minutes: int | None) -> int:
    facade = LuminarDB(settings)
    try:
        return await facade.release_stale_claims(minutes)
    finally:
        await facade.close()


@reports_group.command("release-claims")
@env_option
@click.option("--older-than", "minutes", type=click.IntRange(1, MAX_STALE_MINUTES), default=None, metavar="MINUTES",
              help="Release the claims older than this many minutes [default: the lease, "
                   "LUMINAR_CLAIM_LEASE_MINUTES, else 30].")
def release_claims_command(env: str | None, minutes: int | None) -> None:
    """Return to the queue (status pending) the reports whose claim is older than the lease.

    A miner claims reports (claim_reports): they become 'processing', claimed by it, with the time of the claim.
    The claim is a lease of LUMINAR_CLAIM_LEASE_MINUTES (default 30): a miner that stops, or loses its connection
    after claiming, leaves its reports 'processing'. The next claim by any miner takes expired claims back by
    itself; this command does it now, e.g. when no miner is claiming. Their processing_attempts are kept, so a
    report that keeps failing stays visible. A claim being settled at this very moment is left to its miner.

    \b
    Example: luminar-db reports release-claims
    Example: luminar-db reports release-claims --older-than 120 --env=testnet
    """
    settings = settings_for(env)
    lease = settings.claim_lease_minutes if minutes is None else minutes
    click.echo(f"Target: {settings.target()}")
    released = asyncio.run(_release(settings, lease))
    click.echo(f"Released {released} claim(s) older than {lease} minutes: those reports are pending again.")
