#!/bin/bash
# 105-package-delete.sh - `sitectl package delete` (issue 3, "Delete"):
# the package leaves every DP, then the database, then the store, where
# only the content no other package uses is removed.
#   1. Two packages sharing some identical files on one DP; one deleted:
#      its DP tree and DB rows are gone (package show exits 1), the
#      objects only it used are removed, the shared ones and the other
#      package's tree stay.
#   2. A package on two DPs, one of them unreachable when it is deleted:
#      the reachable DP is cleaned at once, the package stays (state
#      deleting) until the other DP comes back, then it goes.
# shellcheck disable=SC2016  # check() evaluates its single-quoted condition
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=helpers/dm.sh
. "$(dirname "$0")/helpers/dm.sh"

site_init CEN
dm_short_delays
DP1=$SCRATCH/dp1
DP2=$SCRATCH/dp2
S1=$SCRATCH/src1
S2=$SCRATCH/src2
mkdir -p "$DP1" "$DP2" "$S1/sub" "$S2/other"
head -c 50000 /dev/urandom >"$SCRATCH/shared-a"
head -c 3000 /dev/urandom >"$SCRATCH/shared-b"
cp "$SCRATCH/shared-a" "$S1/common"
cp "$SCRATCH/shared-a" "$S2/common-too"
cp "$SCRATCH/shared-b" "$S1/sub/b"
cp "$SCRATCH/shared-b" "$S2/other/b"
head -c 40000 /dev/urandom >"$S1/only1-x"
head -c 7000 /dev/urandom >"$S1/sub/only1-y"
head -c 9000 /dev/urandom >"$S2/only2"
sha() { sha256sum "$1" | cut -c1-64; }
# ok, missing or bad: where the object lives follows from its size (small.db
# or a loose file), which helpers/store_check.py knows.
obj() { python3 "$HELPERS/store_check.py" "$ROOT" check "$1" | cut -d' ' -f1; }
SHARED="$(sha "$S1/common") $(sha "$S1/sub/b")"
ONLY1="$(sha "$S1/only1-x") $(sha "$S1/sub/only1-y")"
ONLY2=$(sha "$S2/only2")

sc dp add DP1 "$DP1" >/dev/null || fail "sitectl dp add DP1 exited $?"
sc dp add DP2 "$DP2" >/dev/null || fail "sitectl dp add DP2 exited $?"
sc start distmgr statmgr >/dev/null || fail "sitectl start exited $?"
P1=$(sc package add --name one --source "$S1" --dp DP1) || fail "sitectl package add one exited $?"
P2=$(sc package add --name two --source "$S2" --dp DP1) || fail "sitectl package add two exited $?"
sc package wait "$P1" --timeout 30 >/dev/null || fail "package wait $P1 exited $?"
sc package wait "$P2" --timeout 30 >/dev/null || fail "package wait $P2 exited $?"
for h in $SHARED $ONLY1 $ONLY2; do
    [ "$(obj "$h")" = ok ] || fail "object $h not in the store after both packages were stored"
done
say "ok: $P1 and $P2 installed on DP1; their content stored, shared files once"
expect_eq "objects in the store" 5 "$(python3 "$HELPERS/store_check.py" "$ROOT" count)"

# 1. Delete one of them.
sc package delete "$P1" >/dev/null || fail "sitectl package delete $P1 exited $?"
gone() { ! sc package show "$1" >/dev/null 2>&1; }
wait_for 30 gone "$P1" || fail "$P1 still shown 30 s after its deletion: $(sc package show "$P1" --json 2>&1)"
sc package show "$P1" >/dev/null 2>&1
expect_eq "exit status of package show of a deleted package" 1 "$?"
check '[ ! -e "$DP1/$P1" ] && [ ! -e "$DP1/.$P1.old" ] && [ ! -e "$DP1/.$P1.new" ]' "$P1 (or its .old/.new tree) still on DP1: $(ls -a "$DP1")"
for t in package package_dp pkg_version manifest dp_state site_job; do
    col=package
    [ "$t" = package ] && col=id
    expect_eq "rows of $P1 in $t" 0 "$(db_count "SELECT count(*) FROM $t WHERE $col = '$P1'")"
done
expect_eq "retry rows of $P1" 0 "$(db_count "SELECT count(*) FROM retry WHERE target LIKE '$P1/%' OR target = '$P1'")"
for h in $ONLY1; do
    [ "$(obj "$h")" = missing ] || fail "object $h, used only by $P1, still in the store"
done
for h in $SHARED $ONLY2; do
    case $(obj "$h") in
    ok) ;;
    missing) fail "object $h, used by $P2, was removed from the store" ;;
    *) fail "object $h was damaged" ;;
    esac
done
diff -r "$S2" "$DP1/$P2" || fail "$P2 on DP1 was touched by the deletion of $P1"
expect_eq "state of $P2 on DP1" installed "$(dp_field "$P2" DP1 state)"
say "ok: 1. $P1 deleted: DP tree, rows and its own objects gone; $P2 and the shared objects intact"

# 2. Delete with one DP unreachable.
S3=$SCRATCH/src3
mkdir -p "$S3"
head -c 12000 /dev/urandom >"$S3/three"
P3=$(sc package add --name three --source "$S3" --dp DP1 --dp DP2) || fail "sitectl package add three exited $?"
sc package wait "$P3" --timeout 30 >/dev/null || fail "package wait $P3 exited $?"
check '[ -d "$DP1/$P3" ] && [ -d "$DP2/$P3" ]' "$P3 not on both DPs"
mv "$DP2" "$SCRATCH/dp2-away"
sc package delete "$P3" >/dev/null || fail "sitectl package delete $P3 exited $?"
dp1_clean() { [ ! -e "$DP1/$P3" ] && [ ! -e "$DP1/.$P3.old" ]; }
wait_for 30 dp1_clean || fail "$P3 not removed from the reachable DP1 within 30 s"
removal_tried() {
    local a
    a=$(db_count "SELECT attempts FROM retry WHERE scope = 'dp' AND target = '$P3/del/DP2'")
    [ -n "$a" ] && [ "$a" -ge 2 ]
}
wait_for 30 removal_tried || fail "the removal of $P3 from the unreachable DP2 was not tried twice"
expect_eq "state of $P3 while DP2 is away" deleting "$(pkg_field "$P3" .state)"
expect_eq "dp_state rows of $P3 while DP2 is away" "DP2" "$(db_count "SELECT group_concat(dp) FROM dp_state WHERE package = '$P3'")"
check '[ "$(obj "$(sha "$S3/three")")" = ok ]' "the object of $P3 was removed from the store before every DP let go of it"
say "ok: DP1 cleaned at once; $P3 stays 'deleting' while DP2 is unreachable"
mv "$SCRATCH/dp2-away" "$DP2"
wait_for 30 gone "$P3" || fail "$P3 still shown 30 s after DP2 came back: $(sc package show "$P3" --json 2>&1)"
check '[ ! -e "$DP2/$P3" ] && [ ! -e "$DP2/.$P3.old" ]' "$P3 still on DP2 after the deletion finished"
check '[ "$(obj "$(sha "$S3/three")")" = missing ]' "the object of $P3 is still in the store"
expect_eq "rows of $P3 in dp_state" 0 "$(db_count "SELECT count(*) FROM dp_state WHERE package = '$P3'")"
diff -r "$S2" "$DP1/$P2" || fail "$P2 on DP1 was touched"
say "ok: 2. once DP2 came back, $P3 left it, the database and the store"
check 'daemon_running distmgr' "distmgr is not running at the end"
sc stop >/dev/null || fail "sitectl stop exited $?"
say PASS
