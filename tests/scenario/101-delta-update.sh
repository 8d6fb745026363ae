#!/bin/bash
# 101-delta-update.sh - an update of a package with nested directories
# and files of several sizes (issue 3, "Delta update"): two files changed,
# a mode changed, files and a directory added, a file and a directory
# removed.  The DP ends up equal to the new source (content, mode, mtime
# of every file), the files that did not change keep their inode on the
# DP (they were not written again), the changed and new ones have new
# inodes, and an update of an unchanged source makes no new version.
# shellcheck disable=SC2016  # check() evaluates its single-quoted condition
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=helpers/dm.sh
. "$(dirname "$0")/helpers/dm.sh"

site_init CEN
dm_short_delays
SRC=$SCRATCH/src
DP=$SCRATCH/dp1
mkdir -p "$DP" "$SRC"

# Version 1: nested directories; sizes from empty to a few MB.
mkdir -p "$SRC/a/b/c" "$SRC/gone/deeper" "$SRC/keep/x"
: >"$SRC/empty"
printf 'x' >"$SRC/one"
head -c 4095 /dev/urandom >"$SRC/a/page-1"
head -c 4096 /dev/urandom >"$SRC/a/page"
head -c 100000 /dev/urandom >"$SRC/a/b/mid"
head -c 3000000 /dev/urandom >"$SRC/a/b/c/large"
head -c 2000000 /dev/urandom >"$SRC/big-changed"
echo "small changed" >"$SRC/keep/small-changed"
echo "will be removed" >"$SRC/keep/removed"
echo "mode changes" >"$SRC/keep/x/mode"
echo "in gone" >"$SRC/gone/f"
echo "deeper" >"$SRC/gone/deeper/g"
for i in $(seq 1 40); do echo "file $i" >"$SRC/keep/x/n$i"; done
printf '#!/bin/sh\necho hi\n' >"$SRC/a/run.sh"
chmod 0755 "$SRC/a/run.sh"
chmod 0600 "$SRC/a/page"
chmod 0750 "$SRC/a/b"
# Every file dated in the past, so that a change below moves the mtime for sure.
find "$SRC" -exec touch -h -d '2024-01-02 03:04:05.123456789' {} +

sc dp add DP1 "$DP" >/dev/null || fail "sitectl dp add exited $?"
sc start distmgr statmgr >/dev/null || fail "sitectl start exited $?"
ID=$(sc package add --name delta --source "$SRC") || fail "sitectl package add exited $?"
say "package $ID"
sc package wait "$ID" --timeout 30 >/dev/null || fail "package wait for version 1 exited $?"
expect_eq "version installed on DP1" 1 "$(dp_field "$ID" DP1 version)"
diff -r "$SRC" "$DP/$ID" >/dev/null || fail "DP1/$ID differs from the source after version 1"
expect_eq "file listing (mode, mtime, size) of DP1 vs source" "$(tree_list "$SRC" | md5sum)" "$(tree_list "$DP/$ID" | md5sum)"

(cd "$DP/$ID" && find . -type f -printf '%P %i\n' | sort) >"$SCRATCH/ino1"
expect_eq "files on DP1 at version 1" 53 "$(wc -l <"$SCRATCH/ino1")"

# The update: two changed (one the same size), one mode change, added
# files and a directory, a file and a directory removed.
head -c 2000000 /dev/urandom >"$SRC/big-changed"   # same size, other content
echo "small changed, now longer" >"$SRC/keep/small-changed"
chmod 0640 "$SRC/keep/x/mode"
rm "$SRC/keep/removed"
rm -r "$SRC/gone"
mkdir -p "$SRC/new/dir/deep"
echo "added" >"$SRC/added"
head -c 500000 /dev/urandom >"$SRC/new/dir/deep/blob"
: >"$SRC/new/empty-added"
CHANGED="big-changed keep/small-changed keep/x/mode"
ADDED="added new/dir/deep/blob new/empty-added"

