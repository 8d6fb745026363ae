#!/bin/bash
# 40-bad-files.sh - garbage in every inbox statmgr reads (SPEC 7, STYLE
# "quarantine, never delete, never die"): empty, random, truncated,
# altered, NUL-filled and 10 MB files with good names, and good messages
# under names the library never writes.  Each must land in that inbox's
# corrupt/ with a .reason file, a warning in statmgr.log and a status
# message 8002; statmgr keeps running and keeps ingesting.
# shellcheck disable=SC2016  # check() evaluates its single-quoted condition
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
shopt -s lastpipe   # so that fail() in the last stage of a pipeline ends the test

INBOXES="statmgr.box/statmsgs cap/statmsgs.box statmgr.box/futureq"
PER_INBOX=11

site_init TST
sc start statmgr || fail "sitectl start statmgr exited $?"
pid=$(daemon_pid statmgr)
is_our_daemon "$pid" || fail "run/statmgr.pid names '$pid', not a running statmgr"

# Valid messages to damage or to put under odd names; their istr marks
# them, so it is visible if one is ingested instead of quarantined.
GEN=$SCRATCH/gen
STAGE=$SCRATCH/stage
mkdir -p "$GEN/.tmp" "$STAGE"
out=$("$TOOLS/smgen" --box "$GEN" --count 21 --istr-prefix badfile --nosync) || fail "smgen exited $?: $out"
mapfile -t GOOD < <(find "$GEN" -maxdepth 1 -type f -name '*.svf' | sort)
expect_eq "valid messages made for damaging" 21 "${#GOOD[@]}"
g=0
next_good() { GOODF=${GOOD[$g]}; g=$((g + 1)); }

randname() { printf 'bad-%s.svf' "$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"; }

# Build the file in the staging directory, then rename it into the inbox
# (same filesystem), so statmgr never sees it half written.
put() {   # put INBOXDIR NAME  (content from stdin)
    local tmp=$STAGE/f
    cat >"$tmp" || fail "cannot write $tmp"
    mv -- "$tmp" "$1/$2" || fail "cannot move a bad file into $1"
}

flip_byte() {
    local f=$1 off c r
    off=$(($(stat -c %s "$f") / 2))
    c=$(dd if="$f" bs=1 skip="$off" count=1 2>/dev/null)
    if [ "$c" = X ]; then r=Y; else r=X; fi
    printf '%s' "$r" | dd of="$f" bs=1 seek="$off" conv=notrunc 2>/dev/null
}

longname=$(printf 'x%.0s' $(seq 1 246)).svf
hex=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d " \n" | tr a-f A-F)
upper=smgen-A${hex:1}.svf   # at least one uppercase letter
for rel in $INBOXES; do
    dir=$ROOT/inboxes/$rel
    : | put "$dir" "$(randname)"                                        # empty
    head -c 4096 /dev/urandom | put "$dir" "$(randname)"                # random bytes
    next_good; head -c $(($(stat -c %s "$GOODF") / 2)) "$GOODF" | put "$dir" "$(randname)"  # truncated
    next_good; cp "$GOODF" "$STAGE/flip"; flip_byte "$STAGE/flip"
    put "$dir" "$(randname)" <"$STAGE/flip"                             # one byte altered
    head -c 2048 /dev/zero | put "$dir" "$(randname)"                   # NUL bytes
    head -c 10485760 /dev/zero | tr '\0' a | put "$dir" "$(randname)"   # one 10 MB line
    next_good; put "$dir" $'bad\nname.svf' <"$GOODF"                   # newline in the name
    next_good; put "$dir" "bad name with spaces.svf" <"$GOODF"
    next_good; put "$dir" $'bad-\xff\xfe\x80.svf' <"$GOODF"            # not UTF-8
    next_good; put "$dir" "$upper" <"$GOODF"                            # uppercase hex
    next_good; put "$dir" "$longname" <"$GOODF"                         # 250 characters
    say "put $PER_INBOX bad files into $rel"
done
TOTAL=$((PER_INBOX * 3))

