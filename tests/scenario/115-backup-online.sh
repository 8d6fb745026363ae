#!/bin/bash
# 115-backup-online.sh - Site Backup while work flows (issue 5, SPEC 4.3, 6):
#
#   - the default control file stops nothing: a backup taken while status
#     messages and package updates flow leaves every daemon running with
#     the same pid, loses nothing (every message sent is recorded once);
#   - a restore of that backup into a new root brings up a site with the
#     same packages, DP states, retry history, status messages and keys as
#     the backup's snapshot, whose daemons all start and become ready;
#   - a damaged backup is refused, naming the file, and nothing is written;
#   - control files with an unset token, an unknown command, or a
#     destination outside backup.destination are refused before anything
#     runs: the [Stop] above the fault stops nothing, no backup is made,
#     8502 says why with the line;
#   - a control file with [Stop]/[Start] stops and starts the daemons it
#     names, waiting for them, and leaves them serving;
#   - backup.keep: older backups removed after a new one succeeds.
# shellcheck disable=SC2016
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=helpers/sites.sh
. "$(dirname "$0")/helpers/sites.sh"

command -v sqlite3 >/dev/null || skip "sqlite3 is not installed"

site_init CEN
R=$(site_root CEN)
mkdir -p "$SCRATCH/dp" "$SCRATCH/src"
echo one >"$SCRATCH/src/a.txt"
sx CEN dp add DP1 "$SCRATCH/dp" >/dev/null || fail "sitectl dp add exited $?"
sx CEN dp add AWAY "$SCRATCH/away" >/dev/null 2>&1 || fail "sitectl dp add AWAY exited $?"
sx CEN start >/dev/null || fail "sitectl start exited $?"
ID=$(sx CEN package add --name online --source "$SCRATCH/src") || fail "package add exited $?"
retry_row() { [ "$(site_db CEN "SELECT count(*) FROM retry WHERE scope = 'dp'")" -ge 1 ]; }
wait_for 30 retry_row || fail "no retry history for the DP that is away"
pids() {
    local d
    for d in distmgr sender despool statmgr sitebkup; do printf '%s=%s ' "$d" "$(site_pid CEN "$d")"; done
}
P0=$(pids)
say "site CEN serving: $P0"

# Producers: status messages into statmsgs, and package updates.
STOP=$SCRATCH/stop
COUNT=$SCRATCH/sent
: >"$COUNT"
(
    i=0
    while [ ! -e "$STOP" ]; do
        i=$((i + 1))
        n=$("$TOOLS/smgen" --box "$R/inboxes/statmgr.box/statmsgs" --count 20 --prefix bk \
            --component online --istr-prefix "bk$i-") || true
        echo "${n:-0}" >>"$COUNT"
        sleep 0.05
    done
) &
bg_track $!
(
    k=0
    while [ ! -e "$STOP" ]; do
        k=$((k + 1))
        echo "v$k" >"$SCRATCH/src/a.txt"
        timeout 60 "$SITECTL" --root "$R" package update "$ID" >/dev/null 2>&1
        sleep 0.3
    done
) &
bg_track $!
sleep 1

out=$(sx CEN backup now --wait --timeout 120) || fail "backup now --wait exited $?: $out"
BK=$(printf '%s\n' "$out" | sed -n 's/^backup \(.*\) succeeded$/\1/p')
[ -d "$BK" ] || fail "no backup directory in: $out"
sleep 0.5
touch "$STOP"
wait
expect_eq "daemon pids after the backup" "$P0" "$(pids)"
say "ok: backup $BK taken while work flowed; no daemon restarted"

# Nothing lost: every message sent is recorded once.
SENT=$(awk '{ s += $1 } END { print s + 0 }' "$COUNT")
drained() { [ "$(site_db CEN "SELECT count(*) FROM statmsg WHERE component = 'online'")" -ge "$SENT" ]; }
wait_for 60 drained || fail "statmgr recorded $(site_db CEN "SELECT count(*) FROM statmsg WHERE component = 'online'") of $SENT messages"
expect_eq "messages recorded (each once)" "$SENT" \
    "$(site_db CEN "SELECT count(DISTINCT istr) FROM statmsg WHERE component = 'online'")"
say "ok: $SENT status messages sent during the backup, all recorded once"

# The backup's own snapshot, to compare a restore with.
snap() {   # snap DB: packages, DP states, retry rows, messages, as text
    sqlite3 -readonly "$1" "SELECT 'pkg', id, version FROM package ORDER BY id;
        SELECT 'dp', package, dp, state, version FROM dp_state ORDER BY package, dp;
        SELECT 'retry', scope, target, state FROM retry ORDER BY scope, target;
        SELECT 'msgs', count(*) FROM statmsg;"
}
WANT=$(snap "$BK/db/site.db") || fail "cannot read the backup's database"
NEW=$SCN_DIR/restored
sx CEN restore "$BK" --root "$NEW" >/dev/null || fail "sitectl restore exited $?"
SITES_ALL+=(restored)   # stopped by the cleanup (its root is $SCN_DIR/restored)
expect_eq "restored state" "$WANT" "$(snap "$NEW/db/site.db")"
cmp -s "$R/keys/site.key" "$NEW/keys/site.key" || fail "the restored site key differs"
[ "$(stat -c %a "$NEW/keys/site.key")" = 600 ] || fail "the restored site key is not 0600"
for d in distmgr sender despool statmgr sitebkup; do
    timeout 60 "$SITECTL" --root "$NEW" start "$d" >/dev/null || fail "start $d at the restored site exited $?"
