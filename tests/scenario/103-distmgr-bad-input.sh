#!/bin/bash
# 103-distmgr-bad-input.sh - distmgr faced with bad input (issue 3, "Bad
# input and faults"):
#   (a) a symbolic link in the source: 2302 naming it, no new version,
#       the DP keeps the version it has;
#   (b) the source directory gone: 2302, the DP keeps its version, the
#       package's last_error says why; the source back and an update: a
#       new version installed as usual;
#   (c) malformed requests in distmgr.box (garbage under a good name, a
#       well-formed record with a bad action, a name that is no request
#       name): each quarantined in corrupt/ with a .reason and an 8002,
#       and distmgr keeps running;
#   (d) as root only: a DP on a 2 MB tmpfs and a package larger than it:
#       that DP retries with an error about space and leaves no staging
#       tree, the other DP is installed; with room made, it is installed.
# shellcheck disable=SC2016  # check() evaluates its single-quoted condition
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=helpers/dm.sh
. "$(dirname "$0")/helpers/dm.sh"

site_init CEN
dm_short_delays
SRC=$SCRATCH/src
DP=$SCRATCH/dp1
BOX=$ROOT/inboxes/distmgr.box
mkdir -p "$DP" "$SRC/d"
echo "alpha" >"$SRC/a"
echo "beta" >"$SRC/d/b"
head -c 20000 /dev/urandom >"$SRC/d/c"
sc dp add DP1 "$DP" >/dev/null || fail "sitectl dp add exited $?"
sc start distmgr statmgr >/dev/null || fail "sitectl start exited $?"
PID=$(daemon_pid distmgr)
ID=$(sc package add --name bad --source "$SRC" --dp DP1) || fail "sitectl package add exited $?"
sc package wait "$ID" --timeout 30 >/dev/null || fail "package wait for version 1 exited $?"
cp -a "$SRC" "$SCRATCH/v1"
say "package $ID version 1 installed on DP1"

n2302() { msg_count 2302 "$ID"; }
more_2302() { [ "$(n2302)" -gt "$1" ]; }
keeps_v1() {
    diff -r "$SCRATCH/v1" "$DP/$ID" >/dev/null || fail "DP1/$ID changed: $1"
    expect_eq "package version ($1)" 1 "$(pkg_field "$ID" .version)"
    expect_eq "version on DP1 ($1)" 1 "$(dp_field "$ID" DP1 version)"
    check 'no_staging "$DP" "$ID"' "$DP/.$ID.new was left behind ($1)"
}

# (a) A symbolic link in the source.
echo "alpha, changed" >"$SRC/a"
ln -s a "$SRC/d/the-link"
c0=$(n2302)
sc package update "$ID" >/dev/null || fail "sitectl package update exited $?"
wait_for 20 more_2302 "$c0" || fail "no 2302 for a source holding a symbolic link"
text=$(sc messages --id 2302 --json | jq -r --arg p "$ID" '[.[] | select(.attrs.PackageID == $p)] | last | .text')
say "2302: $text"
[[ $text == *the-link* ]] || fail "the 2302 for a symbolic link does not name it: $text"
keeps_v1 "symbolic link in the source"
rm "$SRC/d/the-link"
say "ok: (a) symbolic link refused with 2302 naming it; DP1 keeps version 1"

# (b) The source directory gone.
mv "$SRC" "$SCRATCH/src-away"
c0=$(n2302)
sc package update "$ID" >/dev/null || fail "sitectl package update exited $?"
wait_for 20 more_2302 "$c0" || fail "no 2302 for a missing source directory"
err_set() { [ "$(pkg_field "$ID" .last_error)" != null ] && [ -n "$(pkg_field "$ID" .last_error)" ]; }
wait_for 10 err_set || fail "package last_error not set with the source missing"
say "last_error: $(pkg_field "$ID" .last_error)"
keeps_v1 "source missing"
mv "$SCRATCH/src-away" "$SRC"
sc package update "$ID" >/dev/null || fail "sitectl package update exited $?"
at_v2() { [ "$(dp_field "$ID" DP1 version)" = 2 ] && [ "$(dp_field "$ID" DP1 state)" = installed ]; }
wait_for 30 at_v2 || fail "DP1 not at version 2 after the source came back: $(pkg_json "$ID" | jq -c .dps)"
diff -r "$SRC" "$DP/$ID" || fail "DP1/$ID differs from the source after it came back"
expect_eq "package last_error once the source is back" null "$(pkg_field "$ID" .last_error)"
say "ok: (b) missing source refused with 2302; DP1 kept version 1; back to normal with version 2"

