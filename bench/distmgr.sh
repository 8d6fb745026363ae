#!/bin/bash
# distmgr.sh - the distmgr benchmarks (docs/bench.md, section 4, says how
# to read them).
#
#   B=build bench/distmgr.sh      (bench/run.sh calls it, after building)
#
# 1. First distribution of a ~200 MB tree (bench/mktree: 2 files of 60 MB,
#    300 of ~200 KB, 4000 of 1-8 KB, 100 directories three levels deep;
#    the same bytes every time) to one DP of a fresh site: from `sitectl
#    package add` until the database says the DP is installed at version
#    1 (bench/dpwait polls it every 5 ms).  That covers picking up the
#    request, walking, hashing, storing, making the store durable, the DP
#    copy and making the DP durable.  Baselines in the same run: `cp -a`
#    of the tree, and the same followed by `sync -f` (the durable copy:
#    distmgr says installed only once store and DP are on disk, so that is
#    the like-for-like one).  One copy gives both figures: the clock is
#    read after cp and again after sync.
# 2. A 1% update (mktree change: 40 small and 3 medium files rewritten, 1
#    MB appended to a large file; ~1.9 MB, 44 files): `rsync -a SRC/ DST/`
#    of the same change to a copy of the previous tree, beside `sitectl
#    package update` until the DP is installed at the new version.  Also
#    shown: rsync followed by `sync -f`; and, for comparison only, a
#    series without the large file (`mktree change --no-append`: 43
#    files, 0.8 MB), where walking the tree rather than copying is the
#    work.
# 3. Peak RSS of distmgr (VmHWM) after each first distribution.
#
# The page cache is not dropped (that needs root and is not portable):
# instead every timed run starts after `sync` and one untimed `cat` pass
# over the source, so every run reads a cached source and starts with no
# dirty pages of an earlier step.  Every figure is the median of
# DIST_REPS runs (each first distribution on a fresh site); the single
# runs are printed too.  Benchmarks never fail on timing; the exit status
# is non-zero only when something did not work (a binary missing, a site
# or daemon not starting, a package not installed, a DP that does not
# match its source).
#
# Output: lines on stdout; the same figures as key=value lines appended to
# $BENCH_RESULTS (by default $B/bench/distmgr.txt, truncated first).
# Temporary files: one directory under $BENCH_DIR (default $TMPDIR, else
# /tmp), removed at the end; it needs about 1 GB.  The source, the cp and
# rsync copies, the site (its store) and the DP are all in it, so on one
# file system.
#
# Environment (all optional): B, BENCH_DIR, BENCH_RESULTS, DIST_REPS (3),
# DIST_SCALE (1: the tree's volume; 0.05 for a quick try of the script),
# DIST_TIMEOUT (seconds per distribution, 600), DIST_KEEP=1 (keep the temp
# directory, for a look afterwards).
set -u
B=${B:-build}
SRC=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$SRC/bench/lib.sh"
cd "$SRC" || exit 1

REPS=${DIST_REPS:-3}
SCALE=${DIST_SCALE:-1}
TIMEOUT=${DIST_TIMEOUT:-600}
GOAL_FIRST=1.2
GOAL_UPDATE=0.5
GOAL_RSS_KB=32768

BB=$SRC/$B/bench
SITECTL=$SRC/$B/bin/sitectl
MKTREE=$BB/mktree
DPWAIT=$BB/dpwait
RES=${BENCH_RESULTS:-$BB/distmgr.txt}
[ -z "${BENCH_RESULTS:-}" ] && mkdir -p "$BB" && : >"$RES"

# fsync on, and nothing of the caller's site or service manager.
unset SITESRV_UNSAFE_NOFSYNC SITESRV_ROOT NOTIFY_SOCKET WATCHDOG_USEC WATCHDOG_PID
export SITESRV_LIBEXEC=$SRC/$B/libexec/sitesrv

BASE=${BENCH_DIR:-${TMPDIR:-/tmp}}
W=$(mktemp -d "$BASE/sitesrv-distmgr.XXXXXX") || exit 1
ROOTS=()          # site roots made here: distmgr is stopped in each at exit
PIDS=()           # distmgr pids seen here, killed at exit if still alive
failed=0

# Stop what this script started, by the pids it recorded, and remove its
# directory; nothing is left running whatever happened.
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    stop_started distmgr
    if [ "${DIST_KEEP:-0}" = 1 ]; then
        note "bench: kept $W"
    else
        rm -rf "$W"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan" || b <= 0) print "nan"; else printf "%.2f", a / b }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "nan" && a <= b) }'; }
