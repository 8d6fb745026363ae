#!/bin/bash
# 104-distmgr-kill.sh - distmgr killed with SIGKILL at random moments while
# it stores versions of a package of a few thousand small files and some
# large ones and copies them to two DPs (issue 3: "SIGKILL at any moment:
# after restart, no DP shows a mix of versions, nothing is lost from the
# store, the work resumes").  Between kills the source changes (files
# changed, added, removed, a large file rewritten, a directory added and
# one removed) and an update is asked for.  After the last restart the
# package must settle at its newest version on both DPs, equal to the
# final source, with no staging tree left, every object of that version
# present and intact in the store, and no request or job left over.
# shellcheck disable=SC2016  # check() evaluates its single-quoted condition
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=helpers/dm.sh
. "$(dirname "$0")/helpers/dm.sh"

KILLS=${SCN_KILLS:-6}
site_init CEN
dm_short_delays
SRC=$SCRATCH/src
DP1=$SCRATCH/dp1
DP2=$SCRATCH/dp2
mkdir -p "$DP1" "$DP2"

# mutate SRC ROUND: round 0 makes the tree (3000 small files in 30
# directories, 4 large ones, about 44 MB); each later round changes 40
# small files, adds 20 in a new directory, removes 20 and one directory,
# and rewrites one large file.
mutate() {
    python3 - "$1" "$2" <<'EOF' || fail "cannot make round $2 of the source"
import os, random, shutil, sys
src, rnd = sys.argv[1], int(sys.argv[2])
rng = random.Random(rnd * 7919 + 1)
def write(path, size):
    # A new inode each time (written aside, renamed over): the hard-linked
    # snapshots of earlier rounds keep their content.
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp~", "wb") as f:
        f.write(os.urandom(size))
    os.rename(path + ".tmp~", path)
if rnd == 0:
    for d in range(30):
        for i in range(100):
            write(os.path.join(src, "d%02d" % d, "f%03d" % i), rng.randint(1, 4096))
    for i in range(4):
        write(os.path.join(src, "large", "big%d" % i), 10_000_000 + rng.randint(0, 1_000_000))
    sys.exit(0)
small = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(src) for f in fs if "large" not in dp)
for p in rng.sample(small, 40):
    write(p, rng.randint(1, 4096))
for p in rng.sample(small, 20):
    if os.path.exists(p):
        os.unlink(p)
for i in range(20):
    write(os.path.join(src, "round%d" % rnd, "n%02d" % i), rng.randint(1, 8192))
dirs = sorted(d for d in os.listdir(src) if d.startswith("d"))
shutil.rmtree(os.path.join(src, rng.choice(dirs)))
write(os.path.join(src, "large", "big%d" % (rnd % 4)), 10_000_000 + rng.randint(0, 1_000_000))
EOF
}

mutate "$SRC" 0
say "source: $(find "$SRC" -type f | wc -l) files, $(du -sm "$SRC" | cut -f1) MB"
sc dp add DP1 "$DP1" >/dev/null || fail "sitectl dp add DP1 exited $?"
sc dp add DP2 "$DP2" >/dev/null || fail "sitectl dp add DP2 exited $?"
sc start distmgr statmgr >/dev/null || fail "sitectl start exited $?"
ID=$(sc package add --name killme --source "$SRC") || fail "sitectl package add exited $?"
say "package $ID"

# A DP tree right after a kill must be one whole round of the source
# (snapshots are hard-linked copies: cheap, and the mutations replace
# files, never write into them).
cp -al "$SRC" "$SCRATCH/snap0"
whole_round() {
    local d=$1 k
    [ -e "$d" ] || return 0
    for k in $(seq 0 "$2"); do
        diff -rq "$SCRATCH/snap$k" "$d" >/dev/null 2>&1 && { say "  $d is round $k of the source"; return 0; }
    done
    return 1
}

# Each round: let distmgr work a random while (0 to 2 s: hashing,
# storing, copying, swapping, recording), kill it, check that each DP
# shows a whole round of the source, change the source while distmgr is
# down, start it again and ask for an update.  Twice the installs are
# let finish first, so that later kills also hit the replacement of a
# visible version, not only a first copy.
for r in $(seq 1 "$KILLS"); do
    sleep "$((RANDOM % 2)).$((RANDOM % 10))$((RANDOM % 10))"
    st=$(pkg_json "$ID" | jq -c '[.version, (.dps[] | "\(.name)=\(.state)@\(.version)")]')
    dm_kill
    say "kill $r: distmgr (pid $DM_LAST_PID) killed; package was $st"
    for d in "$DP1" "$DP2"; do
        whole_round "$d/$ID" $((r - 1)) || fail "after kill $r, $d/$ID is no whole version of the source"
    done
    if [ "$r" -lt "$KILLS" ]; then
        mutate "$SRC" "$r"
        cp -al "$SRC" "$SCRATCH/snap$r"
    fi
    dm_restart
    if [ "$r" -eq 2 ] || [ "$r" -eq 4 ]; then
        sc package wait "$ID" --timeout 60 >/dev/null || fail "package wait (round $r) exited $?"
        say "  installs of round $((r - 1)) finished: $(pkg_json "$ID" | jq -c '[.version, (.dps[] | "\(.name)=\(.state)@\(.version)")]')"
    fi
    if [ "$r" -lt "$KILLS" ]; then
        sc package update "$ID" >/dev/null || fail "sitectl package update (round $r) exited $?"
    fi
