#!/bin/bash
# 109-send-dead-site.sh - a dead child site does not delay a live one
# (issue 4).  CEN with two children over file: addresses, B01 and B02.  B01
# is dead: its receive directory is renamed away (receive.away) before any
# package exists, and its daemons are not running.  CEN's sender runs with
# 2 transfers at once, 2 per site, retries from 300 ms to 1 s.
#
#   - four packages added at CEN are all installed at B02 while B01 is still
#     dead; meanwhile B01's four requests wait at CEN, `sitectl send list
#     --json` shows them, attempts > 0 for B01 and B01 throttled as a site
#     (the retry table agrees), and B02 was never retried (no 8201 for B02);
#   - once the directory is back (and B01's despooler started), B01's
#     backlog drains: the four packages are installed at B01, no request
#     is left at CEN;
#   - CEN's messages: 8201 (retrying) for B01, and 8200 (sent) exactly once
#     per package for each site.
# shellcheck disable=SC2016  # check() evaluates its single-quoted condition
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=helpers/sites.sh
. "$(dirname "$0")/helpers/sites.sh"

NPKG=4
site_init CEN
site_init B01 CEN
site_init B02 CEN
site_link CEN B01
site_link CEN B02
for kv in sender.max_sendings=2 sender.max_per_site=2 sender.retry_delay=300ms sender.retry_max_delay=1s; do
    sx CEN config set "${kv%%=*}" "${kv#*=}" >/dev/null || fail "sitectl config set ${kv%%=*} ${kv#*=} at CEN exited $?"
done

# B01 is dead: its receive directory is missing.
RX1=$(site_receive B01)
mv "$RX1" "$RX1.away" || fail "cannot rename $RX1 away"
say "B01's receive directory renamed to receive.away"

sx B02 start despool statmgr >/dev/null || fail "sitectl start at B02 exited $?"
sx CEN start distmgr statmgr sender >/dev/null || fail "sitectl start at CEN exited $?"
IDS=()
for i in $(seq 1 "$NPKG"); do
    mkdir -p "$SCRATCH/src$i/sub"
    echo "package $i" >"$SCRATCH/src$i/a"
    head -c $((20000 * i)) /dev/urandom >"$SCRATCH/src$i/sub/b"
    id=$(sx CEN package add --name "dead-site-$i" --source "$SCRATCH/src$i") || fail "sitectl package add $i at CEN exited $?"
    IDS+=("$id")
done
say "packages ${IDS[*]} added at CEN"

installed_at() {
    local id
    for id in "${IDS[@]}"; do
        [ "$(site_pkg_version "$1" "$id")" = 1 ] || return 1
    done
}
count_installed() {
    local id n=0
    for id in "${IDS[@]}"; do
        [ "$(site_pkg_version "$1" "$id")" = 1 ] && n=$((n + 1))
    done
    echo "$n"
}
send_json() {
    local out
    out=$(sx CEN send list --json) || fail "sitectl send list --json at CEN exited $?"
    printf '%s\n' "$out"
}
# B01's requests at CEN tried and failed, and B01 throttled as a site.  The
# site is retried as a whole (its oldest requests, up to max_per_site, each
# time its delay ends), so not every request need have been tried yet.
b01_tried() {
    [ "$(send_json | jq '[.[] | select(.site == "B01" and .type == "package" and .attempts > 0 and .site_attempts > 0)] | length')" -ge 1 ]
}

