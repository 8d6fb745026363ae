#!/bin/bash
# 106-despool.sh - the Despooler (issue 4).  Two sites on this machine: CEN
# (central) and its child B01, each with a DP.  No sender exists yet, so the
# test plays the sender by hand, by the transfer protocol of the design
# notes: the package file copied into B01's receive/.tmp and renamed in,
# then the instruction the same way (its rename is the commit).
#
#   - version 1 of a package added at CEN is installed into B01's store and
#     database, and B01's distmgr brings B01's DP to it (same tree as the
#     source);
#   - version 2 (changed, added and removed files) follows;
#   - v2 delivered again, and v1 after v2: 8302, nothing changes;
#   - a tampered package file with its valid instruction, and a tampered
#     instruction (version edited, record checksum re-sealed so only the
#     signature catches it): both files quarantined, 8301, nothing installed;
#   - an instruction whose package file arrives 3 s later: 8303 meanwhile,
#     other instructions are processed meanwhile, and it is installed once
#     the package file is there.
# A validly signed instruction with a '../x' path is covered by
# tests/unit/test_despool.c (a scenario cannot sign).
# shellcheck disable=SC2016  # check() evaluates its single-quoted condition
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=helpers/dm.sh
. "$(dirname "$0")/helpers/dm.sh"

# ROOT (lib.sh) is the child B01, where the despooler runs; CEN is beside it.
CEN=$SCN_DIR/cen
cc() { timeout 120 "$SITECTL" --root "$CEN" "$@"; }
# Stop CEN's daemons too, then lib.sh's cleanup with the status we had.
trap 'scn_rc=$?; timeout 60 "$SITECTL" --root "$CEN" stop >/dev/null 2>&1; (exit $scn_rc); scn_cleanup' EXIT

"$SITECTL" init --site CEN --root "$CEN" >/dev/null || fail "sitectl init --site CEN exited $?"
cc config set statmgr.rescan 1s >/dev/null || fail "config set at CEN exited $?"
"$SITECTL" init --site B01 --parent CEN --root "$ROOT" >/dev/null || fail "sitectl init --site B01 --parent CEN exited $?"
sc config set statmgr.rescan 1s >/dev/null || fail "config set at B01 exited $?"
RX=$ROOT/inboxes/despoolr.box/receive
sc site add CEN --address "file:$CEN/inboxes/despoolr.box/receive" --key "$CEN/keys/site.pub" >/dev/null ||
    fail "sitectl site add CEN (at B01) exited $?"
cc site add B01 --address "file:$RX" --key "$ROOT/keys/site.pub" >/dev/null ||
    fail "sitectl site add B01 (at CEN) exited $?"
expect_eq "parent site recorded at B01" parent "$(db_count "SELECT relation FROM site WHERE code = 'CEN'")"

SRC=$SCRATCH/src
DPC=$SCRATCH/dpc
DPB=$SCRATCH/dpb
mkdir -p "$SRC/sub" "$DPC" "$DPB"
echo one >"$SRC/a"
head -c 100000 /dev/urandom >"$SRC/sub/big"
echo three >"$SRC/sub/c"
cc dp add DPC "$DPC" >/dev/null || fail "sitectl dp add DPC exited $?"
sc dp add DPB "$DPB" >/dev/null || fail "sitectl dp add DPB exited $?"

cc start distmgr statmgr >/dev/null || fail "sitectl start at CEN exited $?"
ID=$(cc package add --name despool-test --source "$SRC") || fail "sitectl package add exited $?"
say "package $ID added at CEN"