# (c) Malformed requests.  Each is built aside and moved in whole.
hex() { head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
n8002() { db_count "SELECT count(*) FROM statmsg WHERE msgid = 8002 AND component = 'distmgr'"; }
q0=$(n8002)
head -c 300 /dev/urandom >"$SCRATCH/garbage"
mv "$SCRATCH/garbage" "$BOX/CEN-$(hex).pkg"
body=$(printf 'sitesrv pkgreq 1\naction=explode\npackage=%s\ntime=2026-11-22T00:00:00.000Z\n' "$ID")
printf '%s\nend %s\n' "$body" "$(printf '%s\n' "$body" | sha256sum | cut -c1-64)" >"$SCRATCH/badaction"
mv "$SCRATCH/badaction" "$BOX/CEN-$(hex).pkg"
printf 'sitesrv pkgreq 1\naction=update\n' >"$SCRATCH/oddname"
mv "$SCRATCH/oddname" "$BOX/please-update.txt"
quarantined() { [ "$(corrupt_files "$BOX")" -ge 3 ] && [ "$(reason_files "$BOX")" -ge 3 ]; }
wait_for 20 quarantined || fail "the 3 malformed requests were not quarantined: $(corrupt_files "$BOX") in corrupt/, $(reason_files "$BOX") reasons"
expect_eq "files quarantined in distmgr.box/corrupt" 3 "$(corrupt_files "$BOX")"
expect_eq "reasons in distmgr.box/corrupt" 3 "$(reason_files "$BOX")"
expect_eq "requests left in distmgr.box" 0 "$(inbox_files "$BOX")"
expect_eq "requests left in distmgr.box/work" 0 "$(inbox_files "$BOX/work")"
sed 's/^/  /' "$BOX"/corrupt/*.reason
grep -q 'explode' "$BOX"/corrupt/*.reason || fail "no .reason names the bad action 'explode'"
grep -q 'please-update.txt' "$BOX"/corrupt/*.reason || fail "no .reason names the odd file please-update.txt"
has_8002() { [ "$(n8002)" -ge $((q0 + 3)) ]; }
wait_for 20 has_8002 || fail "expected 3 messages 8002 from distmgr, got $(($(n8002) - q0))"
{ daemon_running distmgr && [ "$(daemon_pid distmgr)" = "$PID" ]; } || fail "distmgr did not keep running through the malformed requests"
echo "gamma" >"$SRC/g"
sc package update "$ID" >/dev/null || fail "sitectl package update exited $?"
sc package wait "$ID" --timeout 30 >/dev/null || fail "package wait after the malformed requests exited $?"
diff -r "$SRC" "$DP/$ID" || fail "DP1/$ID differs from the source after the malformed requests"
say "ok: (c) 3 malformed requests quarantined with reasons and 8002; distmgr serves on"

# (d) A DP that is full.
if [ "$(id -u)" -ne 0 ]; then
    say "skipped (d): mounting a tmpfs needs root"
    sc stop >/dev/null || fail "sitectl stop exited $?"
    say PASS
    exit 0
fi
SMALL=$SCRATCH/small
mkdir -p "$SMALL"
scn_mount 2m "$SMALL" || fail "cannot mount a 2 MB tmpfs on $SMALL"
SRC3=$SCRATCH/src3
mkdir -p "$SRC3/in"
head -c 3000000 /dev/urandom >"$SRC3/large"
for i in 1 2 3 4 5; do echo "small $i" >"$SRC3/in/s$i"; done
sc dp add SMALL "$SMALL" >/dev/null || fail "sitectl dp add SMALL exited $?"
ID3=$(sc package add --name big --source "$SRC3" --dp DP1 --dp SMALL) || fail "sitectl package add (big) exited $?"
small_retrying() {
    local a
    a=$(dp_field "$ID3" SMALL attempts)
    [ "$(dp_field "$ID3" SMALL state)" = retrying ] && [ "$a" != null ] && [ "$a" -ge 2 ]
}
wait_for 30 small_retrying || fail "DP SMALL not retrying twice with a package larger than it: $(pkg_json "$ID3" | jq -c .dps)"
err=$(dp_field "$ID3" SMALL last_error)
say "SMALL: $err"
[[ ${err,,} == *space* ]] || fail "the error of the full DP does not mention space: $err"
check 'no_staging "$SMALL" "$ID3"' "$SMALL/.$ID3.new was left behind"
check '[ ! -e "$SMALL/$ID3" ]' "$SMALL/$ID3 exists although no version was installed"
used=$(du -sk "$SMALL" | cut -f1)
check '[ "$used" -lt 1024 ]' "the full DP holds ${used} KB after a failed copy: the partial copy was not removed"
installed_on() { [ "$(dp_field "$ID3" "$1" state)" = installed ]; }
wait_for 30 installed_on DP1 || fail "DP1 not installed while SMALL is full: $(pkg_json "$ID3" | jq -c .dps)"
diff -r "$SRC3" "$DP/$ID3" || fail "DP1/$ID3 differs from the source"
mount -o remount,size=64m "$SMALL" || fail "cannot remount $SMALL with 64 MB"
sc package wait "$ID3" --timeout 30 >/dev/null || fail "package wait after making room exited $?: $(pkg_json "$ID3" | jq -c .dps)"
diff -r "$SRC3" "$SMALL/$ID3" || fail "SMALL/$ID3 differs from the source"
check 'no_staging "$SMALL" "$ID3"' "$SMALL/.$ID3.new was left behind"
say "ok: (d) a full DP retries, keeps no partial copy, and is installed once there is room"
{ daemon_running distmgr && [ "$(daemon_pid distmgr)" = "$PID" ]; } || fail "distmgr did not keep running"
sc stop >/dev/null || fail "sitectl stop exited $?"
say PASS
