#!/bin/bash
# 108-send-resume.sh - an interrupted transfer resumes (issue 4).  Two sites
# on this machine over file: addresses: CEN and its child B01, B01 with a DP.
# A package with one ~200 MB incompressible file (zstd stores it, so the
# package file is ~200 MB too) is added at CEN; CEN's sender is started only
# once distmgr has written the job, and killed with SIGKILL as soon as its
# send request records a confirmed offset (every 32 MiB).  After a restart:
#
#   - sender.log says "resuming the package file at byte N", N >= the offset
#     seen before the kill and N > 0;
#   - the transfer that completes wrote fewer bytes than the package file
#     ("sent package ... (W bytes written, resumed at N)": W < its size), so
#     the first part was not sent again;
#   - B01 installs the version, and its DP's copy of the file equals the
#     source (cmp).
#
# The kill must land between the first confirmed offset and the end of the
# copy: with 32 MiB steps that is the last ~84% of the transfer.  Should a
# very fast disk finish it before the poll sees an offset, the test tries
# once more with a new version of a file twice as large (see try_kill).
# shellcheck disable=SC2016  # check() evaluates its single-quoted condition
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=helpers/sites.sh
. "$(dirname "$0")/helpers/sites.sh"

site_init CEN
site_init B01 CEN
site_link CEN B01
CENR=$(site_root CEN)
REQS=$CENR/inboxes/schedule.box/requests
SLOG=$CENR/logs/sender.log
SRC=$SCRATCH/src
DPB=$SCRATCH/dpb
mkdir -p "$SRC" "$DPB"
sx B01 dp add DPB "$DPB" >/dev/null || fail "sitectl dp add DPB (at B01) exited $?"
sx B01 start despool distmgr statmgr >/dev/null || fail "sitectl start at B01 exited $?"
sx CEN start distmgr statmgr >/dev/null || fail "sitectl start distmgr statmgr at CEN exited $?"