sc package update "$ID" || fail "sitectl package update exited $?"
sc package wait "$ID" --timeout 30 >/dev/null || fail "package wait for version 2 exited $?"
expect_eq "package version" 2 "$(pkg_field "$ID" .version)"
expect_eq "version installed on DP1" 2 "$(dp_field "$ID" DP1 version)"
expect_eq "state of DP1" installed "$(dp_field "$ID" DP1 state)"
diff -r "$SRC" "$DP/$ID" || fail "DP1/$ID differs from the source after the update"
say "ok: diff -r source DP1/$ID is empty"
tree_list "$SRC" >"$SCRATCH/l-src"
tree_list "$DP/$ID" >"$SCRATCH/l-dp"
diff "$SCRATCH/l-src" "$SCRATCH/l-dp" || fail "modes, mtimes or sizes on DP1 differ from the source (diff above: < source, > DP)"
say "ok: every file's mode, mtime and size on DP1 equal the source's"
check 'no_staging "$DP" "$ID"' "$DP/.$ID.new was left behind"

(cd "$DP/$ID" && find . -type f -printf '%P %i\n' | sort) >"$SCRATCH/ino2"
kept=0
while read -r path ino; do
    new=$(awk -v p="$path" '$1 == p { print $2 }' "$SCRATCH/ino2")
    if [[ " $CHANGED " == *" $path "* ]]; then
        # Changed files (also the mode-only change) are written anew.
        [ -n "$new" ] || fail "changed file $path missing on DP1"
        [ "$new" != "$ino" ] || fail "changed file $path kept its inode $ino: it was not written again"
    elif [ "$path" = keep/removed ] || [[ $path == gone/* ]]; then
        [ -z "$new" ] || fail "removed file $path still on DP1"
    else
        [ "$new" = "$ino" ] || fail "unchanged file $path has inode $new, was $ino: it was written again"
        kept=$((kept + 1))
    fi
done <"$SCRATCH/ino1"
expect_eq "unchanged files that kept their inode" 47 "$kept"
for f in $ADDED; do
    grep -q "^$f " "$SCRATCH/ino2" || fail "added file $f missing on DP1"
    ino=$(awk -v p="$f" '$1 == p { print $2 }' "$SCRATCH/ino2")
    ! awk '{ print $2 }' "$SCRATCH/ino1" | grep -qx "$ino" || fail "added file $f reuses inode $ino of a version 1 file"
done
check '[ ! -e "$DP/$ID/gone" ]' "removed directory gone/ still on DP1"
say "ok: changed and added files have new inodes, removed ones are gone"

# An update of an unchanged source keeps the version.
n_unchanged() { grep -c "package $ID: source unchanged" "$ROOT/logs/distmgr.log"; }
u0=$(n_unchanged)
sc package update "$ID" || fail "sitectl package update (no change) exited $?"
sc package wait "$ID" --timeout 30 >/dev/null || fail "package wait after the no-change update exited $?"
# The request is answered once its version task ran: the log says so.
unchanged() { [ "$(n_unchanged)" -gt "$u0" ]; }
wait_for 20 unchanged || fail "distmgr did not log that the unchanged source keeps its version"
expect_eq "package version after a no-change update" 2 "$(pkg_field "$ID" .version)"
expect_eq "highest stored version" 2 "$(db_count "SELECT max(version) FROM pkg_version WHERE package = '$ID'")"
(cd "$DP/$ID" && find . -type f -printf '%P %i\n' | sort) >"$SCRATCH/ino3"
diff "$SCRATCH/ino2" "$SCRATCH/ino3" >/dev/null || fail "a no-change update rewrote files on DP1"
expect_eq "files left in distmgr.box" 0 "$(inbox_files "$ROOT/inboxes/distmgr.box")"
say "ok: no version 3, DP1 untouched"
sc stop >/dev/null || fail "sitectl stop exited $?"
say PASS