secs() { awk -v s="$1" 'BEGIN { if (s == "nan") print "n/a"; else if (s < 10) printf "%.2f", s; else printf "%.1f", s }'; }
goal() { if le "$1" "$2"; then echo "goal met"; else echo "goal NOT met"; fi; }
yesno() { if le "$1" "$2"; then echo yes; else echo no; fi; }
list() { local x out=; for x in "$@"; do out="$out${out:+ }$(secs "$x")"; done; echo "${out:-n/a}"; }

# Every timed run starts here: nothing dirty left by the step before (the
# disk would be writing it back during the next measurement), and the
# whole source in the page cache.
settle() {
    sync
    find "$W/src" -type f -print0 | xargs -0 cat >/dev/null
}

# Values in kB of pid $1: "VmHWM RssAnon RssFile".
memory_kb() {
    awk '/^VmHWM:/ { h = $2 } /^RssAnon:/ { a = $2 } /^RssFile:/ { f = $2 }
         END { print h, a, f }' "/proc/$1/status" 2>/dev/null
}

# The "in N ms" of distmgr's last log line in root $1 matching $2, in
# seconds; nan if there is none.
log_s() {
    local ms
    ms=$(grep -a -- "$2" "$1/logs/distmgr.log" 2>/dev/null | tail -n 1 |
         sed -n 's/.* in \([0-9][0-9]*\) ms.*/\1/p')
    if [ -n "$ms" ]; then awk -v m="$ms" 'BEGIN { printf "%.3f", m / 1000 }'; else echo nan; fi
}

# A fresh site in $W/$1 with DP1 at $W/$1.dp, distmgr running.  Sets
# DM_PID.  Called without $(...): what it records must outlive it.
new_site() {
    local r=$W/$1 p
    DM_PID=
    ROOTS+=("$r")
    mkdir "$r.dp" || { fail "cannot make $r.dp"; return 1; }
    if ! "$SITECTL" init --site BEN --root "$r" >"$r.log" 2>&1 ||
       ! "$SITECTL" --root "$r" dp add DP1 "$r.dp" >>"$r.log" 2>&1 ||
       ! "$SITECTL" --root "$r" start distmgr >>"$r.log" 2>&1; then
        fail "setting up the site $r failed:"; sed 's/^/    /' "$r.log" >&2
        return 1
    fi
    p=$(tr -dc '0-9' <"$r/run/distmgr.pid" 2>/dev/null)
    if [ -z "$p" ] || [ "$(cat "/proc/$p/comm" 2>/dev/null)" != distmgr ]; then
        fail "distmgr started in $r but no live pid in run/distmgr.pid"
        return 1
    fi
    PIDS+=("$p")
    DM_PID=$p
}

# Time sitectl package add|update in root $1 ($2: the sitectl arguments)
# until DP1 holds version $3.  Sets DIST_S, and PKG_ID for an add.
distribute() {
    local r=$1 args=$2 v=$3 t0 t1 out
    DIST_S=
    t0=$(now)
    # shellcheck disable=SC2086  # args are words, on purpose
    if ! out=$("$SITECTL" --root "$r" package $args 2>&1); then
        fail "sitectl package $args failed: $out"; return 1
    fi
    [ "$v" -eq 1 ] && PKG_ID=$(printf '%s\n' "$out" | tail -n 1 | tr -d '[:space:]')
    if ! "$DPWAIT" "$r/db/site.db" "$PKG_ID" DP1 "$v" "$TIMEOUT" >"$r.wait" 2>&1; then
        fail "$PKG_ID version $v not installed on DP1:"; sed 's/^/    /' "$r.wait" >&2
        tail -n 5 "$r/logs/distmgr.log" 2>/dev/null | sed 's/^/    log: /' >&2
        return 1
    fi
    t1=$(now)
    DIST_S=$(elapsed "$t0" "$t1")
    # The same, in sitectl's own words (its exit status): a check, untimed.
    "$SITECTL" --root "$r" package wait "$PKG_ID" --timeout 30 >/dev/null 2>&1 ||
        fail "sitectl package wait $PKG_ID does not agree that version $v is installed"
}

# Does DP1 of root $1 hold exactly the source tree?  Content, modes and
# mtimes (rsync -n -c lists any file or directory that differs).
dp_matches() {
    local dp=$W/$1.dp/$PKG_ID diffs
    [ -d "$dp" ] || { fail "no $dp"; return 1; }
    # The package directory's own mtime is not part of the manifest (the
    # time it was built); everything under it is.
    diffs=$(rsync -a -n -c -i --delete "$W/src/" "$dp/" 2>&1 |
            grep -v '^\.d\.\.t\.* \./$' | head -n 5)
    [ -z "$diffs" ] && return 0
    fail "DP1 ($dp) differs from the source:"; printf '    %s\n' "$diffs" >&2
    return 1
}

