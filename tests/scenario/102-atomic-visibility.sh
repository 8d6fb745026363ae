#!/bin/bash
# 102-atomic-visibility.sh - a client walking a package on a DP throughout
# a series of updates never sees a mix of versions (issue 3, "Atomic
# visibility"; dpsync.h: the new tree is built beside the visible one and
# swapped in with one rename).  The reader (helpers/atomic_reader.py)
# opens DP/PKGID as a directory descriptor and reads everything below it
# relative to descriptors, again and again; every version changes the
# content and size of every file and the set of names.  The test waits,
# after each version is installed, until the reader has seen it, so that
# every version is observed whatever the machine's speed.
# shellcheck disable=SC2016  # check() evaluates its single-quoted condition
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=helpers/dm.sh
. "$(dirname "$0")/helpers/dm.sh"

VERSIONS=${SCN_VERSIONS:-15}
READER=$(dirname "$0")/helpers/atomic_reader.py
site_init CEN
dm_short_delays
SRC=$SCRATCH/src
DP=$SCRATCH/dp1
mkdir -p "$DP"
sc dp add DP1 "$DP" >/dev/null || fail "sitectl dp add exited $?"
sc start distmgr statmgr >/dev/null || fail "sitectl start exited $?"

python3 "$READER" gen "$SRC" 1 || fail "cannot make version 1 of the source"
ID=$(sc package add --name atomic --source "$SRC") || fail "sitectl package add exited $?"
say "package $ID"

# The reader starts before the first install (it counts the walks that
# find no package yet) and runs until the stop file appears.
python3 "$READER" read "$DP/$ID" "$SCRATCH/stop" "$SCRATCH/progress" "$SCRATCH/summary" \
    >"$SCRATCH/reader.out" 2>&1 &
READER_PID=$!
bg_track "$READER_PID"

reader_saw() {
    local k=
    [ -f "$SCRATCH/progress" ] && read -r k <"$SCRATCH/progress"
    [ -n "$k" ] && [ "$k" -ge "$1" ]
}
reader_alive() { kill -0 "$READER_PID" 2>/dev/null; }

for k in $(seq 1 "$VERSIONS"); do
    if [ "$k" -gt 1 ]; then
        python3 "$READER" gen "$SRC" "$k" || fail "cannot make version $k of the source"
        sc package update "$ID" >/dev/null || fail "sitectl package update (version $k) exited $?"
    fi
    sc package wait "$ID" --timeout 30 >/dev/null || fail "package wait for version $k exited $?"
    expect_eq "version installed on DP1" "$k" "$(dp_field "$ID" DP1 version)"
    reader_alive || fail "the reader died: $(cat "$SCRATCH/reader.out")"
    wait_for 20 reader_saw "$k" || fail "the reader did not see version $k within 20 s (progress: $(cat "$SCRATCH/progress" 2>/dev/null))"
done
touch "$SCRATCH/stop"
wait "$READER_PID" || fail "the reader exited $?: $(cat "$SCRATCH/reader.out")"
[ -f "$SCRATCH/summary" ] || fail "the reader wrote no summary: $(cat "$SCRATCH/reader.out")"
S=$(cat "$SCRATCH/summary")
say "reader: $(jq -c 'del(.examples)' <<<"$S")"
jq -r '.examples[]' <<<"$S" | sed 's/^/  reader: /'

walks=$(jq .walks <<<"$S")
check '[ "$walks" -gt "$VERSIONS" ]' "the reader completed only $walks walks for $VERSIONS versions"
expect_eq "walks that saw a mix of versions" 0 "$(jq .mixed <<<"$S")"
expect_eq "walks that saw an older version after a newer one" 0 "$(jq .backwards <<<"$S")"
expect_eq "versions the reader saw" "$(seq -s, 1 "$VERSIONS")" "$(jq -r '.versions_seen | map(tostring) | join(",")' <<<"$S")"
enoent=$(jq .enoent <<<"$S")
say "info: $enoent of $walks walks found a file removed under them (the tree they held was replaced twice during the walk)"
# The previous generation is kept until the next install, and the test
# waits for every install: a walk outlives two installs only on a machine
# stalled for the length of a whole version cycle.
check '[ "$enoent" -le $((walks / 10)) ]' "$enoent of $walks walks lost a file under them: the previous generation is not kept"

diff -r "$SRC" "$DP/$ID" >/dev/null || fail "DP1/$ID differs from the last version of the source"
check 'no_staging "$DP" "$ID"' "$DP/.$ID.new was left behind"
sc stop >/dev/null || fail "sitectl stop exited $?"
say PASS
