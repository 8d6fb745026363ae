#!/bin/bash
# 60-futureq.sh - messages dated further ahead than statmgr.future_skew
# wait in statmgr.box/futureq and are ingested once due; current ones go
# straight in.  The skew is set through configuration (2 s) so that the
# test is short; the daemon runs as shipped.
# shellcheck disable=SC2016  # check() evaluates its single-quoted condition
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

SKEW_MS=2000
AHEAD_MS=6000     # held for at least AHEAD_MS - SKEW_MS = 4 s
NFUT=50           # future-dated messages, written in one batch

site_init TST
sc config set statmgr.future_skew 2s || fail "sitectl config set statmgr.future_skew 2s exited $?"
STATMSGS=$ROOT/inboxes/statmgr.box/statmsgs
FUTUREQ=$ROOT/inboxes/statmgr.box/futureq
sc start statmgr || fail "sitectl start statmgr exited $?"

t_write=$(scn_now_ms)
out=$("$TOOLS/smgen" --box "$STATMSGS" --count "$NFUT" --istr-prefix fut --future-ms "$AHEAD_MS") ||
    fail "smgen (future) exited $?: $out"
expect_eq "future-dated messages written" "$NFUT" "$out"
out=$("$TOOLS/smgen" --box "$STATMSGS" --count 5 --istr-prefix cur) || fail "smgen (current) exited $?: $out"
expect_eq "current messages written" 5 "$out"

fut_rows() { db_count "SELECT count(*) FROM statmsg WHERE istr LIKE '%\"fut-%'"; }
cur_rows() { db_count "SELECT count(*) FROM statmsg WHERE istr LIKE '%\"cur-%'"; }
cur_in() { [ "$(cur_rows)" -ge 5 ]; }
held() { [ "$(inbox_files "$FUTUREQ")" -ge "$NFUT" ]; }

wait_for 10 cur_in || fail "expected the 5 current messages in the db within 10 s, got $(cur_rows)"
expect_eq "current messages ingested" 5 "$(cur_rows)"
wait_for 10 held || fail "expected $NFUT files held in statmgr.box/futureq, got $(inbox_files "$FUTUREQ") (and $(fut_rows) future rows in the db)"
now=$(scn_now_ms)
f=$(fut_rows)
if [ "$f" -ne 0 ] && [ "$now" -ge $((t_write + AHEAD_MS - SKEW_MS)) ]; then
    fail "the test was too slow to see the future messages held (${now}-${t_write} ms after writing them); rerun on a less loaded machine"
fi
expect_eq "future messages in the db while they are held" 0 "$f"
expect_eq "files held in statmgr.box/futureq" "$NFUT" "$(inbox_files "$FUTUREQ")"
# Held under names that carry their time, so that finding the due ones is
# a directory listing rather than a read of every held file.
named=$(find "$FUTUREQ" -maxdepth 1 -type f -name 'T[0-9]*-*.svf' -printf x | wc -c)
expect_eq "held files named T<time>-<random>.svf" "$NFUT" "$named"
say "ok: held $((now - t_write)) ms after writing: $NFUT in futureq, none in the db"

fut_in() { [ "$(fut_rows)" -ge "$NFUT" ]; }
wait_for 15 fut_in || fail "expected the $NFUT future messages in the db within 15 s, got $(fut_rows); $(inbox_files "$FUTUREQ") still in futureq"
seen=$(scn_now_ms)
# Released no earlier than due (dated time minus the skew); the poll can
# only see it late, never early.
check '[ "$seen" -ge $((t_write + AHEAD_MS - SKEW_MS)) ]' "future messages were ingested $((seen - t_write)) ms after writing, before they were due ($((AHEAD_MS - SKEW_MS)) ms)"
say "ok: future messages ingested $((seen - t_write)) ms after writing (due after $((AHEAD_MS - SKEW_MS)) ms)"
expect_eq "future messages ingested" "$NFUT" "$(fut_rows)"
mint=$(db_count "SELECT min(time_ms) FROM statmsg WHERE istr LIKE '%\"fut-%'")
check '[ "$mint" -ge $((t_write + AHEAD_MS)) ]' "future messages kept time_ms $mint, earlier than their dated time (>= $((t_write + AHEAD_MS)))"
say "ok: their time is the dated one"

empty() { [ "$(inbox_files "$FUTUREQ")" -eq 0 ] && [ "$(inbox_files "$STATMSGS")" -eq 0 ]; }
wait_for 5 empty || fail "futureq still holds $(inbox_files "$FUTUREQ") files, statmsgs $(inbox_files "$STATMSGS")"
expect_eq "files in statmgr.box/futureq" 0 "$(inbox_files "$FUTUREQ")"
expect_eq "quarantined files in futureq" 0 "$(corrupt_files "$FUTUREQ")"
expect_eq "quarantined files in statmsgs" 0 "$(corrupt_files "$STATMSGS")"
# One 8400 per pass that held messages, not one per message: clients on a
# wrong clock must not double statmgr's load with messages of its own.
n8400=$(db_count "SELECT count(*) FROM statmsg WHERE msgid=8400")
n8401=$(db_count "SELECT count(*) FROM statmsg WHERE msgid=8401")
check '[ "$n8400" -ge 1 ] && [ "$n8400" -lt "$NFUT" ]' "expected 8400 (held) once per pass, between 1 and $((NFUT - 1)) of them for $NFUT held messages, got $n8400"
check '[ "$n8401" -ge 1 ] && [ "$n8401" -lt "$NFUT" ]' "expected 8401 (released) once per pass, got $n8401"
say "ok: status messages 8400 (held) $n8400, 8401 (released) $n8401"
sc stop statmgr || fail "sitectl stop statmgr exited $?"
say "PASS"
