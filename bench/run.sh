#!/bin/bash
# run.sh - the sitesrv benchmarks (docs/bench.md says how to read them).
#
#   B=build bench/run.sh          (what `make bench` runs, after building)
#
# 1. handoff: files/s through one inbox hop (inbox_drop, inbox_drop_many,
#    then scan/claim/done), fsync on, against the raw durable-write loop
#    measured in the same run on the same file system.
# 2. statmgr ingestion: 50,000 status messages waiting in a stopped site's
#    inbox; time from `sitectl start statmgr` until the inbox is empty and
#    the database holds them all.  Baselines for context: sqlite3 inserting
#    as many rows in one transaction, and reading+unlinking as many files.
# 3. statmgr idle memory: VmRSS/VmHWM after the ingestion, and of a fresh
#    statmgr on an empty site, each after 2 s idle.
# Then bench/distmgr.sh (section 4 of docs/bench.md), bench/sender.sh
# (section 5) and bench/sitebkup.sh (section 6).
#
# Every figure is the median of a few runs (the machine is small and
# shared).  Benchmarks never fail on timing; they print "goal met" or
# "goal NOT met".  The exit status is non-zero only when something did not
# work (a binary missing, a message not ingested, a daemon not starting).
#
# Output: a table on stdout; the same figures as key=value lines in
# $B/bench/results.txt.  Temporary files go under $BENCH_TMPDIR, by default
# $B/bench/tmp (the build directory's file system: /tmp may be tmpfs, where
# fsync costs nothing and the hand-off figures would mean nothing).
#
# Environment (all optional): B, BENCH_TMPDIR, HANDOFF_COUNT (1000),
# HANDOFF_REPS (5), INGEST_COUNT (50000), INGEST_REPS (3), BASE_REPS (3),
# INGEST_TIMEOUT (seconds per ingestion run, 300).
set -u
B=${B:-build}
SRC=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$SRC/bench/lib.sh"
cd "$SRC" || exit 1

HANDOFF_COUNT=${HANDOFF_COUNT:-1000}
HANDOFF_REPS=${HANDOFF_REPS:-5}
N=${INGEST_COUNT:-50000}
INGEST_REPS=${INGEST_REPS:-3}
BASE_REPS=${BASE_REPS:-3}
INGEST_TIMEOUT=${INGEST_TIMEOUT:-300}
GOAL_MSGS=20000
GOAL_RSS_KB=8192

BB=$SRC/$B/bench
RES=$BB/results.txt
SITECTL=$SRC/$B/bin/sitectl
SMGEN=$SRC/$B/tests/tools/smgen
HANDOFF=$BB/handoff
READUNLINK=$BB/readunlink

# A benchmark with fsync switched off measures nothing worth knowing; and
# nothing of the caller's site or service manager may leak in.
unset SITESRV_UNSAFE_NOFSYNC SITESRV_ROOT NOTIFY_SOCKET WATCHDOG_USEC WATCHDOG_PID
export SITESRV_LIBEXEC=$SRC/$B/libexec/sitesrv

TMPBASE=${BENCH_TMPDIR:-$BB/tmp}
mkdir -p "$TMPBASE" "$BB" || exit 1
RUN=$(mktemp -d "$TMPBASE/run.XXXXXX") || exit 1
ROOTS=()          # site roots made here: statmgr is stopped in each at exit
PIDS=()           # statmgr pids seen here, killed at exit if still alive
failed=0

# Stop what this run started, by the pids it recorded, and remove its
# temporary tree; nothing is left running whatever happened.
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    stop_started statmgr
    rm -rf "$RUN"
    [ -z "${BENCH_TMPDIR:-}" ] && rmdir "$TMPBASE" 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


rate() { awk -v n="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.0f", n / s; else print 0 }'; }

# The pid of statmgr in root $1, from its pid file, checked against /proc.
statmgr_pid() {
    local p
    p=$(tr -dc '0-9' <"$1/run/statmgr.pid" 2>/dev/null)
    [ -n "$p" ] && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = statmgr ] && echo "$p"
}

