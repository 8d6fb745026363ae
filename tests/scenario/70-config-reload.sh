#!/bin/bash
# 70-config-reload.sh - `sitectl config set` on a running site: the change
# reaches statmgr by SIGHUP without a restart (same pid, still ready), a
# bad value is refused before anything is written, and a small
# log.max_size makes statmgr.log roll over to statmgr.lo_ with one
# generation kept, every record still one CMTrace line.
# shellcheck disable=SC2016  # check() evaluates its single-quoted condition
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

site_init TST
sc start statmgr || fail "sitectl start statmgr exited $?"
pid=$(daemon_pid statmgr)
LOG=$ROOT/logs/statmgr.log

# A bad value: refused, exit 1, and site.conf unchanged.
before=$(cat "$ROOT/site.conf")
sc config set log.max_size lots >/dev/null 2>&1
rc=$?
expect_eq "exit status of 'config set log.max_size lots'" 1 "$rc"
check '[ "$(cat "$ROOT/site.conf")" = "$before" ]' "a refused value changed site.conf"
sc config set no.such_key 1 >/dev/null 2>&1
expect_eq "exit status of 'config set no.such_key 1'" 2 "$?"

# A good value reaches the running daemon.
sc config set log.max_size 4KB || fail "sitectl config set log.max_size 4KB exited $?"
reloaded() { grep -q 'configuration reloaded' "$LOG" "$ROOT/logs/statmgr.lo_" 2>/dev/null; }
wait_for 10 reloaded || fail "statmgr did not log a reload within 10 s of config set"
expect_eq "statmgr pid after the reload" "$pid" "$(daemon_pid statmgr)"
check 'daemon_running statmgr' "statmgr is not running and ready after the reload"
say "ok: reloaded by SIGHUP, same pid $pid"

# Enough messages for several roll-overs of a 4 KB log.
CAP=$ROOT/inboxes/cap
for n in $(seq 1 40); do
    sc client send-status --cap "$CAP" --id 8600 --istr "roll-$n" >/dev/null ||
        fail "client send-status $n exited $?"
done
ingested() { [ "$(db_count "SELECT count(*) FROM statmsg WHERE istr LIKE '%roll-%'")" -eq 40 ]; }
wait_for 20 ingested || fail "expected 40 messages ingested, got $(db_count "SELECT count(*) FROM statmsg WHERE istr LIKE '%roll-%'")"

check '[ -f "$ROOT/logs/statmgr.lo_" ]' "no statmgr.lo_ after logging well past log.max_size"
check '[ ! -e "$ROOT/logs/statmgr.lo_.1" ] && [ "$(find "$ROOT/logs" -name "statmgr.*" | wc -l)" -eq 2 ]' \
    "more than one generation kept: $(ls "$ROOT/logs")"
for f in "$LOG" "$ROOT/logs/statmgr.lo_"; do
    size=$(stat -c %s "$f")
    check '[ "$size" -le 4096 ]' "$(basename "$f") is $size bytes, over log.max_size 4096"
    bad=$(grep -cv '^<!\[LOG\[.*\]LOG\]!><time="[0-9:.+-]*" date="[0-9-]*" component="statmgr" context="" type="[123]" thread="[0-9]*" file="[^"]*">$' "$f")
    expect_eq "malformed lines in $(basename "$f")" 0 "$bad"
done
say "ok: statmgr.log rolled over to statmgr.lo_, both within 4 KB, every line a CMTrace record"
