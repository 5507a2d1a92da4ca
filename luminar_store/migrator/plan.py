"""Planning, pure: files and records in, decisions out (states, what to apply, what the resolution options write).

Nothing here touches a database; the runner reads the records under the lock, asks here, then acts.

Example::

    >>> [s.state for s in statuses(files, applied)]
    ['applied', 'pending']
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from luminar_store.errors import MigrationError, ValidationError
from luminar_store.migrator.files import Migration
from luminar_store.migrator.recorder import AppliedMigration, Recorder

__all__ = ["MigrationStatus", "Resolution", "statuses", "plan", "resolutions", "failed_message", "version_of",
           "NEEDS_ATTENTION"]

#: The states of an applied version that ``verify`` reports.
NEEDS_ATTENTION = ("changed", "missing", "failed")


@dataclass(frozen=True)
class MigrationStatus:
    """One version as ``status`` sees it: state is applied, pending, changed, missing or failed."""

    version: str
    name: str
    state: str
    migration: Migration | None = None
    record: AppliedMigration | None = None
    out_of_order: bool = False

    @property
    def label(self) -> str:
        return f"{self.version}_{self.name}"


@dataclass(frozen=True)
class Resolution:
    """A write a resolution option asks for: ``action`` is accept-checksum, mark-resolved or retry; ``record`` is
    the version's record afterwards (None: forgotten); ``line`` says it to a person."""

    action: str
    version: str
    checksum: str
    line: str
    record: AppliedMigration | None

    def write(self, recorder: Recorder) -> None:
        if self.action == "accept-checksum":
            recorder.accept_checksum(self.version, self.checksum)
        elif self.action == "mark-resolved":
            recorder.mark_resolved(self.version, self.checksum)
        else:
            recorder.record_unapplied(self.version)


def statuses(files: list[Migration], applied: dict[str, AppliedMigration]) -> list[MigrationStatus]:
    """Every version known to the files or the records, in order, with its state."""
    by_version = {m.version: m for m in files}
    newest = max(applied, default="")
    out = []
    for version in sorted(set(by_version) | set(applied)):
        m, r = by_version.get(version), applied.get(version)
        if r is None:
            out.append(MigrationStatus(version, m.name, "pending", m, None, version < newest))
        elif r.dirty:
            out.append(MigrationStatus(version, r.name, "failed", m, r))
        elif m is None:
            out.append(MigrationStatus(version, r.name, "missing", None, r))
        else:
            out.append(MigrationStatus(version, m.name, "changed" if m.checksum != r.checksum else "applied", m, r))
    return out


def failed_message(r: AppliedMigration) -> str:
    return (f"migration {r.label} failed part-way outside a transaction ({r.error}); fix the database by hand, then "
            f"run `luminar-db migrate --mark-resolved {r.version}` to record it as applied, or undo its effects by "
            f"hand and run `luminar-db migrate --retry {r.version}` to run it again")


def plan(files: list[Migration], applied: dict[str, AppliedMigration], target: str | None,
         allow_out_of_order: bool) -> list[Migration]:
    """The pending files to apply, in order; raises ``MigrationError`` when a file failed earlier, an applied file
    changed, or a pending file is older than the newest applied one (unless ``allow_out_of_order``)."""
    found = statuses(files, applied)
    failed = [s for s in found if s.state == "failed"]
    if failed:
        raise MigrationError(failed_message(failed[0].record))  # type: ignore[arg-type]
    changed = [s for s in found if s.state == "changed"]
    if changed:
        raise MigrationError(
            "applied migrations were edited since they ran: " + ", ".join(
                f"{s.migration.path.name} (recorded {s.record.checksum[:12]}, file now {s.migration.checksum[:12]})"
                for s in changed)  # type: ignore[union-attr]
            + "; restore the applied text, or keep the new text with `luminar-db migrate --accept-checksum "
            + " --accept-checksum ".join(s.version for s in changed) + "`"
        )
    pending = [s for s in found if s.state == "pending" and (target is None or s.version <= target)]
    late = [s for s in pending if s.out_of_order]
    if late and not allow_out_of_order:
        newest = applied[max(applied)]
        raise MigrationError(
            f"{late[0].migration.path.name} is pending but older than the newest applied migration "  # type: ignore
            f"{newest.label}; it was probably merged after that one ran. Check it does not conflict, then apply it "
            "with `luminar-db migrate --allow-out-of-order`"
        )
    return [s.migration for s in pending]  # type: ignore[misc]


def version_of(text: str) -> str:
    """``20250817120000`` from a version, a label or a file name; raises ``ValidationError`` (field version)."""
    m = re.fullmatch(r"(\d{14})(_[a-z0-9_]*)?(\.sql)?", str(text).strip())
    if not m:
        raise ValidationError("version", f"{text!r} is not a migration version like 20250817120000")
    return m.group(1)


def resolutions(applied: dict[str, AppliedMigration], files: dict[str, Migration], accept: Iterable[str],
                resolved: Iterable[str], retry: Iterable[str]) -> list[Resolution]:
    """The writes the resolution options ask for; raises ``MigrationError`` when one does not fit the records."""
    writes: list[Resolution] = []
    accept, resolved, retry = ([version_of(v) for v in vs] for vs in (accept, resolved, retry))
    both = sorted(set(resolved) & set(retry))
    if both:
        raise MigrationError(f"--mark-resolved and --retry both name {', '.join(both)}; choose one")

    def record(version: str, option: str, want_dirty: bool) -> AppliedMigration:
        r = applied.get(version)
        if r is None:
            raise MigrationError(f"{option} {version}: that version is not recorded as applied")
        if r.dirty != want_dirty:
            raise MigrationError(f"{option} {version}: {r.label} " + (
                "did not fail; nothing to resolve" if want_dirty else
                f"failed part-way; resolve it with --mark-resolved {version} or --retry {version}"))
        return r

    for version in accept:
        r, m = record(version, "--accept-checksum", False), files.get(version)
        if m is None:
            raise MigrationError(f"--accept-checksum {version}: {r.label} has no file in the directory to accept")
        if m.checksum != r.checksum:
            writes.append(Resolution("accept-checksum", version, m.checksum,
                                     f"accept the edited text of {m.path.name}", replace(r, checksum=m.checksum)))
    for version in resolved:
        r = record(version, "--mark-resolved", True)
        sha = files[version].checksum if version in files else r.checksum
        writes.append(Resolution("mark-resolved", version, sha, f"mark {r.label} as resolved (applied)",
                                 replace(r, dirty=False, error=None, checksum=sha)))
    for version in retry:
        r = record(version, "--retry", True)
        writes.append(Resolution("retry", version, r.checksum, f"forget the failed run of {r.label} (it runs again)",
                                 None))
    return writes
