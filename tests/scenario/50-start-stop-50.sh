#!/bin/bash
# 50-start-stop-50.sh - SPEC 4.3 (hang after restart): statmgr started
# and stopped 50 times back to back, with no sleep between, while a
# producer keeps dropping status messages into both of its inboxes.
# Every start must return 0 once statmgr is really ready (ready file
# naming the running pid), every stop 0 once it has exited (no process
# holding the pid file), and in the end every message sent is in the
# database exactly once.
# shellcheck disable=SC2016  # check() evaluates its single-quoted condition
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

CYCLES=${SCN_CYCLES:-50}

site_init TST
STATMSGS=$ROOT/inboxes/statmgr.box/statmsgs
CAP=$ROOT/inboxes/cap
STOP=$SCRATCH/stop-producer
COUNTF=$SCRATCH/sent
ERRF=$SCRATCH/producer-errors

# The producer counts exactly what was handed over: smgen prints how many
# files it wrote (also on a failure), sitectl exits 0 only after its drop.
producer() {
    local i=0 sent=0 out rc
    while [ ! -e "$STOP" ]; do
        i=$((i + 1))
        out=$("$TOOLS/smgen" --box "$STATMSGS" --count 10 --prefix prod \
            --component producer --istr-prefix "p$i")
        rc=$?
        sent=$((sent + ${out:-0}))
        [ "$rc" -eq 0 ] || echo "smgen batch $i exited $rc after $out files" >>"$ERRF"
        if "$SITECTL" --root "$ROOT" client send-status --cap "$CAP" --id 8602 \
            --component producer --istr "c$i" >/dev/null; then
            sent=$((sent + 1))
        else
            echo "sitectl client send-status $i exited $?" >>"$ERRF"
        fi
        echo "$sent" >"$COUNTF.new" && mv "$COUNTF.new" "$COUNTF"
        sleep 0.02   # a steady trickle, leaving the cores to the test
    done
}
producer &
PROD=$!
bg_track "$PROD"
say "producer running (pid $PROD)"

max_start=0 max_stop=0
for i in $(seq 1 "$CYCLES"); do
    t0=$(scn_now_ms)
    sc start statmgr || fail "cycle $i: sitectl start statmgr exited $?"
    t1=$(scn_now_ms)
    pid=$(daemon_pid statmgr)
    is_our_daemon "$pid" || fail "cycle $i: after start, run/statmgr.pid names '$pid', not a running statmgr"
    [ -f "$ROOT/run/statmgr.ready" ] || fail "cycle $i: start returned but run/statmgr.ready is missing"
    grep -Eq "(^|[^0-9])$pid([^0-9]|\$)" "$ROOT/run/statmgr.ready" ||
        fail "cycle $i: run/statmgr.ready does not name the running pid $pid: $(tr '\n' ' ' <"$ROOT/run/statmgr.ready")"
    pidfile_locked statmgr || fail "cycle $i: statmgr (pid $pid) is running but nobody holds the lock on run/statmgr.pid"
    t2=$(scn_now_ms)
    sc stop statmgr || fail "cycle $i: sitectl stop statmgr exited $?"
    t3=$(scn_now_ms)
    ! pidfile_locked statmgr || fail "cycle $i: after stop, a process still holds the lock on run/statmgr.pid"
    ! [ -f "$ROOT/run/statmgr.ready" ] || fail "cycle $i: after stop, run/statmgr.ready is still there"
    wait_for 5 pid_gone "$pid" || fail "cycle $i: statmgr pid $pid still alive 5 s after sitectl stop returned"
    [ $((t1 - t0)) -gt "$max_start" ] && max_start=$((t1 - t0))
    [ $((t3 - t2)) -gt "$max_stop" ] && max_stop=$((t3 - t2))
done
say "ok: $CYCLES start/stop cycles, each returned 0 (slowest start ${max_start} ms, slowest stop ${max_stop} ms)"

touch "$STOP"
wait "$PROD" || true
SCN_BG_PIDS=()
[ -s "$ERRF" ] && fail "the producer saw failures: $(head -n 3 "$ERRF" | tr '\n' ';')"
sent=$(cat "$COUNTF" 2>/dev/null || echo 0)
check '[ "$sent" -gt 0 ]' "the producer sent nothing"
say "producer stopped after sending $sent messages"

sc start statmgr || fail "final sitectl start statmgr exited $?"
rows() { db_count "SELECT count(*) FROM statmsg WHERE component='producer'"; }
drained() {
    [ "$(inbox_files "$STATMSGS")" -eq 0 ] && [ "$(inbox_files "$CAP/statmsgs.box")" -eq 0 ] &&
        [ "$(rows)" -ge "$sent" ]
}
wait_for 60 drained || fail "not drained within 60 s: $(inbox_files "$STATMSGS") + $(inbox_files "$CAP/statmsgs.box") files waiting, $(rows) of $sent rows"
sc stop statmgr || fail "final sitectl stop statmgr exited $?"

expect_eq "producer rows" "$sent" "$(rows)"
expect_eq "distinct uid among producer rows" "$sent" "$(db_count "SELECT count(DISTINCT uid) FROM statmsg WHERE component='producer'")"
expect_eq "statmgr 'started' messages (8000), one per start" $((CYCLES + 1)) "$(db_count "SELECT count(*) FROM statmsg WHERE msgid=8000 AND component='statmgr'")"
for b in "$STATMSGS" "$CAP/statmsgs.box"; do
    expect_eq "quarantined files in ${b#"$ROOT"/inboxes/}" 0 "$(corrupt_files "$b")"
    expect_eq "files left in ${b#"$ROOT"/inboxes/}/work" 0 "$(inbox_files "$b/work")"
done
say "PASS"
