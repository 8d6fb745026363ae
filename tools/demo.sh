#!/bin/bash
# demo.sh - `make demo`: build a demo site under demo/ and show
#  - the status message path end to end: statmgr serving, clients on
#    several machines dropping status messages into the client access
#    point (one of them while the drop box is unreachable, so its message
#    waits in the client's local queue), a corrupt file quarantined;
#  - a package distributed to two distribution points, one of them
#    unreachable for a while (retried alone, per DP), handed to a child
#    site's scheduler job exactly once, and a delta update;
#  - what an administrator sees.
set -euo pipefail
B=${B:-build}
SRC=$(cd "$(dirname "$0")/.." && pwd)
SITECTL=$SRC/$B/bin/sitectl
DEMO=$SRC/demo
ROOT=$DEMO/CEN

say() { printf '\n== %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

if [ -d "$ROOT" ]; then
    "$SITECTL" --root "$ROOT" stop >/dev/null 2>&1 || true
    rm -rf "$DEMO"
fi
mkdir -p "$DEMO"
export SITESRV_ROOT=$ROOT
# Whatever happens below, leave no daemon running.
trap '"$SITECTL" --root "$ROOT" stop >/dev/null 2>&1 || true' EXIT

say "A central site, CEN"
run "$SITECTL" init --site CEN --root "$ROOT"
run "$SITECTL" config set statmgr.rescan 2s

run "$SITECTL" config set distmgr.retry_delay 1s
run "$SITECTL" config set distmgr.retry_max_delay 2s

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
say "A child site B01 (its public key comes from its own sitectl init)"
run "$SITECTL" init --site B01 --parent CEN --root "$DEMO/B01" >/dev/null
run "$SITECTL" site add B01 --address "file:$DEMO/B01/inboxes/despoolr.box/receive" \
    --key "$DEMO/B01/keys/site.pub"

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

say "However many retries there were, one job per child site went to the scheduler"
ls -1 "$ROOT/inboxes/schedule.box/"*.job
cat "$ROOT/inboxes/schedule.box/"*.job

say "A delta update: one file changed, one added, one removed"
printf 'setup program v2\n' > "$SRCDIR/bin/setup.exe"
printf 'new notes\n' > "$SRCDIR/docs/notes.txt"
rm "$SRCDIR/docs/readme.txt"
run "$SITECTL" package update "$PKG"
run "$SITECTL" package wait "$PKG" --timeout 30
run diff -r "$SRCDIR" "$DEMO/dp1/$PKG" && echo "DP1 matches the source"
grep -h "installed on" "$ROOT/logs/distmgr.log" | sed 's/.*LOG\[//; s/\]LOG.*//'

# statmgr records what distmgr reported.
for _ in $(seq 1 100); do
    [ -z "$(find "$ROOT/inboxes/statmgr.box/statmsgs" -maxdepth 1 -type f ! -name '.*' -print -quit)" ] && break
    sleep 0.1
done

say "What the administrator sees"
run "$SITECTL" status
run "$SITECTL" inbox
run "$SITECTL" messages
say "The quarantined file and its reason"
ls -1 "$CAP/statmsgs.box/corrupt/"
cat "$CAP/statmsgs.box/corrupt/"*.reason
say "The component log (CMTrace format: open it in CMTrace or OneTrace)"
tail -n 5 "$ROOT/logs/statmgr.log"

say "Stop"
run "$SITECTL" stop
printf '\nThe demo site stays in %s (site.conf, inboxes/, db/site.db, logs/, store/);\nthe DPs in %s/dp1 and %s/dp2.\n' "$ROOT" "$DEMO" "$DEMO"
