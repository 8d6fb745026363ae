#!/bin/bash
# 107-three-levels.sh - a package through three levels of sites over file:
# addresses (issue 4): central CEN, its child B01, B01's child G01, each
# with a DP, every daemon of every site running as shipped.
#
#   - a package added at CEN reaches every DP (CEN's by CEN's distmgr;
#     B01's after CEN's sender, B01's despooler and B01's distmgr; G01's
#     after B01's sender, re-signed by B01, and G01's despooler);
#   - an update with a changed, an added and a removed file follows, and
#     every DP equals the new source;
#   - each site's despooler installed each version exactly once, and the
#     package's send priority (high) travelled with it to every level;
#   - status goes up: CEN shows B01 as installed (package show), and
#     records G01's own 8300 with via B01 (replicated twice), which also
#     teaches CEN the route to G01;
#   - nothing is left waiting: no send request at CEN or B01, nothing in
#     B01's or G01's receive/;
#   - routing: a job at CEN for G01 (not a site CEN knows) goes through B01,
#     the child CEN learnt G01 behind; B01 already has that version, so it
#     changes nothing there (8302).
# shellcheck disable=SC2016
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=helpers/sites.sh
. "$(dirname "$0")/helpers/sites.sh"

command -v sqlite3 >/dev/null || skip "sqlite3 is not installed"

site_init CEN
site_init B01 CEN
site_init G01 B01
site_link CEN B01
site_link B01 G01

SRC=$SCRATCH/src
mkdir -p "$SRC/bin" "$SRC/docs"
printf 'setup v1\n' >"$SRC/bin/setup.exe"
printf 'read me\n' >"$SRC/docs/readme.txt"
head -c 3000000 /dev/urandom >"$SRC/bin/data.cab"
for c in CEN B01 G01; do
    mkdir -p "$SCRATCH/dp-$c"
    sx "$c" dp add DP1 "$SCRATCH/dp-$c" >/dev/null || fail "sitectl dp add at $c exited $?"
done
for c in G01 B01 CEN; do
    sx "$c" start >/dev/null || fail "sitectl start at $c exited $?"
done

ID=$(sx CEN package add --name three-levels --source "$SRC" --priority high) ||
    fail "sitectl package add exited $?"
say "package $ID added at CEN"

# A site has version V of the package on its DP (database and tree).
at_version() {   # at_version CODE V
    [ "$(site_pkg_version "$1" "$ID")" -ge "$2" ] 2>/dev/null &&
        [ "$(site_db "$1" "SELECT count(*) FROM dp_state WHERE package = '$ID' AND version >= $2 AND state = 'installed'")" = 1 ]
}
cen_sees_b01() {   # cen_sees_b01 V: CEN's package show says B01 installed V
    sx CEN package show "$ID" --json | python3 -c '
import json, sys
p = json.load(sys.stdin)
v = int(sys.argv[1])
sys.exit(0 if any(s["code"] == "B01" and s["state"] == "installed" and s["version"] >= v
                  for s in p["sites"]) else 1)' "$1"
}
same_tree() {   # same_tree CODE: CODE's DP copy equals the source
    diff -r "$SRC" "$SCRATCH/dp-$1/$ID" >/dev/null
}

for v in 1 2; do
    if [ "$v" = 2 ]; then
        printf 'setup v2\n' >"$SRC/bin/setup.exe"
        printf 'new notes\n' >"$SRC/docs/notes.txt"
        rm "$SRC/docs/readme.txt"
        sx CEN package update "$ID" >/dev/null || fail "sitectl package update exited $?"
        say "version 2: one file changed, one added, one removed"
    fi
    for c in CEN B01 G01; do
        wait_for 90 at_version "$c" "$v" || fail "$c did not reach version $v of $ID in 90 s"
        same_tree "$c" || fail "$c's DP copy of $ID differs from the source at version $v"
    done
    say "ok: version $v on the DPs of CEN, B01 and G01, equal to the source"
    wait_for 60 cen_sees_b01 "$v" ||
        fail "CEN's package show does not show B01 installed at version $v: $(sx CEN package show "$ID" --json)"
    say "ok: CEN shows B01 installed at version $v"
