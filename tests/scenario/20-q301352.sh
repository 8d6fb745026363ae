#!/bin/bash
# 20-q301352.sh - SPEC 4.2 (SMS defect Q301352, lost status messages).
#
# SMS clients named the files they dropped into the client access point
# from the clock; many clients at one moment drew the same names and,
# after a few collisions, deleted the message.  Here 16 clients send 32
# messages each to one drop box at the same time, all on one frozen clock
# (libfaketime) and each in its own pid namespace, so that every client
# has the same pid sequence: anything derived from time or pid collides.
# All 512 messages must arrive, each exactly once, nothing quarantined.
# shellcheck disable=SC2016  # check() evaluates its single-quoted condition
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

CLIENTS=16
PER_CLIENT=32
TOTAL=$((CLIENTS * PER_CLIENT))

# libfaketime is preloaded directly: the faketime wrapper names a POSIX
# semaphore after its own pid, and equal pids in the namespaces collide.
FTLIB=
for f in /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 /usr/lib/*/faketime/libfaketime.so.1 \
    /usr/lib/faketime/libfaketime.so.1 /usr/lib64/faketime/libfaketime.so.1 /usr/local/lib/faketime/libfaketime.so.1; do
    [ -f "$f" ] && { FTLIB=$f; break; }
done
[ -n "$FTLIB" ] || fail "libfaketime.so.1 not found (install libfaketime)"
# --mount-proc: a /proc of the namespace's own, so that the pids a
# process reads there (LeakSanitizer does, in a sanitizer build) are its.
if [ "$(id -u)" -eq 0 ]; then
    NS=(unshare --pid --fork --mount --mount-proc)
else
    NS=(unshare --user --map-root-user --pid --fork --mount --mount-proc)
fi
nspid=$("${NS[@]}" sh -c 'echo $$' 2>&1)
[ "$nspid" = 1 ] || fail "cannot make a pid namespace with '${NS[*]}': $nspid"
say "pid namespaces: ${NS[*]}"

# One frozen instant, an hour ago so that statmgr does not hold the
# messages as dated in the future.
frozen_s=$(($(date +%s) - 3600))
FROZEN=$(date -u -d "@$frozen_s" '+%Y-%m-%d %H:%M:%S')
# (In a namespace with a private /dev/shm, where libfaketime leaves its
# per-pid shared memory.)
got=$("${NS[@]}" sh -c 'mount -t tmpfs -o size=1m scn-shm /dev/shm && LD_PRELOAD=$1 FAKETIME=$2 FAKETIME_DONT_FAKE_MONOTONIC=1 TZ=UTC sh -c "date +%s%N; sleep 0.2; date +%s%N"' sh "$FTLIB" "$FROZEN" | sort -u)
[ "$got" = "${frozen_s}000000000" ] || fail "FAKETIME='$FROZEN' with $FTLIB does not freeze the clock (read: $got)"
say "frozen clock: $FROZEN UTC ($frozen_s)"

site_init TST
sc start statmgr || fail "sitectl start statmgr exited $?"
CAP=$ROOT/inboxes/cap
BOX=$CAP/statmsgs.box
EV=$SCRATCH/evidence
mkdir -p "$EV"

# One client: its own pid and mount namespaces, then for each message a
# shell under the frozen clock that records (time, pid, n) and execs
# sitectl, so the recorded pid is sitectl's own.  Nothing else forks in
# the namespace, so the n-th send has the same pid in every client.
# libfaketime keeps a semaphore and shared memory named after the pid in
# /dev/shm: each client mounts a private /dev/shm, or the equal pids would
# collide there.  All clients wait for the go file outside their
# namespace, since the polling forks.
client_script='
c=$1 cap=$2 ev=$3 sitectl=$4 frozen=$5 per=$6 ftlib=$7
mount -t tmpfs -o size=1m,mode=1777 scn-shm /dev/shm || exit 1
n=1
while [ "$n" -le "$per" ]; do
    LD_PRELOAD=$ftlib FAKETIME=$frozen FAKETIME_DONT_FAKE_MONOTONIC=1 TZ=UTC sh -c "echo \"\$(date +%s%N) \$\$ $n\" >>\"$ev/ev-$c\"; exec \"\$0\" client send-status --cap \"$cap\" --id 8600 --istr q-$c-$n >/dev/null" "$sitectl" ||
        echo "client $c message $n: sitectl exited $?" >>"$ev/err-$c"
    n=$((n + 1))
done
'
GO=$SCRATCH/go
pids=()
for c in $(seq 1 $CLIENTS); do
    (while [ ! -e "$GO" ]; do sleep 0.01; done
     exec "${NS[@]}" bash -c "$client_script" client "$c" "$CAP" "$EV" "$SITECTL" "$FROZEN" "$PER_CLIENT" "$FTLIB") &
    pids+=($!)
    bg_track $!
done
say "$CLIENTS clients ready; go"
touch "$GO"
bad=0
for p in "${pids[@]}"; do
    wait "$p" || bad=$((bad + 1))
done
SCN_BG_PIDS=()
errs=$(cat "$EV"/err-* 2>/dev/null)
[ -z "$errs" ] || fail "client sends failed: $(printf '%s' "$errs" | head -n 5)"
check '[ "$bad" -eq 0 ]' "$bad client processes exited non-zero"
say "ok: $CLIENTS clients x $PER_CLIENT sends all returned 0"

# Evidence that they really collided on clock and pid.
nev=$(cat "$EV"/ev-* | wc -l)
expect_eq "evidence lines (one per send)" "$TOTAL" "$nev"
times=$(cut -d' ' -f1 "$EV"/ev-* | sort -u)
expect_eq "distinct clock readings across all clients" 1 "$(printf '%s\n' "$times" | wc -l)"
say "ok: every send read the same clock: $times"
npairs=$(awk '{print $3, $2}' "$EV"/ev-* | sort -u | wc -l)
expect_eq "distinct (message number, pid) pairs: the n-th send had the same pid in every client" "$PER_CLIENT" "$npairs"
say "ok: pids of send 1..3 in every client: $(awk '$3<=3 {print $2}' "$EV"/ev-* | sort -un | tr '\n' ' ')"

all_in() { [ "$(db_count "SELECT count(*) FROM statmsg WHERE istr LIKE '%\"q-%'")" -ge "$TOTAL" ]; }
wait_for 90 all_in || fail "expected $TOTAL rows with istr like '%q-%' within 90 s, got $(db_count "SELECT count(*) FROM statmsg WHERE istr LIKE '%\"q-%'")"
# Both boxes empty (nothing in flight) before counting exactly, so a late
# duplicate would show.
boxes_empty() { [ "$(inbox_files "$BOX")" -eq 0 ] && [ "$(inbox_files "$ROOT/inboxes/statmgr.box/statmsgs")" -eq 0 ]; }
wait_for 10 boxes_empty ||
    fail "drop box not drained: $(inbox_files "$BOX") files in cap/statmsgs.box"
sc stop statmgr || fail "sitectl stop statmgr exited $?"

expect_eq "rows with istr like '%q-%'" "$TOTAL" "$(db_count "SELECT count(*) FROM statmsg WHERE istr LIKE '%\"q-%'")"
expect_eq "distinct istr values" "$TOTAL" "$(db_count "SELECT count(DISTINCT istr) FROM statmsg WHERE istr LIKE '%\"q-%'")"
expect_eq "distinct uid values" "$TOTAL" "$(db_count "SELECT count(DISTINCT uid) FROM statmsg WHERE istr LIKE '%\"q-%'")"
for c in 1 $CLIENTS; do
    expect_eq "rows of client $c" "$PER_CLIENT" "$(db_count "SELECT count(*) FROM statmsg WHERE istr LIKE '%\"q-$c-%'")"
done
# What the database recorded agrees with the evidence: one time, and each
# pid shared by all clients.
expect_eq "distinct machine names in the rows" 1 "$(db_count "SELECT count(DISTINCT machine) FROM statmsg WHERE istr LIKE '%\"q-%'")"
expect_eq "distinct time_ms in the rows" 1 "$(db_count "SELECT count(DISTINCT time_ms) FROM statmsg WHERE istr LIKE '%\"q-%'")"
expect_eq "time_ms of the rows" "${frozen_s}000" "$(db_count "SELECT min(time_ms) FROM statmsg WHERE istr LIKE '%\"q-%'")"
expect_eq "pids not shared by exactly $CLIENTS rows" 0 "$(db_count "SELECT count(*) FROM (SELECT pid FROM statmsg WHERE istr LIKE '%\"q-%' GROUP BY pid HAVING count(*) <> $CLIENTS)")"
expect_eq "files left in cap/statmsgs.box" 0 "$(inbox_files "$BOX")"
expect_eq "files left in cap/statmsgs.box/work" 0 "$(inbox_files "$BOX/work")"
expect_eq "files left in cap/statmsgs.box/.tmp" 0 "$(inbox_files "$BOX/.tmp")"
expect_eq "quarantined files in cap/statmsgs.box" 0 "$(corrupt_files "$BOX")"
expect_eq "quarantined files in statmgr.box/statmsgs" 0 "$(corrupt_files "$ROOT/inboxes/statmgr.box/statmsgs")"
say "PASS"
