#!/bin/sh
# Run once by Patroni on the first primary, with a superuser connection URL as $1:
# the ledger's own role and database (its password from LEDGER_DB_PASSWORD).
set -eu
psql -v ON_ERROR_STOP=1 -v pw="$LEDGER_DB_PASSWORD" -d "$1" <<'SQL'
CREATE ROLE ledger LOGIN PASSWORD :'pw';
CREATE DATABASE ledger OWNER ledger;
SQL
