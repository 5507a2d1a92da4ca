#!/usr/bin/env bash
# make monitoring-start / monitoring-stop: the monitoring profile of docker-compose.yml (Prometheus, postgres_exporter,
# Grafana with its provisioned dashboard) and `luminar-db metrics`, which Prometheus scrapes on the host.
#
#   start  with a Docker engine: `docker compose --profile monitoring up -d` (the database too), then the logins
#          luminar_grafana and luminar_metrics made if missing (the init script 30_luminar_roles.sh run again in the
#          container: idempotent; it needs LUMINAR_GRAFANA_DB_PASSWORD and LUMINAR_METRICS_DB_PASSWORD in .env or
#          the environment), then `luminar-db metrics --host 0.0.0.0` in the background (pid in
#          .luminar/metrics.pid, log in .luminar/metrics.log). Without an engine: the metrics endpoint alone.
#   stop   the metrics endpoint this script started, and the profile's containers (the database keeps running).
set -euo pipefail
cd "$(dirname "$0")/.."

LUMINAR=.venv/bin/luminar-db
PIDFILE=.luminar/metrics.pid
LOGFILE=.luminar/metrics.log
SERVICES=(prometheus postgres-exporter grafana)

compose() {
  if docker compose version >/dev/null 2>&1; then docker compose "$@";
  elif [ -x .venv/bin/docker-compose ]; then .venv/bin/docker-compose "$@";
  else return 127; fi
}
engine() { command -v docker >/dev/null && docker info >/dev/null 2>&1; }

running_pid() {  # the pid of the metrics endpoint this script started, when it still runs
  [ -f "$PIDFILE" ] || return 1
  local pid
  pid=$(cat "$PIDFILE")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "metrics" \
    && echo "$pid"
}

start() {
  mkdir -p .luminar
  if engine; then
    compose --profile monitoring up -d luminar-db "${SERVICES[@]}"
    compose exec -T luminar-db sh /docker-entrypoint-initdb.d/30_luminar_roles.sh >/dev/null
  else
    echo "monitoring: no Docker engine answers: starting the metrics endpoint only (Prometheus and Grafana need Docker)"
  fi
  if pid=$(running_pid); then
    echo "monitoring: luminar-db metrics already runs (pid $pid)"
  else
    nohup "$LUMINAR" metrics --host 0.0.0.0 >"$LOGFILE" 2>&1 &
    echo $! >"$PIDFILE"
    sleep 1
    running_pid >/dev/null || { echo "monitoring: luminar-db metrics stopped at once; see $LOGFILE:" >&2;
                                tail -n 5 "$LOGFILE" >&2; exit 1; }
  fi
  echo "metrics:    http://localhost:${LUMINAR_METRICS_PORT:-9471}/metrics   (log: $LOGFILE)"
  if engine; then
    echo "Prometheus: http://localhost:9090"
    echo "Grafana:    http://localhost:3000   (user GRAFANA_ADMIN_USER, password GRAFANA_ADMIN_PASSWORD of .env;"
    echo "            dashboard: Dashboards > Luminar > Luminar network)"
  fi
}

stop() {
  if pid=$(running_pid); then
    kill "$pid"
    echo "monitoring: stopped luminar-db metrics (pid $pid)"
  fi
  rm -f "$PIDFILE"
  if engine; then
    compose --profile monitoring stop "${SERVICES[@]}"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: scripts/monitoring.sh start|stop" >&2; exit 2 ;;
esac
