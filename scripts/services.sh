#!/usr/bin/env bash
# Make sure the database servers the test suite uses are up (MariaDB, PostgreSQL).
# Used by .ci/run; safe to run by hand. Exits non-zero if one cannot be started.
set -uo pipefail

wait_for() {  # name, check command...
  local name=$1; shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then echo "$name is up"; return 0; fi
    sleep 1
  done
  echo "$name did not come up" >&2
  return 1
}

pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q; }
maria_up() { mariadb-admin -h 127.0.0.1 -u root ping || mysqladmin -h 127.0.0.1 -u root ping; }

rc=0
if ! pg_up >/dev/null 2>&1; then
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi
wait_for PostgreSQL pg_up || rc=1

if ! maria_up >/dev/null 2>&1; then
  echo "starting MariaDB"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
fi
wait_for MariaDB maria_up || rc=1
exit $rc