wait_for 60 installed_at B02 || fail "B02 has installed $(count_installed B02) of $NPKG packages within 60 s (B01 dead)"
say "ok: B02 installed all $NPKG packages while B01 is dead"
check '[ ! -e "$RX1" ]' "B01's receive directory came back by itself"
expect_eq "packages installed at B01 (dead)" 0 "$(count_installed B01)"
wait_for 30 b01_tried || fail "B01's requests at CEN were not tried: $(send_json | jq -c '[.[] | {site, package, attempts, last_error}]')"
expect_eq "pending sends at CEN, all for B01" "$NPKG B01" "$(send_json | jq -r '[.[] | select(.type == "package")] | "\(length) \(map(.site) | unique | join(","))"')"
expect_eq "requests at CEN" "$NPKG" "$(site_requests CEN)"
sa=$(send_json | jq '[.[] | select(.site == "B01") | .site_attempts] | max')
check '[ "$sa" -gt 0 ]' "B01 is not throttled as a site in send list (site_attempts $sa)"
ra=$(site_db CEN "SELECT attempts FROM retry WHERE scope = 'send' AND target = 'B01'")
check '[ -n "$ra" ] && [ "$ra" -gt 0 ]' "no retry row with attempts > 0 for B01 (scope send) at CEN: '$ra'"
expect_eq "retry rows for B02 at CEN" 0 "$(site_db CEN "SELECT count(*) FROM retry WHERE scope = 'send' AND target = 'B02' AND attempts > 0")"
say "ok: B01's requests wait at CEN: $(send_json | jq -c '[.[] | select(.site == "B01") | .attempts]') attempts, site throttle $sa attempts (retry table: $ra)"

# B01 comes back: its backlog drains.
mv "$RX1.away" "$RX1" || fail "cannot rename receive.away back"
sx B01 start despool statmgr >/dev/null || fail "sitectl start at B01 exited $?"
wait_for 60 installed_at B01 || fail "B01 has installed $(count_installed B01) of $NPKG packages within 60 s of coming back: $(send_json | jq -c '[.[] | {site, package, attempts, next_retry, site_next_retry, last_error}]')"
say "ok: B01's backlog drained: $NPKG packages installed"
no_requests() { [ "$(site_requests CEN)" -eq 0 ]; }
wait_for 30 no_requests || fail "requests left at CEN: $(site_requests CEN)"
expect_eq "pending sends at CEN" 0 "$(send_json | jq length)"
expect_eq "retry rows (scope send) at CEN once B01 answers" 0 "$(site_db CEN "SELECT count(*) FROM retry WHERE scope = 'send' AND attempts > 0")"

# The status messages at CEN (statmgr ingests them a moment later).
sent_to() { site_msg_count CEN 8200 "json_extract(attrs, '\$.Site') = '$1'"; }
sent_all() { [ "$(sent_to B01)" -ge "$NPKG" ] && [ "$(sent_to B02)" -ge "$NPKG" ]; }
wait_for 30 sent_all || fail "8200 (sent) at CEN: $(sent_to B01) for B01, $(sent_to B02) for B02, want $NPKG each"
wait_for 30 site_msgs_drained CEN || fail "CEN's statmgr did not drain its inbox"
expect_eq "8200 (sent) for B01" "$NPKG" "$(sent_to B01)"
expect_eq "8200 (sent) for B02" "$NPKG" "$(sent_to B02)"
for id in "${IDS[@]}"; do
    expect_eq "8200 for $id at B01 and B02" "B01 B02" \
        "$(site_db CEN "SELECT group_concat(s, ' ') FROM (SELECT json_extract(attrs, '\$.Site') AS s FROM statmsg WHERE msgid = 8200 AND json_extract(attrs, '\$.PackageID') = '$id' ORDER BY s)")"
done
retr=$(site_msg_count CEN 8201 "json_extract(attrs, '\$.Site') = 'B01'")
check '[ "$retr" -ge 1 ]' "no 8201 (retrying) for B01 at CEN"
expect_eq "8201 (retrying) for B02" 0 "$(site_msg_count CEN 8201 "json_extract(attrs, '\$.Site') = 'B02'")"
say "ok: $retr messages 8201 for B01"
for c in CEN B01 B02; do
    sx "$c" stop >/dev/null || fail "sitectl stop at $c exited $?"
done
say PASS
