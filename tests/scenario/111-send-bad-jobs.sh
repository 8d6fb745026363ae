#!/bin/bash
# 111-send-bad-jobs.sh - jobs the scheduler cannot take (issue 4; "bad input
# gets a clear error and loses nothing"):
#
#   - a job for a site nobody knows waits in schedule.box: said once (one
#     8204, one log line), looked at again after a growing delay, never in a
#     busy loop (each look would write a status message file);
#   - once that site is added (and `sitectl send now` tells the sender), the
#     job is routed and delivered;
#   - a job naming a file outside store/out/ (the site's key) and a damaged
#     job are quarantined with their reasons, and nothing of them is sent;
#   - the jobs behind them flow meanwhile.
# shellcheck disable=SC2016
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=helpers/sites.sh
. "$(dirname "$0")/helpers/sites.sh"

command -v sqlite3 >/dev/null || skip "sqlite3 is not installed"

site_init CEN
site_init B01 CEN
site_link CEN B01
SRC=$SCRATCH/src
mkdir -p "$SRC"
echo hello >"$SRC/a.txt"
for c in CEN B01; do
    sx "$c" start >/dev/null || fail "sitectl start at $c exited $?"
done
ID=$(sx CEN package add --name bad-jobs --source "$SRC") || fail "sitectl package add exited $?"
b01_has() { [ "$(site_pkg_version B01 "$ID")" -ge 1 ]; }
wait_for 60 b01_has || fail "B01 did not install $ID"
say "package $ID at B01"

BOX=$(site_root CEN)/inboxes/schedule.box
# drop_job SITE INSTRUCTION [GARBLE]: a job record written into CEN's schedule.box.
drop_job() {
    python3 - "$BOX" "$1" "$ID" "$2" "${3:-}" <<'PY' || fail "cannot write a job"
import hashlib, os, secrets, sys, time
box, site, pkg, ins, garble = sys.argv[1:6]
when = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
body = ("sitesrv job 1\nsite=%s\npriority=medium\npackage=%s\nversion=1\n"
        "instruction=%s\npackage_file=store/out/%s-1.pck\ncreated=%s\n"
        % (site, pkg, ins, pkg, when)).encode()
rec = body + b"end " + hashlib.sha256(body).hexdigest().encode() + b"\n"
if garble:
    rec = rec.replace(b"priority=medium", b"priority=mediun")
name = "CEN-%s.job" % secrets.token_hex(16)
tmp = os.path.join(box, ".tmp", name)
with open(tmp, "wb") as f:
    f.write(rec)
os.rename(tmp, os.path.join(box, name))
print(name)
PY
}
JX=$(drop_job XYZ "store/out/$ID-1.ins")
drop_job B01 keys/site.key >/dev/null
drop_job B01 "store/out/$ID-1.ins" garble >/dev/null

# The two bad ones are quarantined with a reason each.
two_corrupt() { [ "$(find "$BOX/corrupt" -name '*.reason' | wc -l)" -ge 2 ]; }
wait_for 20 two_corrupt || fail "the bad jobs were not quarantined: $(ls "$BOX/corrupt")"
grep -qs "is not under store/out/" "$BOX"/corrupt/*.reason || fail "no reason names the key path"
grep -qs "checksum mismatch" "$BOX"/corrupt/*.reason || fail "no reason says the damaged job fails its checksum"
say "ok: a job naming the site's key and a damaged job quarantined with their reasons"

# The job for XYZ waits, said once.  Give a busy loop time to show.
sleep 3
[ -f "$BOX/$JX" ] || fail "the job for XYZ is not waiting in schedule.box"
n=$(grep -c "no route to site XYZ" "$(site_root CEN)/logs/sched.log")
expect_eq "log lines about the job for XYZ" 1 "$n"
files=$(find "$(site_root CEN)/inboxes/statmgr.box" -name '*.svf' | wc -l)
recorded=$(site_msg_count CEN 8204)
check '[ "$files" -le 5 ] && [ "$recorded" -le 1 ]' \
    "status message files piled up: $files waiting, $recorded 8204 recorded (a busy loop)"
say "ok: the job for the unknown site XYZ waits, said once ($recorded 8204, $files files waiting)"

# XYZ is added: the job goes there.
site_init XYZ CEN
site_link CEN XYZ
sx XYZ start despool >/dev/null || fail "sitectl start despool at XYZ exited $?"
sx CEN send now >/dev/null || fail "sitectl send now exited $?"
xyz_has() { [ "$(site_pkg_version XYZ "$ID")" -ge 1 ]; }
wait_for 60 xyz_has || fail "XYZ did not install $ID after it was added"
gone() { [ ! -f "$BOX/$JX" ] && [ "$(site_requests CEN)" = 0 ]; }
wait_for 30 gone || fail "the job for XYZ or its request is still at CEN"
say "ok: once XYZ was added, the job went there and XYZ installed $ID"