# VmRSS, VmHWM, RssAnon and RssFile in kB of pid $1, as "rss hwm anon file".
# RssFile is mostly the shared libraries' code (libcrypto, sqlite, libc),
# RssAnon the daemon's own heap and stacks.
memory_kb() {
    awk '/^VmRSS:/ { r = $2 } /^VmHWM:/ { h = $2 } /^RssAnon:/ { a = $2 }
         /^RssFile:/ { f = $2 } END { print r, h, a, f }' "/proc/$1/status" 2>/dev/null
}

new_root() {
    local r=$RUN/$1
    ROOTS+=("$r")
    if ! "$SITECTL" init --site BEN --root "$r" >"$RUN/$1.init.log" 2>&1; then
        fail "sitectl init --root $r failed:"; sed 's/^/    /' "$RUN/$1.init.log" >&2
        return 1
    fi
}

# Sets SM_PID.  Called without $(...): what it records must outlive it.
start_statmgr() {
    local r=$1 p
    SM_PID=
    if ! "$SITECTL" --root "$r" start statmgr >"$r.start.log" 2>&1; then
        fail "sitectl start statmgr failed in $r:"; sed 's/^/    /' "$r.start.log" >&2
        return 1
    fi
    p=$(statmgr_pid "$r")
    if [ -z "$p" ]; then
        fail "statmgr started in $r but no live pid in run/statmgr.pid"
        return 1
    fi
    PIDS+=("$p")
    SM_PID=$p
}

stop_statmgr() {
    timeout 30 "$SITECTL" --root "$1" stop statmgr >/dev/null 2>&1 ||
        fail "sitectl stop statmgr failed in $1"
}

: >"$RES"
FS=$(stat -f -c %T "$RUN")
T_START=$(now)
result bench.tmpdir "$TMPBASE"
result bench.fs "$FS"
result bench.cores "$(nproc)"
printf 'sitesrv benchmarks: build %s, temp dir %s (file system %s), %s cores; medians\n\n' \
    "$B" "$TMPBASE" "$FS" "$(nproc)"
case $FS in
tmpfs|ramfs) note "bench: warning: $TMPBASE is on $FS: fsync costs nothing there" ;;
esac

for x in "$HANDOFF" "$READUNLINK" "$SITECTL" "$SMGEN" "$SITESRV_LIBEXEC/statmgr"; do
    [ -x "$x" ] || fail "missing $x (run 'make bench', which builds it)"
done
command -v sqlite3 >/dev/null || fail "sqlite3 (the command) is not installed"
[ "$failed" -eq 0 ] || exit 1

# --- 1. hand-off ----------------------------------------------------------
"$HANDOFF" --dir "$RUN/handoff" --count "$HANDOFF_COUNT" --reps "$HANDOFF_REPS" \
    --batch 64 --size 512 --results "$RES" || fail "handoff benchmark failed"
echo

