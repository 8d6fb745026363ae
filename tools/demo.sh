#!/bin/bash
# demo.sh - `make demo`: build a demo site under demo/ and show the status
# message path end to end: statmgr serving, clients on several machines
# dropping status messages into the client access point (one of them while
# the drop box is unreachable, so its message waits in the client's local
# queue), a corrupt file quarantined, and what an administrator sees.
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

say "Start the Status Manager (returns once it is ready)"
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
printf '\nThe demo site stays in %s (site.conf, inboxes/, db/site.db, logs/).\n' "$ROOT"