done
timeout 60 "$SITECTL" --root "$NEW" stop >/dev/null || fail "stop at the restored site exited $?"
say "ok: restored into a new root: same packages, DP states, retry history, messages and keys; its daemons start"

# A damaged backup is refused, naming the file; nothing is written.
DMG=$SCRATCH/damaged
cp -a "$BK" "$DMG"
printf 'x' >>"$DMG/site.conf"
if out=$(sx CEN restore "$DMG" --root "$SCN_DIR/never" 2>&1); then
    fail "a damaged backup was restored"
fi
printf '%s\n' "$out" | grep -q "site.conf" || fail "the refusal does not name site.conf: $out"
[ -e "$SCN_DIR/never" ] && fail "a refused restore left $SCN_DIR/never"
say "ok: a damaged backup refused, naming site.conf"

# Control files refused before anything runs.
CTL=$R/inboxes/sitebkup.box/sitebkup.ctl
nbk() { find "$R/backup" -mindepth 1 -maxdepth 1 -name 'CEN-*' | wc -l; }
before=$(nbk)
P1=$(pids)
bad() {   # bad WHAT WORD CONTENT
    printf '%s' "$3" >"$CTL"
    if out=$(sx CEN backup now --wait --timeout 60 2>&1); then
        fail "a control file with $1 was run: $out"
    fi
    printf '%s\n' "$out" | grep -q "line [0-9]*: .*$2" || fail "the refusal of $1 does not say 'line N: ...$2': $out"
    expect_eq "daemons after a refused control file ($1)" "$P1" "$(pids)"
    expect_eq "backups after a refused control file ($1)" "$before" "$(nbk)"
}
bad "an unset token" "NOPE" $'[Stop]\nstop distmgr\n[Tasks]\ndestination %NOPE%/x\ndatabase\n[Start]\nstart distmgr\n'
bad "an unknown command" "format" $'[Stop]\nstop distmgr\n[Tasks]\ndatabase\nformat c:\n[Start]\nstart distmgr\n'
bad "a destination outside" "$SCRATCH" "[Stop]
stop distmgr
[Tasks]
destination $SCRATCH/elsewhere
database
[Start]
start distmgr
"
[ -e "$SCRATCH/elsewhere" ] && fail "a refused destination was created"
failed_msgs() { [ "$(site_msg_count CEN 8502)" -ge 3 ]; }
wait_for 30 failed_msgs || fail "not three 8502 messages for the refused control files"
say "ok: unset token, unknown command, outside destination: refused before anything ran (8502)"

# [Stop]/[Start]: the named daemons are stopped and started again, serving.
printf '[Stop]\nstop distmgr sender\n[Tasks]\ndatabase\nconfig\n[Start]\nstart distmgr sender\n' >"$CTL"
sx CEN backup now --wait --timeout 120 >/dev/null || fail "a backup with [Stop]/[Start] failed"
for d in distmgr sender; do
    site_running CEN "$d" || fail "$d is not serving after the backup's [Start]"
done
[ "$(site_pid CEN distmgr)" != "$(printf '%s' "$P1" | sed 's/.*distmgr=\([0-9]*\).*/\1/')" ] ||
    fail "distmgr kept its pid through [Stop]/[Start]"
expect_eq "statmgr pid through a backup that does not name it" \
    "$(printf '%s' "$P1" | sed 's/.*statmgr=\([0-9]*\).*/\1/')" "$(site_pid CEN statmgr)"
say "ok: [Stop]/[Start] stopped and started distmgr and sender, waiting for them"

# backup.keep: with 2, two backups remain after another one.
rm -f "$CTL"
sx CEN config set backup.keep 2 >/dev/null || fail "config set backup.keep exited $?"
sx CEN backup now --wait --timeout 120 >/dev/null || fail "a backup after backup.keep 2 failed"
expect_eq "backups kept (backup.keep 2)" 2 "$(nbk)"
say "ok: backup.keep 2 keeps two"

# A run killed between its [Stop] and its [Start] (its marker left in
# run/): the next sitebkup starts what it had stopped.
sx CEN stop distmgr >/dev/null || fail "sitectl stop distmgr exited $?"
printf 'distmgr\n' >"$R/run/sitebkup.stopped"
sx CEN stop sitebkup >/dev/null && sx CEN start sitebkup >/dev/null || fail "restart of sitebkup failed"
resumed() { site_running CEN distmgr && [ ! -e "$R/run/sitebkup.stopped" ]; }
wait_for 30 resumed || fail "distmgr was not started again after an interrupted backup's [Stop]"
say "ok: the daemons an interrupted backup had stopped are started by the next sitebkup"