done
expect_eq "SIGKILLs of distmgr" "$KILLS" "$DM_KILLS"

sc package wait "$ID" --timeout 120 >/dev/null || fail "package wait after the last restart exited $?: $(pkg_json "$ID" | jq -c .dps)"
V=$(pkg_field "$ID" .version)
say "settled at version $V"
expect_eq "highest stored version" "$V" "$(db_count "SELECT max(version) FROM pkg_version WHERE package = '$ID'")"
for dp in DP1 DP2; do
    expect_eq "state of $dp" installed "$(dp_field "$ID" $dp state)"
    expect_eq "version on $dp" "$V" "$(dp_field "$ID" $dp version)"
done
for d in "$DP1" "$DP2"; do
    diff -r "$SRC" "$d/$ID" >/dev/null || fail "$d/$ID differs from the final source"
    check 'no_staging "$d" "$ID"' "$d/.$ID.new was left behind"
    # Older generations are removed just after the install is recorded,
    # which is what package wait saw: give that a moment.
    others() { find "$d" -mindepth 1 -maxdepth 1 ! -name "$ID" ! -name ".$ID.old" -printf '%f '; }
    no_others() { [ -z "$(others)" ]; }
    wait_for 10 no_others
    expect_eq "entries in $d besides the package and its previous generation" "" "$(others)"
done
say "ok: both DPs equal the final source; no staging tree"

# The store: every object of the current version, present and intact.
sqlite3 -readonly -cmd '.timeout 10000' "$ROOT/db/site.db" \
    "SELECT lower(hex(sha256)) FROM manifest WHERE package = '$ID' AND version = $V AND sha256 IS NOT NULL" |
    sort -u >"$SCRATCH/objects"
nobj=$(wc -l <"$SCRATCH/objects")
check '[ "$nobj" -gt 2000 ]' "only $nobj objects in the manifest of version $V"
xargs python3 "$HELPERS/store_check.py" "$ROOT" check <"$SCRATCH/objects" >"$SCRATCH/objcheck" ||
    fail "cannot look into the store"
grep -v '^ok ' "$SCRATCH/objcheck" | head -n 5 | while read -r what h; do say "$what object $h"; done
expect_eq "objects of version $V missing from the store" 0 "$(grep -c '^missing ' "$SCRATCH/objcheck")"
expect_eq "objects whose content does not match their name" 0 "$(grep -c '^bad ' "$SCRATCH/objcheck")"
expect_eq "manifest files of version $V vs source files" "$(find "$SRC" -type f | wc -l)" \
    "$(db_count "SELECT count(*) FROM manifest WHERE package = '$ID' AND version = $V AND sha256 IS NOT NULL")"

# Nothing left over: requests answered, no job staged, no claim.
settled() {
    [ "$(inbox_files "$ROOT/inboxes/distmgr.box")" -eq 0 ] &&
        [ "$(inbox_files "$ROOT/inboxes/distmgr.box/work")" -eq 0 ] &&
        [ "$(inbox_files "$ROOT/inboxes/distmgr.box/outgoing")" -eq 0 ]
}
wait_for 20 settled || fail "distmgr.box not settled: $(inbox_files "$ROOT/inboxes/distmgr.box") requests, $(inbox_files "$ROOT/inboxes/distmgr.box/work") in work/, $(inbox_files "$ROOT/inboxes/distmgr.box/outgoing") in outgoing/"
expect_eq "quarantined requests" 0 "$(corrupt_files "$ROOT/inboxes/distmgr.box")"
say "info: $(find "$ROOT/store/.tmp" -mindepth 1 | wc -l) files left in store/.tmp by the kills; $(python3 "$HELPERS/store_check.py" "$ROOT" count) objects in the store for $nobj in use"
check 'daemon_running distmgr' "distmgr is not running at the end"
sc stop >/dev/null || fail "sitectl stop exited $?"
say PASS
