#!/bin/bash
# 112-send-priority-expiry.sh - the sender's order and its give-up (issue 4):
#
#   - priority: three packages added low, then medium, then high while the
#     child B01 is away wait as three requests; when B01 is back they are
#     sent high first, then medium, then low (whatever their age);
#   - job lifetime: with sender.job_lifetime at 2 s, a request for a child
#     that stays away is given up: 8203 with its package, its request and
#     files removed, and the other child unaffected.
# shellcheck disable=SC2016
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=helpers/sites.sh
. "$(dirname "$0")/helpers/sites.sh"

command -v sqlite3 >/dev/null || skip "sqlite3 is not installed"

site_init CEN
site_init B01 CEN
site_link CEN B01
RX=$(site_receive B01)
sx B01 start despool statmgr distmgr >/dev/null || fail "sitectl start at B01 exited $?"
# B01 away: its receive directory gone from its path (its despooler keeps
# the directory itself open, and finds it again when it is back).
mv "$RX" "$RX.away"
sx CEN start >/dev/null || fail "sitectl start at CEN exited $?"

declare -A PKG
for p in low medium high; do
    mkdir -p "$SCRATCH/src-$p"
    echo "$p" >"$SCRATCH/src-$p/f.txt"
    PKG[$p]=$(sx CEN package add --name "prio-$p" --source "$SCRATCH/src-$p" --priority "$p") ||
        fail "sitectl package add ($p) exited $?"
done
three() { [ "$(site_requests CEN)" = 3 ]; }
wait_for 30 three || fail "CEN has $(site_requests CEN) requests, not 3"
tried() { [ "$(site_db CEN "SELECT count(*) FROM retry WHERE scope = 'send' AND target = 'B01'")" = 1 ]; }
wait_for 30 tried || fail "B01 was not found away (no throttle row)"
say "three requests wait for B01 (low, medium, high, oldest first)"

mv "$RX.away" "$RX"
sx CEN send now B01 >/dev/null || fail "sitectl send now B01 exited $?"
none() { [ "$(site_requests CEN)" = 0 ]; }
wait_for 30 none || fail "CEN still has $(site_requests CEN) requests after B01 came back"
order=$(grep -o "sent package [A-Z0-9]* version" "$(site_root CEN)/logs/sender.log" |
    awk '{print $3}' | tr '\n' ' ')
expect_eq "order of the sends" "${PKG[high]} ${PKG[medium]} ${PKG[low]} " "$order"
say "ok: sent high, medium, low"

# Job lifetime: a second child that never comes.
sx CEN config set sender.job_lifetime 2s >/dev/null || fail "config set sender.job_lifetime exited $?"
site_init B02 CEN
site_link CEN B02
mv "$(site_receive B02)" "$(site_receive B02).away"
echo changed >"$SCRATCH/src-high/f.txt"
sx CEN package update "${PKG[high]}" >/dev/null || fail "sitectl package update exited $?"
expired() { [ "$(site_msg_count CEN 8203 "json_extract(attrs, '\$.Site') = 'B02'")" -ge 1 ]; }
wait_for 60 expired || fail "no 8203 for B02 within 60 s (job_lifetime 2s)"
wait_for 30 none || fail "CEN still has $(site_requests CEN) requests after the expiry"
expect_eq "files left in tosend/" 0 \
    "$(find "$(site_root CEN)/inboxes/schedule.box/tosend" -maxdepth 1 -type f | wc -l)"
b01_v2() { [ "$(site_pkg_version B01 "${PKG[high]}")" -ge 2 ]; }
wait_for 30 b01_v2 || fail "B01 did not get version 2 of ${PKG[high]}"
expect_eq "8203 carries the package" "${PKG[high]}" \
    "$(site_db CEN "SELECT json_extract(attrs, '\$.PackageID') FROM statmsg WHERE msgid = 8203 LIMIT 1")"
say "ok: the request for B02 expired with 8203; B01 got the version"