# The job distmgr wrote for B01 at version V; its files are saved aside,
# since CEN removes a version's files once a newer one exists.
job_for() {
    local f
    f=$(grep -l "^version=$1\$" "$CEN"/inboxes/schedule.box/*.job 2>/dev/null | head -n 1)
    [ -n "$f" ] && echo "$f"
}
save_version() {
    local v=$1 job ins pck
    wait_for 30 job_for "$v" >/dev/null || fail "no job for version $v in CEN's schedule.box within 30 s"
    job=$(job_for "$v")
    ins=$(sed -n 's/^instruction=//p' "$job")
    pck=$(sed -n 's/^package_file=//p' "$job")
    cp "$CEN/$ins" "$SCRATCH/v$v.ins" && cp "$CEN/$pck" "$SCRATCH/v$v.pck" ||
        fail "cannot copy $ins and $pck of version $v"
    say "version $v: job $(basename "$job") names $ins and $pck"
}
new_base() { echo "CEN-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"; }
# put FILE NAME: by the protocol, into receive/.tmp, then renamed in.
put() {
    cp "$1" "$RX/.tmp/$2" && mv -n "$RX/.tmp/$2" "$RX/$2" || fail "cannot deliver $2"
}
# deliver INS PCK: package file first, instruction last; prints the base name.
deliver() {
    local x
    x=$(new_base)
    put "$2" "$x.pck"
    put "$1" "$x.ins"
    echo "$x"
}
b01_version() { db_count "SELECT coalesce(max(version), 0) FROM package WHERE id = '$ID'"; }
version_is() { [ "$(b01_version)" = "$1" ]; }
rx_empty() { [ "$(inbox_files "$RX")" -eq 0 ] && [ "$(inbox_files "$RX/work")" -eq 0 ]; }
msgs_at_least() { [ "$(msg_count "$1" "$ID")" -ge "$2" ]; }
rejections_at_least() { [ "$(msg_count 8301)" -ge "$1" ]; }
corrupt_at_least() { [ "$(corrupt_files "$RX")" -ge "$1" ]; }

save_version 1
sc start distmgr statmgr despool >/dev/null || fail "sitectl start at B01 exited $?"
check 'daemon_running despool' "despool is not running at B01"

# --- version 1
x=$(deliver "$SCRATCH/v1.ins" "$SCRATCH/v1.pck")
wait_for 30 version_is 1 || fail "B01 has not installed version 1 within 30 s (version $(b01_version))"
sc package wait "$ID" --timeout 60 >/dev/null || fail "package wait $ID at B01 exited $?: $(pkg_json "$ID" | jq -c .dps)"
diff -r "$SRC" "$DPB/$ID" || fail "B01's DP differs from CEN's source at version 1"
check 'rx_empty' "receive/ not empty after the install of version 1"
expect_eq "origin of $ID at B01" CEN "$(db_count "SELECT origin FROM package WHERE id = '$ID'")"
expect_eq "source of $ID at B01 (empty: received)" "" "$(db_count "SELECT source FROM package WHERE id = '$ID'" | sed 's/^0$//')"
wait_for 30 msgs_at_least 8300 1 || fail "no 8300 at B01 for version 1"
say "ok: version 1 installed at B01 ($x) and on its DP"

# --- version 2: changed, added, removed files
echo "one, changed" >"$SRC/a"
echo new >"$SRC/sub/d"
rm "$SRC/sub/c"
cc package update "$ID" >/dev/null || fail "sitectl package update at CEN exited $?"
save_version 2
deliver "$SCRATCH/v2.ins" "$SCRATCH/v2.pck" >/dev/null
wait_for 30 version_is 2 || fail "B01 has not installed version 2 within 30 s"
sc package wait "$ID" --timeout 60 >/dev/null || fail "package wait $ID (v2) at B01 exited $?"
diff -r "$SRC" "$DPB/$ID" || fail "B01's DP differs from CEN's source at version 2"
expect_eq "pkg_version rows at B01" 1 "$(db_count "SELECT count(*) FROM pkg_version WHERE package = '$ID'")"
wait_for 30 msgs_at_least 8300 2 || fail "no second 8300 at B01"
say "ok: version 2 installed at B01 and on its DP"

# --- the same v2 again, and v1 after v2: nothing changes
upd=$(db_count "SELECT updated_ms FROM package WHERE id = '$ID'")
deliver "$SCRATCH/v2.ins" "$SCRATCH/v2.pck" >/dev/null
wait_for 30 msgs_at_least 8302 1 || fail "no 8302 for v2 delivered again"
wait_for 10 rx_empty || fail "receive/ not empty after a duplicate"
deliver "$SCRATCH/v1.ins" "$SCRATCH/v1.pck" >/dev/null
wait_for 30 msgs_at_least 8302 2 || fail "no 8302 for v1 delivered after v2"
wait_for 10 rx_empty || fail "receive/ not empty after an older version"
expect_eq "version at B01" 2 "$(b01_version)"
expect_eq "updated_ms of the package (untouched)" "$upd" "$(db_count "SELECT updated_ms FROM package WHERE id = '$ID'")"
expect_eq "8300 messages" 2 "$(msg_count 8300 "$ID")"
diff -r "$SRC" "$DPB/$ID" || fail "B01's DP changed after duplicates"
say "ok: duplicate and older deliveries changed nothing"

# --- version 3 at CEN, for the tampering and the late package file
echo v3 >"$SRC/e"
cc package update "$ID" >/dev/null || fail "sitectl package update (v3) at CEN exited $?"
save_version 3

# A tampered package file (one byte flipped) with its valid instruction.
cp "$SCRATCH/v3.pck" "$SCRATCH/bad.pck"
off=$(($(stat -c %s "$SCRATCH/bad.pck") / 2))
b=$(od -An -tu1 -j "$off" -N1 "$SCRATCH/bad.pck" | tr -d ' ')
# shellcheck disable=SC2059
printf "\\$(printf %03o $((b ^ 1)))" | dd of="$SCRATCH/bad.pck" bs=1 seek="$off" conv=notrunc status=none
cmp -s "$SCRATCH/bad.pck" "$SCRATCH/v3.pck" && fail "the byte flip changed nothing"
c0=$(corrupt_files "$RX")
x=$(deliver "$SCRATCH/v3.ins" "$SCRATCH/bad.pck")
wait_for 30 corrupt_at_least $((c0 + 2)) || fail "the tampered package file and its instruction were not both quarantined"
wait_for 30 rejections_at_least 1 || fail "no 8301 for a tampered package file"
check 'rx_empty' "receive/ not empty after a rejection"
expect_eq "version at B01 after a tampered package file" 2 "$(b01_version)"
grep -q 'package file' "$RX"/corrupt/*.reason || fail "no .reason names the package file"
say "ok: tampered package file rejected, both files quarantined"

# A tampered instruction: version edited, record checksum re-sealed, so that
# only the signature catches it.
head -n -1 "$SCRATCH/v3.ins" | sed 's/^version=3$/version=9/' >"$SCRATCH/bad.ins"
grep -q '^version=9$' "$SCRATCH/bad.ins" || fail "cannot edit the version of the instruction"
echo "end $(sha256sum "$SCRATCH/bad.ins" | cut -c 1-64)" >>"$SCRATCH/bad.ins"
c0=$(corrupt_files "$RX")
deliver "$SCRATCH/bad.ins" "$SCRATCH/v3.pck" >/dev/null
wait_for 30 corrupt_at_least $((c0 + 2)) || fail "the tampered instruction and its package file were not both quarantined"
wait_for 30 rejections_at_least 2 || fail "no 8301 for a tampered instruction"
grep -q 'signature' "$RX"/corrupt/*.reason || fail "no .reason names the signature"
expect_eq "version at B01 after a tampered instruction" 2 "$(b01_version)"
say "ok: tampered instruction rejected by its signature"

# --- the package file 3 s after its instruction; others flow meanwhile
x=$(new_base)
put "$SCRATCH/v3.ins" "$x.ins"
wait_for 30 msgs_at_least 8303 1 || fail "no 8303 while the package file is missing"
d0=$(msg_count 8302 "$ID")
deliver "$SCRATCH/v1.ins" "$SCRATCH/v1.pck" >/dev/null
wait_for 30 msgs_at_least 8302 $((d0 + 1)) || fail "another instruction was not processed while one waits"
check '[ -f "$RX/$x.ins" ] || [ -f "$RX/work/$x.ins" ]' "the waiting instruction is gone from receive/"
expect_eq "version at B01 while the package file is missing" 2 "$(b01_version)"
sleep 3   # the delay being tested: the package file comes late
put "$SCRATCH/v3.pck" "$x.pck"
wait_for 30 version_is 3 || fail "version 3 not installed after its package file arrived"
sc package wait "$ID" --timeout 60 >/dev/null || fail "package wait $ID (v3) at B01 exited $?"
diff -r "$SRC" "$DPB/$ID" || fail "B01's DP differs from CEN's source at version 3"
wait_for 10 rx_empty || fail "receive/ not empty after the late install"
expect_eq "8303 messages (once per instruction)" 1 "$(msg_count 8303 "$ID")"
say "ok: a late package file is waited for without holding a worker"

ready_installed() { grep -q '^installed=3$' "$ROOT/run/despool.ready"; }
wait_for 15 ready_installed || fail "ready file: $(tr '\n' ' ' <"$ROOT/run/despool.ready")"
say "ok: ready file $(grep -E '^(installed|rejected|duplicates|waiting)=' "$ROOT/run/despool.ready" | tr '\n' ' ')"
sc stop >/dev/null || fail "sitectl stop at B01 exited $?"
say "PASS"