for x in "$SITECTL" "$MKTREE" "$DPWAIT" "$SITESRV_LIBEXEC/distmgr"; do
    [ -x "$x" ] || fail "missing $x (run 'make bench', which builds it)"
done
command -v rsync >/dev/null || fail "rsync is not installed"
[ "$failed" -eq 0 ] || exit 1

FS=$(stat -f -c %T "$W")
T_START=$(now)
if ! "$MKTREE" gen "$W/src" --seed 1 --scale "$SCALE" >"$W/gen.out" 2>&1; then
    fail "mktree failed:"; sed 's/^/    /' "$W/gen.out" >&2; exit 1
fi
TREE_FILES=$(sed -n 's/.*files=\([0-9]*\).*/\1/p' "$W/gen.out")
TREE_BYTES=$(sed -n 's/.*bytes=\([0-9]*\).*/\1/p' "$W/gen.out")
printf 'distmgr benchmarks: %s files, %s MB in 100 directories; temp dir %s (%s);\n' \
    "$TREE_FILES" "$(mb $((TREE_BYTES / 1024)))" "$BASE" "$FS"
printf '  fsync on; each run after sync and one cat pass over the source (cached); medians of %s\n' "$REPS"
case $FS in
tmpfs|ramfs) note "bench: warning: $BASE is on $FS: fsync costs nothing there" ;;
esac

# --- 1. first distribution, beside cp -a ------------------------------------
# The two take turns at going first: on ext4 a burst of file creations is
# cheaper where inodes were just freed (their bitmaps are cached), and
# every run frees the previous run's tree.
CP=(); CPS=(); FIRST=(); STORED=(); COPIED=(); HWM=(); ANON=(); FILE=()
cp_once() {
    local t0 t1 t2
    settle
    t0=$(now)
    cp -a "$W/src" "$W/cp" || { fail "cp -a failed"; return 1; }
    t1=$(now)
    sync -f "$W/cp" || { fail "sync -f failed"; return 1; }
    t2=$(now)
    CP+=("$(elapsed "$t0" "$t1")"); CPS+=("$(elapsed "$t0" "$t2")")
    rm -rf "$W/cp"
}
dist_once() {
    local i=$1 hwm anon file
    new_site "site$i" || return 1
    settle
    distribute "$W/site$i" "add --name bench --source $W/src" 1 || return 1
    read -r hwm anon file <<<"$(memory_kb "$DM_PID")"
    FIRST+=("$DIST_S"); HWM+=("$hwm"); ANON+=("$anon"); FILE+=("$file")
    STORED+=("$(log_s "$W/site$i" "version 1 stored:")")
    COPIED+=("$(log_s "$W/site$i" "version 1 installed on DP1")")
}
for i in $(seq "$REPS"); do
    if [ $((i % 2)) -eq 1 ]; then
        cp_once || break
        dist_once "$i" || break
    else
        dist_once "$i" || break
        cp_once || break
    fi
    note "bench: first distribution run $i: distmgr ${FIRST[-1]}s (stored in ${STORED[-1]}s," \
         "DP copy ${COPIED[-1]}s), VmHWM ${HWM[-1]} kB; cp -a ${CP[-1]}s, + sync ${CPS[-1]}s"
    # The last site stays, with distmgr running, for the updates.
    if [ "$i" -lt "$REPS" ]; then
        timeout 30 "$SITECTL" --root "$W/site$i" stop distmgr >/dev/null 2>&1 ||
            fail "sitectl stop distmgr failed in $W/site$i"
        rm -rf "$W/site$i" "$W/site$i.dp"
    fi
done
[ "${#FIRST[@]}" -eq "$REPS" ] && dp_matches "site$REPS"

