#!/bin/bash
# 80-disk-full.sh - the site database's file system fills up while status
# messages arrive (STYLE: ENOSPC is a temporary failure, lose nothing).
# statmgr must keep serving, leave every message file where it is while
# it cannot record it, and ingest each exactly once when space returns.
# db/ is a small tmpfs of its own, so that only the database is starved.
# shellcheck disable=SC2016  # check() evaluates its single-quoted condition
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" -eq 0 ] || skip "mounts a tmpfs, which needs root"

site_init TST
cp -a "$ROOT/db" "$SCRATCH/db" || fail "cannot copy db/"
scn_mount 2m "$ROOT/db" || fail "cannot mount a tmpfs on $ROOT/db"
cp -a "$SCRATCH/db/." "$ROOT/db/" || fail "cannot copy the database into the tmpfs"
sc start statmgr || fail "sitectl start statmgr exited $?"
pid=$(daemon_pid statmgr)
started() { [ "$(db_count "SELECT count(*) FROM statmsg WHERE msgid=8000")" -ge 1 ]; }
wait_for 10 started || fail "statmgr's own 8000 message was not recorded"

# Fill the file system to the last block.
dd if=/dev/zero of="$ROOT/db/filler" bs=4k 2>/dev/null
say "db/ is full: $(df -h "$ROOT/db" | tail -n 1)"

BOX=$ROOT/inboxes/statmgr.box/statmsgs
N=300
"$TOOLS/smgen" --box "$BOX" --count "$N" --istr-prefix full >/dev/null || fail "smgen failed"
# Several refused passes (retried after 1 s, 1 s, 2 s...), not just one.
refusals() { grep -c 'refused a pass' "$ROOT/logs/statmgr.log"; }
failing() { [ "$(refusals)" -ge 3 ]; }
wait_for 20 failing || fail "statmgr did not log three refused passes with a full db/"
# Backing off, not spinning: a statmgr that retried at once logged
# thousands of refusals a second.  Wait for the next one and count.
n0=$(refusals)
one_more() { [ "$(refusals)" -gt "$n0" ]; }
wait_for 40 one_more || fail "statmgr stopped retrying the database"
n1=$(refusals)
check '[ $((n1 - n0)) -le 3 ]' "statmgr retried $((n1 - n0)) times at once: it spins instead of backing off"
say "ok: refused passes are retried with backoff ($n0, then $n1)"
left=$(inbox_files "$BOX")
check '[ "$left" -ge "$N" ]' "with the database full, $((N - left)) message files left the inbox (nothing may go unrecorded)"
check 'daemon_running statmgr && [ "$(daemon_pid statmgr)" = "$pid" ]' "statmgr did not keep running through the full disk"
expect_eq "quarantined files" 0 "$(corrupt_files "$BOX")"
say "ok: while starved, all $N files stay in the inbox and statmgr keeps running"

rm -f "$ROOT/db/filler"
drained() { [ "$(inbox_files "$BOX")" -eq 0 ]; }
wait_for 30 drained || fail "inbox did not drain after space came back: $(inbox_files "$BOX") left"
expect_eq "rows of the starved messages" "$N" "$(db_count "SELECT count(*) FROM statmsg WHERE component='smgen'")"
expect_eq "distinct uids among them" "$N" "$(db_count "SELECT count(DISTINCT uid) FROM statmsg WHERE component='smgen'")"
expect_eq "statmgr pid" "$pid" "$(daemon_pid statmgr)"
sc stop statmgr || fail "sitectl stop exited $?"