quarantined() {   # quarantined REL: PER_INBOX files and as many .reason in REL/corrupt
    [ "$(corrupt_files "$ROOT/inboxes/$1")" -ge "$PER_INBOX" ] &&
        [ "$(reason_files "$ROOT/inboxes/$1")" -ge "$PER_INBOX" ]
}
inbox_state() {
    local d=$ROOT/inboxes/$1
    say "$1: $(corrupt_files "$d") in corrupt/, $(reason_files "$d") .reason, $(inbox_files "$d") still waiting: $(find "$d" -maxdepth 1 -type f ! -name '.*' -printf '%f|' | tr '\n' '?' | cat -v | cut -c 1-400)"
}
check_inbox() {   # check_inbox REL: the counts, nothing left, a .reason for each
    local d=$ROOT/inboxes/$1 f
    expect_eq "files in $1/corrupt" "$PER_INBOX" "$(corrupt_files "$d")"
    expect_eq ".reason files in $1/corrupt" "$PER_INBOX" "$(reason_files "$d")"
    expect_eq "files left waiting in $1" 0 "$(inbox_files "$d")"
    find "$d/corrupt" -maxdepth 1 -type f ! -name '.*' ! -name '*.reason' -print0 |
        while IFS= read -r -d '' f; do
            [ -f "$f.reason" ] || fail "quarantined file $f has no .reason file beside it"
        done
}
still_running() {
    local pid2
    pid2=$(daemon_pid statmgr)
    check '[ "$pid2" = "$pid" ] && is_our_daemon "$pid"' "statmgr is no longer pid $pid (now '$pid2'): it died or restarted"
    check '[ -f "$ROOT/run/statmgr.ready" ]' "run/statmgr.ready is gone"
    say "ok: statmgr still running as pid $pid, ready file present"
}
n8002() { db_count "SELECT count(*) FROM statmsg WHERE msgid=8002"; }
check_8002_and_log() {   # check_8002_and_log N: N status messages 8002, >= N warnings
    local want=$1 nwarn
    enough8002() { [ "$(n8002)" -ge "$want" ]; }
    wait_for 20 enough8002 || fail "expected $want status messages 8002 (corrupt file), got $(n8002)"
    expect_eq "status messages 8002 (one per quarantined file)" "$want" "$(n8002)"
    nwarn=$(grep -c 'type="2"' "$ROOT/logs/statmgr.log")
    check '[ "$nwarn" -ge "$want" ]' "expected at least $want warning lines (type=\"2\") in statmgr.log, got $nwarn"
    say "ok: statmgr.log has $nwarn warning lines for $want quarantined files"
}

# The inboxes statmgr watches: statmsgs and the client drop box.
for rel in statmgr.box/statmsgs cap/statmsgs.box; do
    if ! wait_for 30 quarantined "$rel"; then
        inbox_state "$rel"
        fail "expected $PER_INBOX quarantined files with .reason in $rel within 30 s, got $(corrupt_files "$ROOT/inboxes/$rel")"
    fi
    check_inbox "$rel"
done
expect_eq "rows ingested from the damaged or odd-named files" 0 "$(db_count "SELECT count(*) FROM statmsg WHERE istr LIKE '%\"badfile-%'")"
still_running

sc client send-status --cap "$ROOT/inboxes/cap" --id 8601 --istr after-bad-files >/dev/null ||
    fail "sitectl client send-status exited $?"
after() { [ "$(db_count "SELECT count(*) FROM statmsg WHERE msgid=8601 AND istr LIKE '%after-bad-files%'")" -ge 1 ]; }
wait_for 20 after || fail "a valid message sent after the bad files was not ingested within 20 s"
say "ok: a valid message sent afterwards was ingested"
check_8002_and_log $((PER_INBOX * 2))

# futureq: statmgr's own queue, which it also reads.
rel=statmgr.box/futureq
if ! wait_for 15 quarantined "$rel"; then
    inbox_state "$rel"
    fail "expected $PER_INBOX quarantined files with .reason in $rel within 15 s of the others (statmgr rescans every 1 s), got $(corrupt_files "$ROOT/inboxes/$rel")"
fi
check_inbox "$rel"
expect_eq "rows ingested from the damaged or odd-named files" 0 "$(db_count "SELECT count(*) FROM statmsg WHERE istr LIKE '%\"badfile-%'")"
still_running
check_8002_and_log "$TOTAL"

sc stop statmgr || fail "sitectl stop statmgr exited $?"
say "PASS"