# --- 2. 1% update, beside rsync -a ------------------------------------------
# The last site keeps version 1 on DP1 and distmgr running.  The rsync
# copy starts as the tree of version 1; each round changes the source
# (different files each time), then rsync brings its copy along and
# distmgr its DP.  Two series: the 1% update of the goal (with 1 MB
# appended to a 60 MB file, which both tools must write again whole), then
# for comparison the same without the large file (0.4% of the bytes:
# walking the tree is then most of the work).  A series fills the arrays
# UPD URS URSS USTORED UCOPIED and CHANGED; they are kept under the
# prefix A_ (the goal's series) or N_ (no append).
V=1
# One timed rsync, and one timed update to version V.
rsync_step() {
    local t0 t1 t2
    settle
    t0=$(now)
    rsync -a "$W/src/" "$W/rs/" || { fail "rsync -a failed"; return 1; }
    t1=$(now)
    sync -f "$W/rs" || { fail "sync -f failed"; return 1; }
    t2=$(now)
    URS+=("$(elapsed "$t0" "$t1")"); URSS+=("$(elapsed "$t0" "$t2")")
}
update_step() {
    settle
    distribute "$W/site$REPS" "update $PKG_ID" "$V" || return 1
    UPD+=("$DIST_S")
    USTORED+=("$(log_s "$W/site$REPS" "version $V stored:")")
    UCOPIED+=("$(log_s "$W/site$REPS" "version $V installed on DP1")")
}
update_series() {
    local opt=$1 u
    UPD=(); URS=(); URSS=(); USTORED=(); UCOPIED=(); CHANGED=
    for u in $(seq "$REPS"); do
        [ "$failed" -eq 0 ] || return 1
        V=$((V + 1))
        # shellcheck disable=SC2086  # opt is empty or one word
        if ! "$MKTREE" change "$W/src" --seed "$((100 + V))" --scale "$SCALE" $opt \
                >"$W/change.out" 2>&1; then
            fail "mktree change failed:"; sed 's/^/    /' "$W/change.out" >&2; return 1
        fi
        [ -z "$CHANGED" ] && CHANGED=$(grep -v = "$W/change.out" | paste -sd ';' | sed 's/;/; /g')
        # Taking turns at going first, as above.
        if [ $((u % 2)) -eq 1 ]; then
            rsync_step || return 1
            update_step || return 1
        else
            update_step || return 1
            rsync_step || return 1
        fi
        note "bench: update run $u${opt:+ ($opt)}: distmgr ${DIST_S}s (stored in" \
             "${USTORED[-1]}s, DP copy ${UCOPIED[-1]}s); rsync -a ${URS[-1]}s, + sync ${URSS[-1]}s"
    done
}
A_UPD=(); A_URS=(); A_URSS=(); A_USTORED=(); A_UCOPIED=(); A_CHANGED=
N_UPD=(); N_URS=(); N_URSS=(); N_USTORED=(); N_UCOPIED=(); N_CHANGED=
if [ "${#FIRST[@]}" -eq "$REPS" ] && [ "$failed" -eq 0 ]; then
    if ! cp -a "$W/src" "$W/rs"; then
        fail "cp -a for the rsync copy failed"
    else
        update_series ""
        A_UPD=("${UPD[@]}"); A_URS=("${URS[@]}"); A_URSS=("${URSS[@]}")
        A_USTORED=("${USTORED[@]}"); A_UCOPIED=("${UCOPIED[@]}"); A_CHANGED=$CHANGED
        if [ "$failed" -eq 0 ]; then
            update_series --no-append
            N_UPD=("${UPD[@]}"); N_URS=("${URS[@]}"); N_URSS=("${URSS[@]}")
            N_USTORED=("${USTORED[@]}"); N_UCOPIED=("${UCOPIED[@]}"); N_CHANGED=$CHANGED
        fi
        [ "$failed" -eq 0 ] && dp_matches "site$REPS"
    fi
fi

# --- report -------------------------------------------------------------------
first=$(median "${FIRST[@]}"); cp=$(median "${CP[@]}"); cps=$(median "${CPS[@]}")
r_cp=$(ratio "$first" "$cp"); r_cps=$(ratio "$first" "$cps")
upd=$(median "${A_UPD[@]}"); rs=$(median "${A_URS[@]}"); rss=$(median "${A_URSS[@]}")
r_rs=$(ratio "$upd" "$rs"); r_rss=$(ratio "$upd" "$rss")
nupd=$(median "${N_UPD[@]}"); nrs=$(median "${N_URS[@]}"); nrss=$(median "${N_URSS[@]}")
nr_rs=$(ratio "$nupd" "$nrs"); nr_rss=$(ratio "$nupd" "$nrss")
hwm=$(median "${HWM[@]}")
echo
printf 'distmgr first distribution: %s s; cp -a %s s (%sx), cp -a + sync %s s (%sx); goal <= %sx: %s against cp -a, %s against cp -a + sync\n' \
    "$(secs "$first")" "$(secs "$cp")" "$r_cp" "$(secs "$cps")" "$r_cps" "$GOAL_FIRST" \
    "$(goal "$r_cp" "$GOAL_FIRST" | sed 's/goal //')" "$(goal "$r_cps" "$GOAL_FIRST" | sed 's/goal //')"
