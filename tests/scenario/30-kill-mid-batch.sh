#!/bin/bash
# 30-kill-mid-batch.sh - statmgr killed with SIGKILL in the middle of
# ingesting, twice, then restarted: every message ends up in the database
# exactly once (the uid key makes a re-read file harmless; start-up
# recovery returns work/ to the inbox), nothing is quarantined, and the
# stale pid file of the killed daemon does not prevent a start.
# shellcheck disable=SC2016  # check() evaluates its single-quoted condition
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

N=${SCN_KILL_COUNT:-20000}
BOX_REL=statmgr.box/statmsgs

site_init TST
BOX=$ROOT/inboxes/$BOX_REL
sc config set statmgr.batch 1000 || fail "sitectl config set statmgr.batch 1000 exited $?"

out=$("$TOOLS/smgen" --box "$BOX" --count "$N" --nosync) || fail "smgen exited $?: $out"
expect_eq "messages written by smgen" "$N" "$out"
expect_eq "files waiting in $BOX_REL" "$N" "$(inbox_files "$BOX")"

rows() { db_count "SELECT count(*) FROM statmsg WHERE component='smgen'"; }

# Kill statmgr -9 once the row count is past $1 (and below N), after a
# random 0-90 ms so that the kill does not always follow a commit: it may
# land while a batch is read, inserted, committed or being unlinked.
# The poll is a tight loop on purpose: it chases a moving target.
kill_between() {
    local low=$1 pid n deadline=$(($(scn_now_ms) + 60000))
    pid=$(daemon_pid statmgr)
    is_our_daemon "$pid" || fail "run/statmgr.pid names '$pid', not a running statmgr"
    while :; do
        n=$(rows)
        if [ "$n" -gt "$low" ] && [ "$n" -lt "$N" ]; then
            sleep "0.0$((RANDOM % 10))"
            kill -KILL "$pid"
            break
        fi
        [ "$n" -ge "$N" ] && fail "statmgr ingested all $N messages before the kill (past $low rows); raise SCN_KILL_COUNT"
        [ "$(scn_now_ms)" -ge "$deadline" ] && fail "statmgr did not ingest past $low rows in 60 s (at $n)"
    done
    wait_for 10 pid_gone "$pid" || fail "statmgr pid $pid still alive 10 s after SIGKILL"
    KILLED_AT=$(rows)
    [ "$KILLED_AT" -lt "$N" ] || fail "the kill came after statmgr had ingested all $N messages; raise SCN_KILL_COUNT"
    say "ok: statmgr (pid $pid) killed with SIGKILL at $n rows seen ($KILLED_AT committed), gone"
    check '[ -f "$ROOT/run/statmgr.pid" ]' "the killed statmgr left no pid file (this test wants a stale one)"
    LAST_PID=$pid
}

restart() {
    sc start statmgr || fail "sitectl start statmgr after SIGKILL exited $? (stale pid file of pid $LAST_PID)"
    local pid
    pid=$(daemon_pid statmgr)
    is_our_daemon "$pid" || fail "after restart run/statmgr.pid names '$pid', not a running statmgr"
    check '[ "$pid" != "$LAST_PID" ]' "run/statmgr.pid still names the killed pid $LAST_PID"
    check '[ -f "$ROOT/run/statmgr.ready" ]' "restarted statmgr has no ready file"
    say "ok: restarted despite the stale pid file, new pid $pid"
}

sc start statmgr || fail "sitectl start statmgr exited $?"
kill_between 0
first=$KILLED_AT
restart
# The second kill lands a good way further on.
kill_between $((first + (N - first) / 3))
restart

drained() {
    [ "$(inbox_files "$BOX")" -eq 0 ] && [ "$(inbox_files "$BOX/work")" -eq 0 ] && [ "$(rows)" -ge "$N" ]
}
wait_for 120 drained || fail "not drained within 120 s: $(inbox_files "$BOX") files waiting, $(inbox_files "$BOX/work") in work/, $(rows) of $N rows"
sc stop statmgr || fail "sitectl stop statmgr exited $?"

expect_eq "smgen rows" "$N" "$(rows)"
expect_eq "distinct uid among smgen rows" "$N" "$(db_count "SELECT count(DISTINCT uid) FROM statmsg WHERE component='smgen'")"
expect_eq "distinct istr among smgen rows" "$N" "$(db_count "SELECT count(DISTINCT istr) FROM statmsg WHERE component='smgen'")"
expect_eq "quarantined files in $BOX_REL" 0 "$(corrupt_files "$BOX")"
expect_eq "files left in $BOX_REL/work" 0 "$(inbox_files "$BOX/work")"
dups=$(grep -ao "[0-9]* already recorded" "$ROOT/logs/statmgr.log" | awk "{s += \$1} END {print s + 0}")
say "info: statmgr found $dups messages already recorded (files read again after a kill)"
say "PASS"