done

# Exactly once per site and version: one 'installed' line each.
for c in B01 G01; do
    for v in 1 2; do
        n=$(grep -c "package $ID (\"three-levels\") version $v from site .* installed" \
            "$(site_root "$c")/logs/despool.log")
        expect_eq "$c installs of version $v" 1 "$n"
    done
done
[ -f "$SCRATCH/dp-G01/$ID/docs/readme.txt" ] && fail "G01 kept the removed file docs/readme.txt"
# The package's priority travels with it (signed in the instruction).
for c in B01 G01; do
    expect_eq "$c's priority of $ID" high "$(site_db "$c" "SELECT priority FROM package WHERE id = '$ID'")"
done

# G01's messages reach CEN through B01.
g01_at_cen() {
    [ "$(site_msg_count CEN 8300 "site = 'G01' AND via = 'B01'")" -ge 2 ]
}
wait_for 60 g01_at_cen ||
    fail "CEN has $(site_msg_count CEN 8300 "site = 'G01'") 8300 messages from G01 (want 2, via B01)"
expect_eq "CEN's route to G01" B01 "$(site_db CEN "SELECT via FROM route WHERE site = 'G01'")"
say "ok: G01's 8300 messages recorded at CEN via B01; CEN routes G01 through B01"

drained() {
    [ "$(site_requests CEN)" = 0 ] && [ "$(site_requests B01)" = 0 ] &&
        [ -z "$(find "$(site_receive B01)" "$(site_receive G01)" -maxdepth 1 -type f -name '*.ins' -print -quit)" ]
}
wait_for 30 drained || fail "requests or instructions left waiting: $(site_requests CEN) at CEN, $(site_requests B01) at B01"
expect_eq "2339 messages at CEN" 2 "$(site_msg_count CEN 2339 "site = 'CEN'")"
say "ok: nothing left waiting; one job per version at CEN"

# A job for the grandchild, written at CEN by hand (distmgr only writes
# jobs for its own children): the scheduler sends it through B01.
python3 - "$(site_root CEN)/inboxes/schedule.box" "$ID" <<'PY' || fail "cannot write a job for G01"
import hashlib, os, secrets, sys, time
box, pkg = sys.argv[1], sys.argv[2]
when = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
body = ("sitesrv job 1\nsite=G01\npriority=medium\npackage=%s\nversion=2\n"
        "instruction=store/out/%s-2.ins\npackage_file=store/out/%s-2.pck\ncreated=%s\n"
        % (pkg, pkg, pkg, when)).encode()
rec = body + b"end " + hashlib.sha256(body).hexdigest().encode() + b"\n"
name = "CEN-%s.job" % secrets.token_hex(16)
tmp = os.path.join(box, ".tmp", name)
with open(tmp, "wb") as f:
    f.write(rec)
os.rename(tmp, os.path.join(box, name))
PY
routed() { grep -q "for site G01 via B01" "$(site_root CEN)/logs/sched.log"; }
wait_for 30 routed || fail "CEN's scheduler did not route the job for G01 through B01"
sent_g01() {
    [ "$(site_msg_count CEN 8200 "json_extract(attrs, '\$.Site') = 'G01'")" -ge 1 ]
}
wait_for 30 sent_g01 || fail "CEN's sender did not send the job for G01 (no 8200 with Site G01)"
dup_b01() {
    grep -q "package $ID version 2 from site CEN is not newer than version 2 held here" \
        "$(site_root B01)/logs/despool.log"
}
wait_for 30 dup_b01 || fail "B01's despooler did not take the routed version 2 as a duplicate"
expect_eq "B01's version after the routed job" 2 "$(site_pkg_version B01 "$ID")"
say "ok: a job for G01 at CEN went through B01, which already had it"