printf '  runs: distmgr %s s (of which stored %s s, DP copy %s s, by its log); cp -a %s s; cp -a + sync %s s\n' \
    "$(list "${FIRST[@]}")" "$(list "${STORED[@]}")" "$(list "${COPIED[@]}")" \
    "$(list "${CP[@]}")" "$(list "${CPS[@]}")"
printf 'distmgr 1%% update: %s s; rsync -a %s s (%sx), rsync -a + sync %s s (%sx); goal <= %sx: %s\n' \
    "$(secs "$upd")" "$(secs "$rs")" "$r_rs" "$(secs "$rss")" "$r_rss" "$GOAL_UPDATE" \
    "$(goal "$r_rs" "$GOAL_UPDATE")"
printf '  runs: distmgr %s s (of which stored %s s, DP copy %s s); rsync -a %s s; rsync -a + sync %s s\n' \
    "$(list "${A_UPD[@]}")" "$(list "${A_USTORED[@]}")" "$(list "${A_UCOPIED[@]}")" \
    "$(list "${A_URS[@]}")" "$(list "${A_URSS[@]}")"
[ -n "$A_CHANGED" ] && printf '  each update: %s\n' "$A_CHANGED"
printf 'distmgr update of small and medium files only: %s s; rsync -a %s s (%sx), rsync -a + sync %s s (%sx); no goal, for comparison\n' \
    "$(secs "$nupd")" "$(secs "$nrs")" "$nr_rs" "$(secs "$nrss")" "$nr_rss"
printf '  runs: distmgr %s s (of which stored %s s, DP copy %s s); rsync -a %s s; rsync -a + sync %s s\n' \
    "$(list "${N_UPD[@]}")" "$(list "${N_USTORED[@]}")" "$(list "${N_UCOPIED[@]}")" \
    "$(list "${N_URS[@]}")" "$(list "${N_URSS[@]}")"
[ -n "$N_CHANGED" ] && printf '  each update: %s\n' "$N_CHANGED"
printf 'distmgr peak RSS during first distribution: %s MB (VmHWM; then RssAnon %s MB, RssFile %s MB); goal <= %d MB: %s\n' \
    "$(mb "$hwm")" "$(mb "$(median "${ANON[@]}")")" "$(mb "$(median "${FILE[@]}")")" \
    $((GOAL_RSS_KB / 1024)) "$(goal "${hwm:-nan}" "$GOAL_RSS_KB")"
printf '  runs: VmHWM %s kB\n' "${HWM[*]:-n/a}"

result distmgr.tree_files "${TREE_FILES:-nan}"
result distmgr.tree_bytes "${TREE_BYTES:-nan}"
result distmgr.runs "${#FIRST[@]}"
result distmgr.first_s "$first"
result distmgr.first_stored_s "$(median "${STORED[@]}")"
result distmgr.first_dpcopy_s "$(median "${COPIED[@]}")"
result baseline.cp_s "$cp"
result baseline.cp_sync_s "$cps"
result distmgr.first_ratio_cp "$r_cp"
result distmgr.first_ratio_cp_sync "$r_cps"
result distmgr.first_goal_met "$(yesno "$r_cp" "$GOAL_FIRST")"
result distmgr.first_goal_met_durable "$(yesno "$r_cps" "$GOAL_FIRST")"
result distmgr.update_s "$upd"
result distmgr.update_stored_s "$(median "${A_USTORED[@]}")"
result distmgr.update_dpcopy_s "$(median "${A_UCOPIED[@]}")"
result baseline.rsync_s "$rs"
result baseline.rsync_sync_s "$rss"
result distmgr.update_ratio_rsync "$r_rs"
result distmgr.update_ratio_rsync_sync "$r_rss"
result distmgr.update_goal_met "$(yesno "$r_rs" "$GOAL_UPDATE")"
result distmgr.update_small_s "$nupd"
result baseline.rsync_small_s "$nrs"
result baseline.rsync_small_sync_s "$nrss"
result distmgr.update_small_ratio_rsync "$nr_rs"
result distmgr.peak_rss_kb "${hwm:-nan}"
result distmgr.peak_anon_kb "$(median "${ANON[@]}")"
result distmgr.peak_file_kb "$(median "${FILE[@]}")"
result distmgr.rss_goal_met "$(yesno "${hwm:-nan}" "$GOAL_RSS_KB")"
result distmgr.seconds "$(elapsed "$T_START" "$(now)")"
result distmgr.failed "$failed"
[ -z "${BENCH_RESULTS:-}" ] && printf '\nfigures: %s\n' "$RES"
exit "$failed"
