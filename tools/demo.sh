#!/bin/bash
# demo.sh - `make demo`: build a demo site under demo/ and show
#  - the status message path end to end: statmgr serving, clients on
#    several machines dropping status messages into the client access
#    point (one of them while the drop box is unreachable, so its message
#    waits in the client's local queue), a corrupt file quarantined;
#  - a package distributed to two distribution points, one of them
#    unreachable for a while (retried alone, per DP), handed to a child
#    site's scheduler job exactly once, and a delta update;
#  - the child site B01 (its own daemons, its own DP): CEN's sender carries
#    the compressed package file and the signed instruction to B01, B01's
#    despooler verifies and installs them, B01's distmgr serves its DP, and
#    B01's status messages come back to CEN, which shows B01 as installed;
#  - what an administrator sees, and an online backup of the central site.
set -euo pipefail
B=${B:-build}
SRC=$(cd "$(dirname "$0")/.." && pwd)
SITECTL=$SRC/$B/bin/sitectl
DEMO=$SRC/demo
ROOT=$DEMO/CEN
CHILD=$DEMO/B01

say() { printf '\n== %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

if [ -d "$DEMO" ]; then
    "$SITECTL" --root "$ROOT" stop >/dev/null 2>&1 || true
    "$SITECTL" --root "$CHILD" stop >/dev/null 2>&1 || true
    rm -rf "$DEMO"
fi
mkdir -p "$DEMO"
export SITESRV_ROOT=$ROOT
# Whatever happens below, leave no daemon running.
trap '"$SITECTL" --root "$ROOT" stop >/dev/null 2>&1 || true
      "$SITECTL" --root "$CHILD" stop >/dev/null 2>&1 || true' EXIT

# Wait for a condition (never a fixed sleep): wait_for SECONDS WHAT CMD...
wait_for() {
    local secs=$1 what=$2
    shift 2
    for _ in $(seq 1 $((secs * 10))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "(still waiting for $what after ${secs}s; going on)"
    return 0
}
child_has() {   # child_has PKG VERSION: B01's DP copy is at VERSION
    "$SITECTL" --root "$CHILD" package show "$1" --json 2>/dev/null |
        python3 -c 'import json,sys; p=json.load(sys.stdin); v=int(sys.argv[1]); sys.exit(0 if p["version"]>=v and all(d["state"]=="installed" and d["version"]>=v for d in p["dps"]) else 1)' "$2"
}
cen_sees_child() {   # cen_sees_child PKG: CEN shows B01 installed
    "$SITECTL" --root "$ROOT" package show "$1" --json 2>/dev/null |
        python3 -c 'import json,sys; p=json.load(sys.stdin); sys.exit(0 if any(s["code"]=="B01" and s["state"]=="installed" and s["version"]>=p["version"] for s in p["sites"]) else 1)'
}

say "A central site, CEN"
run "$SITECTL" init --site CEN --root "$ROOT"
run "$SITECTL" config set statmgr.rescan 2s

run "$SITECTL" config set distmgr.retry_delay 1s
run "$SITECTL" config set distmgr.retry_max_delay 2s
run "$SITECTL" config set sender.retry_delay 1s

say "Start the daemons (returns once each is ready)"
run "$SITECTL" start

say "Clients on three machines report status to the client access point"
CAP=$ROOT/inboxes/cap
for m in WKS001 WKS002 LAPTOP7; do
    run "$SITECTL" client send-status --cap "$CAP" --id 8600 --machine "$m" \
        --component "Software Distribution" --istr "hello from $m"
done

say "A client whose drop box is unreachable keeps the message in its local queue"
QUEUE=$DEMO/client-queue
run "$SITECTL" client send-status --cap "$DEMO/offline-share" --queue "$QUEUE" \
    --id 8600 --machine ROAMER --istr "written while offline"
say "... and delivers it with its next call, once the share is back"
run "$SITECTL" client send-status --cap "$CAP" --queue "$QUEUE" \
    --id 8600 --machine ROAMER --istr "back online"

say "Someone drops a damaged file into the drop box"
# A well-formed name, so that statmgr reads it and says what is wrong inside.
damaged=WKS009-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n').svf
printf 'sitesrv statmsg 1\nid=8600\nthis line was cut off in transit' > "$CAP/statmsgs.box/.tmp/$damaged"
mv "$CAP/statmsgs.box/.tmp/$damaged" "$CAP/statmsgs.box/$damaged"

# Wait (on the condition, not a fixed sleep) until statmgr has seen it all.
for _ in $(seq 1 100); do
    [ -z "$(find "$CAP/statmsgs.box" -maxdepth 1 -type f ! -name '.*' -print -quit)" ] && break
    sleep 0.1
done

say "A package source share with a few files"
SRCDIR=$DEMO/source/office
mkdir -p "$SRCDIR/bin" "$SRCDIR/docs"
printf 'setup program v1\n' > "$SRCDIR/bin/setup.exe"
printf 'read me\n' > "$SRCDIR/docs/readme.txt"
head -c 300000 /dev/zero | tr '\0' 'x' > "$SRCDIR/bin/data.cab"

say "Two distribution points: DP1 is there, DP2's share is not mounted yet"
mkdir -p "$DEMO/dp1"
run "$SITECTL" dp add DP1 "$DEMO/dp1"
run "$SITECTL" dp add DP2 "$DEMO/dp2"
say "A child site B01 with a DP of its own; each site records the other's public key"
run "$SITECTL" init --site B01 --parent CEN --root "$CHILD" >/dev/null
run "$SITECTL" --root "$CHILD" config set statmgr.rescan 2s
mkdir -p "$DEMO/b01-dp1"
run "$SITECTL" --root "$CHILD" dp add DP1 "$DEMO/b01-dp1"
run "$SITECTL" --root "$CHILD" site add CEN --address "file:$ROOT/inboxes/despoolr.box/receive" \
    --key "$ROOT/keys/site.pub"
run "$SITECTL" site add B01 --address "file:$CHILD/inboxes/despoolr.box/receive" \
    --key "$CHILD/keys/site.pub"
run "$SITECTL" --root "$CHILD" start

say "Add the package (prints its ID)"
printf '$ %s\n' "sitectl package add --name Office --source $SRCDIR"
PKG=$("$SITECTL" package add --name Office --source "$SRCDIR")
echo "$PKG"
run "$SITECTL" package wait "$PKG" --timeout 4 || true
say "DP1 has it; DP2 is retried on its own, with a growing delay"
run "$SITECTL" package show "$PKG"
run "$SITECTL" retry list

say "The share comes back: DP2 is brought to the version at its next retry"
mkdir -p "$DEMO/dp2"
run "$SITECTL" package wait "$PKG" --timeout 30
find "$DEMO/dp2/$PKG" -type f | sort

say "However many DP retries there were, one job went to the scheduler for B01"
grep -h "for site B01" "$ROOT/logs/sched.log" | sed 's/.*LOG\[//; s/\]LOG.*//'

say "B01 received it: CEN's sender sent the package file and the signed instruction,"
say "B01's despooler verified and installed them, B01's distmgr copied it to B01's DP"
wait_for 30 "B01 to install $PKG" child_has "$PKG" 1
grep -h "sent package" "$ROOT/logs/sender.log" | sed 's/.*LOG\[//; s/\]LOG.*//'
grep -h "installed" "$CHILD/logs/despool.log" | sed 's/.*LOG\[//; s/\]LOG.*//'
run "$SITECTL" --root "$CHILD" package show "$PKG"
say "B01's status messages reach CEN, which now shows B01 as installed"
wait_for 30 "CEN to see B01 installed" cen_sees_child "$PKG"
run "$SITECTL" package show "$PKG"

say "A delta update: one file changed, one added, one removed"
printf 'setup program v2\n' > "$SRCDIR/bin/setup.exe"
printf 'new notes\n' > "$SRCDIR/docs/notes.txt"
rm "$SRCDIR/docs/readme.txt"
run "$SITECTL" package update "$PKG"
run "$SITECTL" package wait "$PKG" --timeout 30
run diff -r "$SRCDIR" "$DEMO/dp1/$PKG" && echo "DP1 matches the source"
grep -h "installed on" "$ROOT/logs/distmgr.log" | sed 's/.*LOG\[//; s/\]LOG.*//'
say "... and at B01 too (the instruction carries the whole manifest; B01 copies only what changed onto its DP)"
wait_for 30 "B01 to install version 2" child_has "$PKG" 2
run diff -r "$SRCDIR" "$DEMO/b01-dp1/$PKG" && echo "B01's DP1 matches the source"
wait_for 30 "CEN to see B01 at version 2" cen_sees_child "$PKG"
run "$SITECTL" package show "$PKG"

# statmgr records what distmgr reported.
for _ in $(seq 1 100); do
    [ -z "$(find "$ROOT/inboxes/statmgr.box/statmsgs" -maxdepth 1 -type f ! -name '.*' -print -quit)" ] && break
    sleep 0.1
done

say "What the administrator sees"
run "$SITECTL" status
run "$SITECTL" inbox
run "$SITECTL" send list
run "$SITECTL" messages
say "Status messages from B01, recorded at CEN"
run "$SITECTL" messages --id 8300
say "The quarantined file and its reason"
ls -1 "$CAP/statmsgs.box/corrupt/"
cat "$CAP/statmsgs.box/corrupt/"*.reason
say "The component log (CMTrace format: open it in CMTrace or OneTrace)"
tail -n 5 "$ROOT/logs/statmgr.log"

say "A backup while everything runs (no daemon stopped), and the backups kept"
run "$SITECTL" backup now --wait --timeout 120 || true
run "$SITECTL" backup list

say "Stop"
run "$SITECTL" stop
run "$SITECTL" --root "$CHILD" stop
printf '\nThe demo sites stay in %s and %s (site.conf, inboxes/, db/site.db, store/);\n' "$ROOT" "$CHILD"
printf 'their logs in logs/ of each (distmgr.log, sched.log, sender.log, despool.log, statmgr.log);\n'
printf 'the DPs in %s/dp1, %s/dp2 and %s/b01-dp1.\n' "$DEMO" "$DEMO" "$DEMO"
