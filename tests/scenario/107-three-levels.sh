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
#     B01's or G01's receive/.
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
