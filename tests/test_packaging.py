"""The package as a user gets it: the sdist holds what a build needs, and the wheel built from that sdist, installed
in a fresh virtualenv outside the repository, migrates, reports, resets and loads sample data on its own.

Cheap on purpose: the wheel is built once per module, and the fresh virtualenv gets its dependencies by a ``.pth``
line naming this environment's site-packages (added after the install, so pip never sees, let alone touches, the
editable install here; the editable install's own finder is not loaded from such a path).
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from luminar_store.config import Settings

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SQL_FILES = sorted(p.name for p in (ROOT / "migrations").glob("*.sql"))
CORE_TABLES = {"raw_incident_reports", "crime_events", "miner_performance", "validator_performance",
               "consensus_records", "crime_clusters", "risk_zones", "audit_log", "schema_migrations"}


@dataclass(frozen=True)
class Built:
    sdist: Path
    wheel: Path
    venv: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def luminar_db(self) -> Path:
        return self.venv / "bin" / "luminar-db"


def _run(args: list, *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 180) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, args))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _source_tree(into: Path) -> Path:
    """The files a clean checkout would have (tracked, or new and not ignored), copied: a build in the working
    tree would reuse its stale build/ and *.egg-info/."""
    listed = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT)
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is not there
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    return into


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    work = tmp_path_factory.mktemp("packaging")
    source = _source_tree(work / "source")
    dist = work / "dist"
    # The PEP 517 sdist hook, as `python -m build --sdist` calls it (build is not installed here).
    name = _run([sys.executable, "-c", "import sys; from setuptools import build_meta as b; "
                 "print(b.build_sdist(sys.argv[1]))", dist], cwd=source).strip().splitlines()[-1]
    sdist = dist / name
    with tarfile.open(sdist) as tar:
        tar.extractall(work / "unpacked", filter="data")
    unpacked = work / "unpacked" / name.removesuffix(".tar.gz")
    # The wheel from the sdist (what pip does with an sdist), in pip's isolated build environment.
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", dist, unpacked], cwd=work)
    wheel = next(dist.glob("luminar_store-*.whl"))
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=work)
    _run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--quiet", "--no-deps",
          "--no-index", wheel], cwd=work)
    site = Path(_run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=work).strip())
    (site / "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return Built(sdist, wheel, venv)


def test_the_sdist_holds_what_a_build_needs(built):
    with tarfile.open(built.sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    wanted = {"setup.cfg", "setup.py", "pyproject.toml", "README.md", "LICENSE", "MANIFEST.in",
              "migrations/__init__.py", *(f"migrations/{f}" for f in SQL_FILES)}
    assert wanted <= names, f"missing from the sdist: {sorted(wanted - names)}"


def test_the_wheel_holds_the_migrations_as_package_data_and_the_license(built):
    with zipfile.ZipFile(built.wheel) as whl:
        names = set(whl.namelist())
    wanted = {"luminar_store/migrations/__init__.py", "luminar_store/migrator/__init__.py",
              "luminar_store/init_scripts/pg_hba.production.conf.template",
              *(f"luminar_store/migrations/{f}" for f in SQL_FILES)}
    assert wanted <= names, f"missing from the wheel: {sorted(wanted - names)}"
    assert any(".dist-info/" in n and n.endswith("/LICENSE") for n in names), sorted(names)  # licenses/ lately
    assert not any(n.startswith(("migrations/", "tests/")) for n in names), "a top-level folder leaked into the wheel"
    # Every package of the source tree is in the wheel (setup.py finds them; nothing to list by hand).
    packages = {str(p.parent.relative_to(ROOT)) for p in (ROOT / "luminar_store").rglob("__init__.py")}
    assert {f"{p}/__init__.py" for p in packages} <= names


def test_the_installed_package_runs_every_database_command_outside_the_repository(built, empty_db: Settings,
                                                                                tmp_path):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("LUMINAR_") and k not in ("PYTHONPATH", "DATABASE_URL", "VIRTUAL_ENV")}
    env.update({"LUMINAR_ENV": "testing", "LUMINAR_DB_HOST": empty_db.host, "LUMINAR_DB_PORT": str(empty_db.port),
                "LUMINAR_DB_NAME": empty_db.name, "LUMINAR_DB_USER": empty_db.user,
                "LUMINAR_DB_PASSWORD": empty_db.password})
    where = _run([built.python, "-c", "import luminar_store, luminar_store.migrator as m; "
                  "print(luminar_store.__file__); print(m.DEFAULT_DIR)"], cwd=tmp_path, env=env).split()
    assert all(Path(w).is_relative_to(built.venv) for w in where), f"not the wheel's copy: {where}"

    def luminar_db(*args: str) -> str:
        return _run([built.luminar_db, *args], cwd=tmp_path, env=env)

    migrated = luminar_db("migrate")
    assert f"Done: {len(SQL_FILES)} migrations applied." in migrated, migrated
    assert f"{len(SQL_FILES)} applied, 0 pending" in luminar_db("status")
    assert "Migrations: up to date." in luminar_db("setup")
    assert f"{len(SQL_FILES)} migrations applied" in luminar_db("reset", "--yes")
    luminar_db("sample-data", "--reports", "50")
    with psycopg.connect(empty_db.conninfo(), autocommit=True) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert CORE_TABLES <= tables, f"missing tables: {sorted(CORE_TABLES - tables)}"
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(SQL_FILES)
        assert conn.execute("SELECT count(*) FROM raw_incident_reports").fetchone()[0] == 50
        assert conn.execute("SELECT count(*) FROM crime_events").fetchone()[0] > 0