# --- 2. statmgr ingestion -------------------------------------------------
# One run: a fresh site, N messages waiting while statmgr is stopped, then
# start it and poll every 0.1 s.  The database is asked first (cheap); the
# directory is listed only once every row is there, so that polling steals
# as little as possible from the daemon on two cores.  Sets ING_OUT to
# "seconds rss_kb hwm_kb anon_kb file_kb gen_seconds".
ingest_once() {
    local name=$1 r=$RUN/$1 box t0 t1 g0 g1 pid rows left deadline mem
    ING_OUT=
    new_root "$name" || return 1
    box=$r/inboxes/statmgr.box/statmsgs
    g0=$(now)
    if ! "$SMGEN" --box "$box" --count "$N" --nosync >"$r.smgen.log" 2>&1; then
        fail "smgen failed:"; sed 's/^/    /' "$r.smgen.log" >&2; return 1
    fi
    # smgen skips the per-file fsync to save setup time; one sync makes
    # the files durable, as a writer's fsync would have, so that statmgr
    # removes files whose blocks are on disk, like in production.
    sync
    g1=$(now)
    left=$(find "$box" -maxdepth 1 -name '*.svf' | wc -l)
    [ "$left" -ge "$N" ] || { fail "smgen left $left files, wanted $N"; return 1; }
    t0=$(now)
    start_statmgr "$r" || return 1
    pid=$SM_PID
    deadline=$(( ${t0%.*} + INGEST_TIMEOUT ))
    while :; do
        rows=$(sqlite3 -readonly "$r/db/site.db" \
            "select count(*) from statmsg where component='smgen'" 2>/dev/null)
        if [ "${rows:-0}" -ge "$N" ]; then
            left=$(find "$box" -maxdepth 1 -name '*.svf' | wc -l)
            [ "$left" -eq 0 ] && break
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            fail "statmgr did not drain in ${INGEST_TIMEOUT}s: ${rows:-?} rows," \
                 "$(find "$box" -maxdepth 1 -name '*.svf' | wc -l) files left"
            return 1
        fi
        kill -0 "$pid" 2>/dev/null || { fail "statmgr (pid $pid) died while ingesting"; return 1; }
        sleep 0.1
    done
    t1=$(now)
    [ "$rows" -eq "$N" ] || { fail "database holds $rows smgen rows, wanted $N"; return 1; }
    sleep 2
    mem=$(memory_kb "$pid")
    stop_statmgr "$r"
    ING_OUT="$(elapsed "$t0" "$t1") $mem $(elapsed "$g0" "$g1")"
}

ING_S=(); RSS=(); HWM=(); ANON=(); FILE=(); GEN=()
for i in $(seq "$INGEST_REPS"); do
    ingest_once "ingest$i" || break
    read -r s rss hwm anon file gen <<<"$ING_OUT"
    ING_S+=("$s"); RSS+=("$rss"); HWM+=("$hwm"); ANON+=("$anon"); FILE+=("$file")
    GEN+=("$gen")
    note "bench: ingestion run $i: ${s}s ($(rate "$N" "$s") msgs/s), idle VmRSS ${rss} kB"
    # Keep the last root: its database gives the sqlite3 baseline its rows.
    [ "$i" -lt "$INGEST_REPS" ] && rm -rf "$RUN/ingest$i"
done

