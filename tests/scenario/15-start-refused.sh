#!/bin/bash
# 15-start-refused.sh - SPEC 4.3: a daemon is ready only when it really
# serves.  statmgr facing a site database of a newer schema must refuse
# to start: `sitectl start` fails, no ready file was ever written, no
# process is left; once the database is right again it starts.
# shellcheck disable=SC2016  # check() evaluates its single-quoted condition
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

site_init TST
DB=$ROOT/db/site.db
v=$(sqlite3 "$DB" 'PRAGMA user_version') || fail "cannot read the schema version"
sqlite3 "$DB" 'PRAGMA user_version = 999' || fail "cannot set the schema version"

sc start statmgr >"$SCRATCH/start.out" 2>&1
rc=$?
cat "$SCRATCH/start.out"
expect_eq "exit status of 'sitectl start statmgr' on a newer schema" 1 "$rc"
check '[ ! -e "$ROOT/run/statmgr.ready" ]' "a ready file exists although statmgr refused to start"
check '! pidfile_locked statmgr' "a statmgr still holds its pid file after refusing to start"
check 'grep -q "newer than this sitesrv" "$ROOT/logs/statmgr.log"' "statmgr.log does not say why it refused"
say "ok: refused, no ready file, nothing running"

sqlite3 "$DB" "PRAGMA user_version = $v" || fail "cannot restore the schema version"
sc start statmgr || fail "sitectl start statmgr exited $? once the database was right"
check 'daemon_running statmgr' "statmgr is not running and ready after a good start"
sc stop statmgr || fail "sitectl stop exited $?"
