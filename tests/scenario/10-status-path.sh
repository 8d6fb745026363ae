#!/bin/bash
# 10-status-path.sh - the status message path end to end: a client drops
# three messages into the client access point, the running statmgr
# ingests them, `sitectl messages --json` shows every field, the inboxes
# are empty, statmgr recorded its own "started" message (8000) and writes
# a CMTrace log.
# shellcheck disable=SC2016  # check() evaluates its single-quoted condition
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

site_init TST
# The name the site's own messages carry (default: the host name).
sc config set site.machine SITESRV01 || fail "sitectl config set site.machine exited $?"
sc start statmgr || fail "sitectl start statmgr exited $?"
pid=$(daemon_pid statmgr)
check 'is_our_daemon "$pid"' "run/statmgr.pid names '$pid', not a running statmgr"
check '[ -f "$ROOT/run/statmgr.ready" ]' "statmgr is started but run/statmgr.ready is missing"
say "ok: statmgr running as pid $pid, ready file present"

CAP=$ROOT/inboxes/cap
for n in 1 2 3; do
    sc client send-status --cap "$CAP" --id 8610 --severity W --component scntest \
        --machine CLIENT01 --istr "path-$n" --istr "second-$n" ||
        fail "sitectl client send-status (message $n) exited $?"
done
say "sent 3 messages (id 8610) into $CAP/statmsgs.box"

ingested() { [ "$(db_count "SELECT count(*) FROM statmsg WHERE msgid=8610")" -ge 3 ]; }
wait_for 20 ingested || fail "expected 3 rows with msgid 8610 within 20 s, got $(db_count "SELECT count(*) FROM statmsg WHERE msgid=8610")"
expect_eq "rows with msgid 8610" 3 "$(db_count "SELECT count(*) FROM statmsg WHERE msgid=8610")"
expect_eq "distinct istr among them" 3 "$(db_count "SELECT count(DISTINCT istr) FROM statmsg WHERE msgid=8610")"

json=$(sc messages --json --id 8610) || fail "sitectl messages --json --id 8610 exited $?"
flat=$(printf '%s' "$json" | tr -d '\n')
say "messages --json --id 8610: $(printf '%s' "$flat" | cut -c 1-300)..."
case $flat in
'['*']') ;;
*) fail "sitectl messages --json did not print a JSON array: $(printf '%s' "$flat" | cut -c 1-200)" ;;
esac
# Split the array into one object per line ("},{" never occurs inside our
# values) and check each object's fields.
objs=$(printf '%s' "$flat" | sed 's/^[[:space:]]*\[//; s/\][[:space:]]*$//; s/}[[:space:]]*,[[:space:]]*{/}\n{/g')
nobj=$(printf '%s\n' "$objs" | grep -c '"id"')
expect_eq "objects in messages --json --id 8610" 3 "$nobj"
for n in 1 2 3; do
    o=$(printf '%s\n' "$objs" | grep -F "\"path-$n\"")
    [ -n "$o" ] || fail "no message object has istr \"path-$n\""
    [ "$(printf '%s\n' "$o" | wc -l)" -eq 1 ] || fail "more than one object has istr \"path-$n\""
    field() {
        printf '%s' "$o" | grep -Eq "\"$1\"[[:space:]]*:[[:space:]]*$2" ||
            fail "message path-$n: field $1 does not match $2 in: $o"
    }
    field id '8610([^0-9]|$)'
    field severity '"W"'
    field component '"scntest"'
    field machine '"CLIENT01"'
    field site '"[A-Z0-9]{0,3}"'
    field time '"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z"'
    field istr "\\[[[:space:]]*\"path-$n\"[[:space:]]*,[[:space:]]*\"second-$n\"[[:space:]]*\\]"
done
say "ok: id, severity, component, machine, site, time (ISO 8601 UTC) and istr of all 3 are right"

# The message time must be "now" (within a minute), in UTC.
t=$(printf '%s\n' "$objs" | head -n1 | grep -Eo '"time"[[:space:]]*:[[:space:]]*"[^"]*"' | sed 's/.*"\([^"]*\)"$/\1/')
ts=$(date -u -d "$t" +%s 2>/dev/null) || fail "time '$t' does not parse as a date"
now=$(date -u +%s)
d=$((now - ts)); d=${d#-}
check '[ "$d" -le 60 ]' "message time $t is $d s away from now"
say "ok: message time $t is within a minute of now"

inb=$(sc inbox --json) || fail "sitectl inbox --json exited $?"
flat=$(printf '%s' "$inb" | tr -d '\n')
for box in cap/statmsgs.box statmgr.box/statmsgs; do
    o=$(printf '%s' "$flat" | sed 's/}[[:space:]]*,[[:space:]]*{/}\n{/g' | grep -F "\"$box\"")
    [ -n "$o" ] || fail "sitectl inbox --json has no entry for $box: $(printf '%s' "$flat" | cut -c 1-300)"
    printf '%s' "$o" | grep -Eq '"files"[[:space:]]*:[[:space:]]*0([^0-9]|$)' ||
        fail "sitectl inbox --json: $box does not show 0 files: $o"
    printf '%s' "$o" | grep -Eq '"corrupt"[[:space:]]*:[[:space:]]*0([^0-9]|$)' ||
        fail "sitectl inbox --json: $box does not show 0 corrupt: $o"
done
expect_eq "files left in cap/statmsgs.box" 0 "$(inbox_files "$CAP/statmsgs.box")"
say "ok: sitectl inbox --json shows 0 files in the drop box and in statmgr.box/statmsgs"

started() { [ "$(db_count "SELECT count(*) FROM statmsg WHERE msgid=8000 AND component='statmgr'")" -ge 1 ]; }
wait_for 10 started || fail "expected statmgr's 8000 (started) message in the db, found none"
say "ok: statmgr's own 8000 'started' message is in the database"

log=$ROOT/logs/statmgr.log
[ -f "$log" ] || fail "no $log"
nlog=$(grep -c '^<!\[LOG\[.*\]LOG\]!><time="[0-9:.+-]*" date="[0-9-]*" component="statmgr" context="" type="[123]" thread="[0-9]*" file="[^"]*">$' "$log")
check '[ "$nlog" -ge 1 ]' "statmgr.log has no CMTrace record with component=\"statmgr\""
nbad=$(grep -vc '^<!\[LOG\[' "$log")
check '[ "$nbad" -eq 0 ]' "statmgr.log has $nbad lines that are not CMTrace records"
say "ok: statmgr.log has $nlog CMTrace records, every line one record"

sc stop statmgr || fail "sitectl stop statmgr exited $?"
# The lock is the daemon's last act; the process itself ends a moment later.
wait_for 5 pid_gone "$pid" || fail "statmgr (pid $pid) still running 5 s after sitectl stop returned"
say "ok: statmgr stopped"
expect_eq "machine of statmgr's own 8000 message (site.machine)" SITESRV01 \
    "$(db_count "SELECT machine FROM statmsg WHERE msgid=8000 ORDER BY seq LIMIT 1")"
say "PASS"