# Baseline A: sqlite3 inserting N rows like statmgr's, in one transaction,
# into a fresh database with the site's schema and pragmas (WAL,
# synchronous=NORMAL).  The row is a real one statmgr wrote, with a new
# seq and uid per row, so the size matches.
sqlite_baseline() {
    local src=$1 db schema row i t0 t1 times=()
    schema=$(sqlite3 -readonly "$src" ".schema statmsg") || return 1
    row=$(sqlite3 -readonly "$src" ".mode insert statmsg" \
        "select * from statmsg where component='smgen' limit 1") || return 1
    [ -n "$schema" ] && [ -n "$row" ] || return 1
    # VALUES(<seq>,X'<uid>',...: NULL for the key, a fresh uid per row.
    ROW=$row awk -v n="$N" -v re="^INSERT INTO [^ ]+ VALUES[(][0-9]+,X'[0-9a-fA-F]+'" '
    BEGIN {
        row = ENVIRON["ROW"]
        if (!match(row, re)) exit 1
        head = substr(row, 1, RLENGTH); tail = substr(row, RLENGTH + 1)
        sub(/VALUES[(].*/, "", head)
        print "BEGIN;"
        for (i = 1; i <= n; i++)
            printf "%sVALUES(NULL,X%c%032x%c%s\n", head, 39, i, 39, tail
        print "COMMIT;"
    }' >"$RUN/insert.sql" || return 1
    for i in $(seq "$BASE_REPS"); do
        db=$RUN/base$i.db
        sqlite3 "$db" "PRAGMA journal_mode=WAL;" "$schema" >/dev/null || return 1
        t0=$(now)
        sqlite3 -cmd "PRAGMA synchronous=NORMAL" "$db" <"$RUN/insert.sql" >/dev/null || return 1
        t1=$(now)
        [ "$(sqlite3 "$db" 'select count(*) from statmsg')" -eq "$N" ] || return 1
        times+=("$(elapsed "$t0" "$t1")")
        rm -f "$db" "$db-wal" "$db-shm"
    done
    median "${times[@]}"
}

# Baseline B: read and unlink N smgen files, plain C; one thread, or (with
# an argument) removal by that many threads as statmgr does it.
readunlink_baseline() {
    local box=$RUN/raw/box i out times=() threads=${1:-1}
    for i in $(seq "$BASE_REPS"); do
        rm -rf "$RUN/raw"
        mkdir -p "$box/.tmp" "$box/work" "$box/corrupt" || return 1
        "$SMGEN" --box "$box" --count "$N" --nosync >/dev/null 2>&1 || return 1
        sync    # durable files, as statmgr's run gets them
        out=$("$READUNLINK" "$box" "$threads") || return 1
        [ "$(find "$box" -maxdepth 1 -name '*.svf' | wc -l)" -eq 0 ] || return 1
        times+=("$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' <<<"$out")")
    done
    rm -rf "$RUN/raw"
    median "${times[@]}"
}

SQL_S=; RU_S=; RU8_S=
if [ "${#ING_S[@]}" -gt 0 ]; then
    SQL_S=$(sqlite_baseline "$RUN/ingest${#ING_S[@]}/db/site.db") ||
        { fail "sqlite3 baseline failed"; SQL_S=; }
fi
RU_S=$(readunlink_baseline) || { fail "read+unlink baseline failed"; RU_S=; }
RU8_S=$(readunlink_baseline 8) || { fail "read+unlink (8 threads) baseline failed"; RU8_S=; }

# --- 3. a fresh statmgr on an empty site, 2 s idle -------------------------
FRESH_RSS=; FRESH_HWM=; FRESH_ANON=; FRESH_FILE=
if new_root fresh && start_statmgr "$RUN/fresh"; then
    sleep 2
    read -r FRESH_RSS FRESH_HWM FRESH_ANON FRESH_FILE <<<"$(memory_kb "$SM_PID")"
    stop_statmgr "$RUN/fresh"
fi

# --- report ---------------------------------------------------------------
goal() { if [ "$1" = yes ]; then echo "goal met"; else echo "goal NOT met"; fi; }
fmt_row() { printf '  %-44s' "$1"; shift; printf ' %10s' "$@"; echo; }
ing=; ing_rate=; ing_ok=no
if [ "${#ING_S[@]}" -gt 0 ]; then
    ing=$(median "${ING_S[@]}")
    ing_rate=$(rate "$N" "$ing")
    [ "$ing_rate" -ge "$GOAL_MSGS" ] && ing_ok=yes
fi
printf 'statmgr ingestion of %d status messages (runs: %d; fsync on)\n' "$N" "${#ING_S[@]}"
fmt_row "" "msgs/s" "seconds"
fmt_row "statmgr: sitectl start until drained" "${ing_rate:-n/a}" "${ing:-n/a}"
fmt_row "baseline: sqlite3 INSERTs, one transaction" \
    "$([ -n "$SQL_S" ] && rate "$N" "$SQL_S" || echo n/a)" "${SQL_S:-n/a}"
fmt_row "baseline: read+unlink the files (C)" \
    "$([ -n "$RU_S" ] && rate "$N" "$RU_S" || echo n/a)" "${RU_S:-n/a}"
fmt_row "baseline: read, unlink by 8 threads (C)" \
    "$([ -n "$RU8_S" ] && rate "$N" "$RU8_S" || echo n/a)" "${RU8_S:-n/a}"
[ -n "$ing" ] && [ -n "$RU8_S" ] &&
    printf '  statmgr / best file work alone: %s\n' "$(awk -v a="$RU8_S" -v b="$ing" 'BEGIN { printf "%.2fx", a / b }')"
[ "${#GEN[@]}" -gt 0 ] &&
    printf '  (smgen wrote them in %ss without fsync, not counted)\n' "$(median "${GEN[@]}")"
[ -n "$ing" ] && printf '  goal: >= %d messages/s: %s\n' "$GOAL_MSGS" "$(goal $ing_ok)"
echo

idle_rss=; idle_hwm=; idle_anon=; idle_file=; rss_ok=no
if [ "${#RSS[@]}" -gt 0 ]; then
    idle_rss=$(median "${RSS[@]}"); idle_hwm=$(median "${HWM[@]}")
    idle_anon=$(median "${ANON[@]}"); idle_file=$(median "${FILE[@]}")
fi
if [ -n "$idle_rss" ] && [ -n "$FRESH_RSS" ] &&
   [ "${idle_rss%.*}" -le "$GOAL_RSS_KB" ] && [ "$FRESH_RSS" -le "$GOAL_RSS_KB" ]; then
    rss_ok=yes
fi
printf 'statmgr memory, 2 s idle\n'
fmt_row "" "VmRSS MB" "VmHWM MB" "anon MB" "file MB"
fmt_row "after ingesting $N messages" "$(mb "$idle_rss")" "$(mb "$idle_hwm")" \
    "$(mb "$idle_anon")" "$(mb "$idle_file")"
fmt_row "fresh, on an empty site" "$(mb "$FRESH_RSS")" "$(mb "$FRESH_HWM")" \
    "$(mb "$FRESH_ANON")" "$(mb "$FRESH_FILE")"
printf '  goal: idle VmRSS <= %d MB: %s\n' $((GOAL_RSS_KB / 1024)) "$(goal $rss_ok)"

result statmgr.messages "$N"
result statmgr.runs "${#ING_S[@]}"
result statmgr.ingest_s "${ing:-nan}"
result statmgr.msgs_per_s "${ing_rate:-nan}"
result statmgr.goal_msgs_per_s "$GOAL_MSGS"
result statmgr.goal_met "$ing_ok"
result baseline.sqlite_insert_s "${SQL_S:-nan}"
result baseline.sqlite_rows_per_s "$([ -n "$SQL_S" ] && rate "$N" "$SQL_S" || echo nan)"
result baseline.readunlink_s "${RU_S:-nan}"
result baseline.readunlink_files_per_s "$([ -n "$RU_S" ] && rate "$N" "$RU_S" || echo nan)"
result baseline.readunlink8_s "${RU8_S:-nan}"
result baseline.readunlink8_files_per_s "$([ -n "$RU8_S" ] && rate "$N" "$RU8_S" || echo nan)"
result statmgr.idle_rss_kb "${idle_rss:-nan}"
result statmgr.idle_hwm_kb "${idle_hwm:-nan}"
result statmgr.idle_anon_kb "${idle_anon:-nan}"
result statmgr.idle_file_kb "${idle_file:-nan}"
result statmgr.fresh_rss_kb "${FRESH_RSS:-nan}"
result statmgr.fresh_hwm_kb "${FRESH_HWM:-nan}"
result statmgr.fresh_anon_kb "${FRESH_ANON:-nan}"
result statmgr.fresh_file_kb "${FRESH_FILE:-nan}"
result statmgr.goal_rss_kb "$GOAL_RSS_KB"
result statmgr.rss_goal_met "$rss_ok"
echo; B=$B BENCH_DIR=$RUN BENCH_RESULTS=$RES bench/distmgr.sh || fail "distmgr benchmark failed"
echo; B=$B BENCH_DIR=$RUN BENCH_RESULTS=$RES bench/sender.sh || fail "sender benchmark failed"
echo; B=$B BENCH_DIR=$RUN BENCH_RESULTS=$RES bench/sitebkup.sh || fail "sitebkup benchmark failed"
result bench.seconds "$(elapsed "$T_START" "$(now)")"
result bench.failed "$failed"
printf '\nfigures: %s\n' "$RES"
exit "$failed"
