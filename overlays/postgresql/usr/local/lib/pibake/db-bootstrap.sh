#!/bin/sh
# Patroni's post_bootstrap hook: runs once, as postgres, on the database node that creates the
# cluster, with a connection string to the new primary as its argument (Patroni sets PGPASSFILE).
# Applies /etc/pibake/postgresql/db-bootstrap.sql (idempotent). PIBAKE_BOOTSTRAP_SQL overrides
# the file (tests).
set -eu
conninfo=${1:?usage: db-bootstrap.sh CONNINFO}
sql=${PIBAKE_BOOTSTRAP_SQL:-/etc/pibake/postgresql/db-bootstrap.sql}
psql -X -q -v ON_ERROR_STOP=1 -d "$conninfo" -f "$sql"
echo "pibake-db-bootstrap: database, roles and demo table are in place" >&2