# The package file of version V, once distmgr has written its job (the
# sender is not running, so the job stays in schedule.box).
job_for() { grep -l "^version=$1\$" "$CENR"/inboxes/schedule.box/*.job 2>/dev/null | head -n 1; }
has_job() { [ -n "$(job_for "$1")" ]; }
pck_of() { sed -n 's/^package_file=//p' "$(job_for "$1")"; }

# The highest offset= of any request at CEN, read with shell builtins only
# (no process per poll), so that a fast transfer is polled often.
max_offset() {
    local f line best=0 v
    for f in "$REQS"/*.srq; do
        [ -f "$f" ] || continue
        while IFS= read -r line; do
            case $line in
            offset=*)
                v=${line#offset=}
                [[ $v =~ ^[0-9]+$ ]] && [ "$v" -gt "$best" ] && best=$v
                ;;
            esac
        done <"$f" 2>/dev/null
    done
    echo "$best"
}
sent_lines() {
    local n
    n=$(grep -c 'sent package' "$SLOG" 2>/dev/null)
    echo "${n:-0}"
}
# requests/ holds R.srq files only (and its own directories).
odd_requests() { find "$REQS" -mindepth 1 -maxdepth 1 -type f ! -name '*.srq' -printf '%f ' 2>/dev/null; }

# try_kill V: start CEN's sender, wait for an offset > 0 of version V's
# request, SIGKILL the sender.  Sets O (the offset seen).  Returns 1 when the
# transfer ended before an offset was seen (the disk was too fast).
try_kill() {
    local v=$1 pid deadline s0
    s0=$(sent_lines)
    sx CEN start sender >/dev/null || fail "sitectl start sender at CEN exited $?"
    pid=$(site_pid CEN sender)
    is_our_daemon "$pid" || fail "run/sender.pid at CEN names '$pid', not a running sender"
    O=0
    deadline=$(($(scn_now_ms) + 60000))
    while :; do
        O=$(max_offset)
        [ "$O" -gt 0 ] && break
        [ "$(sent_lines)" -gt "$s0" ] && break
        [ "$(scn_now_ms)" -ge "$deadline" ] && fail "no offset recorded in CEN's requests/ within 60 s"
        sleep 0.01
    done
    site_kill CEN sender
    [ -z "$(odd_requests)" ] || fail "files in CEN's requests/ not named R.srq: $(odd_requests)(was the offset recorded under the wrong name?)"
    if [ "$(sent_lines)" -gt "$s0" ]; then
        say "note: version $v was sent before the kill (offset seen: $O)"
        return 1
    fi
    say "ok: CEN's sender (pid $pid) killed with SIGKILL at a confirmed offset of $O bytes"
    return 0
}

head -c 200000000 /dev/urandom >"$SRC/big" || fail "cannot write the 200 MB source file"
ID=$(sx CEN package add --name resume --source "$SRC") || fail "sitectl package add at CEN exited $?"
say "package $ID added at CEN"
V=1
wait_for 60 has_job 1 || fail "no job for version 1 in CEN's schedule.box within 60 s"
PCK=$CENR/$(pck_of 1)
if ! try_kill 1; then
    # A disk fast enough to copy 200 MB before one poll: once more, with a
    # file twice as large, as a new version.
    b01_has() { [ "$(site_pkg_version B01 "$ID")" -ge 1 ]; }
    wait_for 60 b01_has || fail "B01 has not installed version 1 within 60 s"
    sx CEN stop sender >/dev/null || fail "sitectl stop sender at CEN exited $?"
    head -c 400000000 /dev/urandom >"$SRC/big" || fail "cannot write the 400 MB source file"
    sx CEN package update "$ID" >/dev/null || fail "sitectl package update at CEN exited $?"
    V=2
    wait_for 60 has_job 2 || fail "no job for version 2 in CEN's schedule.box within 60 s"
    PCK=$CENR/$(pck_of 2)
    try_kill 2 || fail "the transfer ended before an offset was seen, twice (a 400 MB file)"
fi
PSIZE=$(stat -c %s "$PCK") || fail "cannot stat the package file $PCK"
say "package file of version $V: $PSIZE bytes"
check '[ "$O" -lt "$PSIZE" ]' "the offset seen ($O) is not below the package file's size ($PSIZE)"
expect_eq "requests at CEN after the kill" 1 "$(site_requests CEN)"

# Again: the transfer resumes and completes.
lines0=$(wc -l <"$SLOG")
sx CEN start sender >/dev/null || fail "sitectl start sender at CEN (after the kill) exited $?"
b01_version_is() { [ "$(site_pkg_version B01 "$ID")" = "$V" ]; }
wait_for 60 b01_version_is || fail "B01 has not installed version $V within 60 s (has $(site_pkg_version B01 "$ID"))"
sx B01 package wait "$ID" --timeout 60 >/dev/null || fail "sitectl package wait $ID at B01 exited $?"

# What the second run of the sender logged.
newlog=$(tail -n +$((lines0 + 1)) "$SLOG")
N=$(sed -n 's/.*resuming the package file at byte \([0-9]*\) of .*/\1/p' <<<"$newlog" | tail -n 1)
[ -n "$N" ] || fail "no 'resuming the package file at byte N' in sender.log after the restart"
check '[ "$N" -gt 0 ] && [ "$N" -ge "$O" ]' "resumed at byte $N, expected >= $O (the offset seen before the kill) and > 0"
say "ok: resumed at byte $N (offset seen before the kill: $O)"
sentline=$(grep "sent package $ID version $V " <<<"$newlog" | tail -n 1)
[ -n "$sentline" ] || fail "no 'sent package $ID version $V' in sender.log after the restart"
W=$(sed -n 's/.*(\([0-9]*\) bytes written, resumed at \([0-9]*\)).*/\1/p' <<<"$sentline")
R=$(sed -n 's/.*(\([0-9]*\) bytes written, resumed at \([0-9]*\)).*/\2/p' <<<"$sentline")
if [ -z "$W" ] || [ -z "$R" ]; then
    fail "cannot read the bytes written from: $sentline"
fi
expect_eq "resume offset in the 'sent' line" "$N" "$R"
check '[ "$W" -lt "$PSIZE" ]' "the second run wrote $W bytes, not less than the package file ($PSIZE): it sent the whole file again"
# The rest of the package file and the instruction, nothing more.
check '[ "$W" -le $((PSIZE - N + 64 * 1024 * 1024)) ]' "the second run wrote $W bytes, more than the rest of the package file ($((PSIZE - N))) and an instruction"
say "ok: the second run wrote $W of $PSIZE bytes"

cmp "$SRC/big" "$DPB/$ID/big" || fail "B01's DP copy of the file differs from the source"
say "ok: B01's DP has the file, equal to the source"
expect_eq "requests left at CEN" 0 "$(site_requests CEN)"
sent_at_cen() { [ "$(site_msg_count CEN 8200 "json_extract(attrs, '\$.Site') = 'B01'")" -ge 1 ]; }
wait_for 30 sent_at_cen || fail "no 8200 (sent) for B01 in CEN's messages"
leftover=$(find "$(site_receive B01)" -mindepth 1 -maxdepth 2 -type f ! -path '*/corrupt/*' | head -n 3)
[ -z "$leftover" ] || fail "files left in B01's receive/: $leftover"
sx CEN stop >/dev/null || fail "sitectl stop at CEN exited $?"
sx B01 stop >/dev/null || fail "sitectl stop at B01 exited $?"
say PASS
