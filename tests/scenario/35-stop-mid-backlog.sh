#!/bin/bash
# 35-stop-mid-backlog.sh - an orderly stop in the middle of a large
# backlog, three times: each stop is prompt and clean (no removal left
# running on closed inbox descriptors: no "cannot remove" warning), and
# in the end every message is recorded exactly once.
# shellcheck disable=SC2016  # check() evaluates its single-quoted condition
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

N=20000
site_init TST
BOX=$ROOT/inboxes/statmgr.box/statmsgs
"$TOOLS/smgen" --box "$BOX" --count "$N" --nosync >/dev/null || fail "smgen failed"
sync

rows() { db_count "SELECT count(*) FROM statmsg WHERE component='smgen'"; }
for round in 1 2 3; do
    before=$(rows)
    sc start statmgr || fail "start $round exited $?"
    moved() { [ "$(rows)" -gt "$before" ]; }
    wait_for 30 moved || fail "round $round: nothing recorded after start"
    sc stop statmgr || fail "stop $round exited $?"
    check '! pidfile_locked statmgr' "round $round: statmgr still holds its pid file after stop"
    say "round $round: stopped with $(rows) of $N recorded, $(inbox_files "$BOX") files left"
done
bad=$(grep -c 'cannot remove\|Bad file descriptor' "$ROOT"/logs/statmgr.lo* "$ROOT/logs/statmgr.log" 2>/dev/null | awk -F: '{s+=$NF} END {print s+0}')
expect_eq "removal warnings after stops in a backlog" 0 "$bad"

sc start statmgr || fail "final start exited $?"
drained() { [ "$(inbox_files "$BOX")" -eq 0 ]; }
wait_for 120 drained || fail "the inbox did not drain: $(inbox_files "$BOX") left"
expect_eq "rows" "$N" "$(rows)"
expect_eq "distinct uids" "$N" "$(db_count "SELECT count(DISTINCT uid) FROM statmsg WHERE component='smgen'")"
expect_eq "quarantined files" 0 "$(corrupt_files "$BOX")"
