#!/bin/bash
# sitebkup.sh - the Site Backup benchmarks: a backup of a large site
# database beside sqlite3's own, and job throughput while a backup runs
# (docs/bench.md, section 6, says how to read them).
#
#   B=build bench/sitebkup.sh     (bench/run.sh calls it, after building)
#
# One site (sitectl init), whose db/site.db is grown once, before anything
# is timed, to BKUP_DB_MB (512) MB by the sqlite3 command: rows of the
# statmsg table with 1,880 characters of random hex each (component
# "benchfill"), inserted by one WITH RECURSIVE statement per round until
# the file is large enough.  Then sitebkup is started and stays running
# for everything below (idle when not asked).  The site's default control
# file is used: no [Stop], tasks database, config, keys, inboxes, store;
# the database dominates.  Backups go to the default backup.destination,
# <root>/backup, and are removed after each run, so that the disk holds
# at most the database and one copy at a time.
#
# 1. Backup: `sitectl backup now --wait` timed from the request until its
#    result (sitebkup's own span, from its log's "backup of site" line to
#    its "complete" line, is shown too); beside it, in the same run, on
#    the same file system: `sqlite3 site.db ".backup FILE"`, and the same
#    followed by `sync -f FILE` (the like-for-like figure: sitebkup's
#    backup is durable, fsync'ed, and hashed for its manifest).  Every
#    timed run starts after `sync` and one `cat` of the database (both
#    read it from the page cache); runs alternate who goes first.  Goal:
#    sitebkup at most 1.2x `.backup`.
# 2. Job throughput during a backup: BKUP_MSGS (20000) status messages
#    written by smgen (without fsync, then one `sync`, not timed) into the
#    stopped statmgr's inbox; timed from `sitectl start statmgr` until the
#    database holds them all and the inbox is empty (as bench/run.sh's
#    ingestion).  Once alone, once while a backup of the same site runs
#    (`sitectl backup now`, and statmgr is started as soon as sitebkup's
#    log says the backup began); BKUP_JOB_REPS (2) of each, in the order
#    alone, during, during, alone...  The backup's start and end, from
#    sitebkup's log, are shown relative to statmgr's start, with the share
#    of the ingestion the backup covered; a backup that ended before the
#    ingestion (by more than the 0.1 s poll) is said so.  Goal: during a
#    backup, at least 50% of the rate alone.
#
# Benchmarks never fail on timing; they print "goal met" or "goal NOT
# met".  The exit status is non-zero only when something did not work (a
# binary missing, the site or a daemon not starting, a backup failing or
# missing, a message not ingested).  Too little free space (about 3x
# BKUP_DB_MB is needed) skips the benchmarks with a message, exit 0.
#
# Output: lines on stdout; the same figures as key=value lines appended to
# $BENCH_RESULTS (by default $B/bench/sitebkup.txt, truncated first).
# Temporary files: one directory under $BENCH_DIR (default $B/bench/tmp,
# the build directory's file system: /tmp may be tmpfs, where fsync costs
# nothing), removed at the end.
#
# Environment (all optional): B, BENCH_DIR, BENCH_RESULTS, BKUP_DB_MB
# (512), BKUP_REPS (5), BKUP_MSGS (20000), BKUP_JOB_REPS (2), BKUP_TIMEOUT
# (seconds per run, 300), BKUP_KEEP=1 (keep the temp directory).
set -u
B=${B:-build}
SRC=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$SRC/bench/lib.sh"
cd "$SRC" || exit 1

DB_MB=${BKUP_DB_MB:-512}
REPS=${BKUP_REPS:-5}
N=${BKUP_MSGS:-20000}
JOB_REPS=${BKUP_JOB_REPS:-2}
TIMEOUT=${BKUP_TIMEOUT:-300}
GOAL_BACKUP=1.2     # sitebkup's time over sqlite3 .backup's, at most
GOAL_JOBS=0.5       # ingestion rate during a backup over alone, at least
SITE=BKB

BB=$SRC/$B/bench
SITECTL=$SRC/$B/bin/sitectl
SMGEN=$SRC/$B/tests/tools/smgen
RES=${BENCH_RESULTS:-$BB/sitebkup.txt}

# fsync on, and nothing of the caller's site or service manager.
unset SITESRV_UNSAFE_NOFSYNC SITESRV_ROOT NOTIFY_SOCKET WATCHDOG_USEC WATCHDOG_PID
export SITESRV_LIBEXEC=$SRC/$B/libexec/sitesrv

failed=0
for x in "$SITECTL" "$SMGEN" "$SITESRV_LIBEXEC/sitebkup" "$SITESRV_LIBEXEC/statmgr"; do
    [ -x "$x" ] || fail "missing $x (run 'make bench', which builds it)"
done
command -v sqlite3 >/dev/null || fail "sqlite3 (the command) is not installed"
[ "$failed" -eq 0 ] || exit 1
[ -z "${BENCH_RESULTS:-}" ] && : >"$RES"

BASE=${BENCH_DIR:-$BB/tmp}
mkdir -p "$BASE" || exit 1
W=$(mktemp -d "$BASE/sitesrv-sitebkup.XXXXXX") || exit 1
W=$(cd "$W" && pwd) || exit 1
R=$W/site
DB=$R/db/site.db
DEST=$R/backup
ROOTS=()          # site roots made here: every daemon is stopped in each at exit
PIDS=()           # daemon pids seen here, killed at exit if still alive

# Stop what this script started, by the pids it recorded, and remove its
# directory; nothing is left running whatever happened.
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    local d
    for d in statmgr sitebkup; do stop_started "$d"; done
    if [ "${BKUP_KEEP:-0}" = 1 ]; then
        note "bench: kept $W"
    else
        rm -rf "$W"
    fi
    [ -z "${BENCH_DIR:-}" ] && rmdir "$BASE" 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


# sitectl in the site, quietly, with a time limit; the output goes to
# $R.log (shown on failure).
sc() { timeout "$TIMEOUT" "$SITECTL" --root "$R" "$@" >>"$R.log" 2>&1; }
show_log() { sed 's/^/    /' "$R.log" | tail -n 8 >&2; }

# Start daemon $1 in the site and record its pid.
start_daemon() {
    local d=$1 p
    if ! sc start "$d"; then
        fail "sitectl start $d failed in $R:"; show_log; return 1
    fi
    p=$(tr -dc '0-9' <"$R/run/$d.pid" 2>/dev/null)
    if [ -z "$p" ] || [ "$(cat "/proc/$p/comm" 2>/dev/null)" != "$d" ]; then
        fail "$d started in $R but no live pid in run/$d.pid"; return 1
    fi
    PIDS+=("$p")
    LAST_PID=$p
}
stop_daemon() {
    sc stop "$1" || { fail "sitectl stop $1 failed in $R:"; show_log; return 1; }
}

# Seconds since midnight UTC of a log line's time="HH:MM:SS.mmm+000"; the
# log line number $2 (1-based, among the lines of file $1 matching $3) in
# seconds after the $EPOCHREALTIME $4; nan if there is no such line.
log_at() {
    local t
    t=$(grep -a -- "$3" "$1" 2>/dev/null | sed -n "${2}p" | log_times)
    [ -z "$t" ] && { echo nan; return; }
    awk -v t="$t" -v t0="$4" 'BEGIN { split(t, a, " "); s = a[1] * 3600 + a[2] * 60 + a[3]
        z = t0 % 86400; d = s - z; if (d < -43200) d += 86400; printf "%.3f", d }'
}
BLOG=$R/logs/sitebkup.log
BEGAN='^<!\[LOG\[backup of site '
ENDED='^<!\[LOG\[backup \(.* complete: \|failed: \)'
count_lines() { grep -a -c -- "$2" "$1" 2>/dev/null || true; }

# Wait until sitebkup's log holds more than $1 lines matching $2; 1 after
# TIMEOUT seconds.
wait_log() {
    local have=$1 re=$2 deadline=$(($(date +%s) + TIMEOUT))
    while [ "$(count_lines "$BLOG" "$re")" -le "$have" ]; do
        [ "$(date +%s)" -ge "$deadline" ] && return 1
        sleep 0.01
    done
}

# The newest backup in the destination must hold the whole database; then
# every backup is removed (the next run starts from an empty destination).
check_and_clear() {
    local b sz want
    want=$(stat -c %s "$DB")
    b=$(find "$DEST" -mindepth 1 -maxdepth 1 -type d -name "$SITE-*" | sort | tail -n 1)
    if [ -z "$b" ]; then
        fail "no backup in $DEST after a run that succeeded"; return 1
    fi
    [ -f "$b/MANIFEST" ] || { fail "$b has no MANIFEST"; return 1; }
    sz=$(stat -c %s "$b/db/site.db" 2>/dev/null || echo 0)
    # statmgr may have written meanwhile: at least the size built.
    [ "$sz" -ge "$DB_BYTES" ] ||
        { fail "$b/db/site.db holds $sz bytes, the database $want"; return 1; }
    BK_BYTES=$sz
    rm -rf "${DEST:?}"/* "$DEST"/.[!.]* 2>/dev/null
    return 0
}

FS=$(stat -f -c %T "$W")
T_START=$(now)
printf 'sitebkup benchmarks: one site, a %s MB database, temp dir %s (%s); fsync on; medians of the runs\n' \
    "$DB_MB" "$BASE" "$FS"
case $FS in
tmpfs|ramfs) note "bench: warning: $BASE is on $FS: fsync costs nothing there" ;;
esac

# --- set-up: the site and its large database (not timed) -----------------------
DB_BYTES=0
SKIPPED=
setup() {
    local avail_mb need_mb=$((DB_MB * 3 + 256)) t rows size round
    avail_mb=$(df -P -m "$W" | awk 'NR == 2 { print $4 }')
    if [ -z "$avail_mb" ] || [ "$avail_mb" -lt "$need_mb" ]; then
        SKIPPED="only ${avail_mb:-?} MB free under $BASE, $need_mb MB needed (3x BKUP_DB_MB)"
        return 1
    fi
    ROOTS+=("$R")
    if ! sc init --site "$SITE" --root "$R"; then
        fail "sitectl init --root $R failed:"; show_log; return 1
    fi
    [ -f "$DB" ] || { fail "sitectl init made no $DB"; return 1; }
    t=$(now)
    # Rows of ~2 KB (1,880 hex characters of random bytes: nothing for a
    # compressor to share; two rows fill a 4 KB page), in rounds until the
    # file is large enough.  DELETE journal and synchronous=OFF for the fill only (new
    # pages are not journaled): the database is written about once, then
    # put back in WAL mode as the site runs it, and synced.
    round=0
    while :; do
        size=$(stat -c %s "$DB")
        [ "$size" -ge $((DB_MB * 1024 * 1024)) ] && break
        round=$((round + 1))
        [ "$round" -gt 20 ] && { fail "the database stays at $size bytes after 20 rounds"; return 1; }
        rows=$(( (DB_MB * 1024 * 1024 - size) / 2150 + 64 ))
        if ! sqlite3 "$DB" >"$W/fill.log" 2>&1 <<EOF
PRAGMA journal_mode=DELETE;
PRAGMA synchronous=OFF;
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $rows)
INSERT INTO statmsg(uid, msgid, severity, type, component, site, machine, pid, tid,
                    time_ms, oserr, istr, attrs, received_ms, via)
SELECT randomblob(16), 8600 + i % 64, 'I', 'milestone', 'benchfill', '$SITE', 'bench',
       1, 1, CAST(strftime('%s', 'now') AS INTEGER) * 1000 + i, 0,
       hex(randomblob(940)), '', CAST(strftime('%s', 'now') AS INTEGER) * 1000 + i, 'bench'
FROM n;
COMMIT;
PRAGMA journal_mode=WAL;
EOF
        then
            fail "growing $DB with sqlite3 failed:"; sed 's/^/    /' "$W/fill.log" | tail -n 5 >&2
            return 1
        fi
    done
    [ "$(sqlite3 "$DB" 'PRAGMA journal_mode')" = wal ] ||
        { fail "$DB is not in WAL mode after the fill"; return 1; }
    DB_BYTES=$(stat -c %s "$DB")
    sync
    note "bench: $DB grown to $(mb $((DB_BYTES / 1024))) MB ($(sqlite3 "$DB" 'select count(*) from statmsg') rows) in $(elapsed "$t" "$(now)")s (not counted)"
    start_daemon sitebkup || return 1
}

# --- 1. backup beside sqlite3 .backup ------------------------------------------
BK=(); BKLOG=(); SQ=(); SQS=(); BK_BYTES=
settle() { sync; cat "$DB" >/dev/null; }
sqlite_once() {
    local t0 t1 t2 dst=$W/baseline.db
    settle
    t0=$(now)
    if ! sqlite3 "$DB" ".backup '$dst'" >"$W/sqlite.log" 2>&1; then
        fail "sqlite3 .backup failed:"; sed 's/^/    /' "$W/sqlite.log" >&2; return 1
    fi
    t1=$(now)
    sync -f "$dst" || { fail "sync -f $dst failed"; return 1; }
    t2=$(now)
    SQ+=("$(elapsed "$t0" "$t1")"); SQS+=("$(elapsed "$t0" "$t2")")
    rm -f "$dst" "$dst-wal" "$dst-shm" "$dst-journal"
}
backup_once() {
    local t0 t1 began ended
    began=$(count_lines "$BLOG" "$BEGAN"); ended=$(count_lines "$BLOG" "$ENDED")
    settle
    t0=$(now)
    if ! sc backup now --wait --timeout "$TIMEOUT"; then
        t1=$(now)
        fail "sitectl backup now --wait failed:"; show_log
        tail -n 3 "$BLOG" 2>/dev/null | sed 's/^/    log: /' >&2
        return 1
    fi
    t1=$(now)
    BK+=("$(elapsed "$t0" "$t1")")
    # sitebkup's own span: its "backup of site" line to its "complete" line.
    BKLOG+=("$(awk -v a="$(log_at "$BLOG" $((began + 1)) "$BEGAN" "$t0")" \
                   -v b="$(log_at "$BLOG" $((ended + 1)) "$ENDED" "$t0")" \
               'BEGIN { if (a == "nan" || b == "nan") print "nan"; else printf "%.3f", b - a }')")
    check_and_clear
}

# --- 2. statmgr ingestion alone and during a backup ----------------------------
BOX=$R/inboxes/statmgr.box/statmsgs
ALONE=(); DURING=(); COVER=(); SPANS=(); ENDED_EARLY=0

# N messages into the stopped statmgr's inbox (not timed).
fill_box() {
    local left
    if ! "$SMGEN" --box "$BOX" --count "$N" --nosync >"$W/smgen.log" 2>&1; then
        fail "smgen failed:"; sed 's/^/    /' "$W/smgen.log" >&2; return 1
    fi
    sync
    left=$(find "$BOX" -maxdepth 1 -name '*.svf' | wc -l)
    [ "$left" -ge "$N" ] || { fail "smgen left $left files, wanted $N"; return 1; }
}

# Time from `sitectl start statmgr` until the N smgen messages are rows
# (counted above the highest seq before the start: a range of the primary
# key, cheap on a large table) and the inbox is empty.  $1: "during" to
# run a backup meanwhile.  Sets ING_S, and for a backup BK_FROM, BK_TO
# (seconds after statmgr's start, by sitebkup's log).
ingest_once() {
    local mode=$1 t0 t1 seq0 rows left deadline pid began ended
    ING_S=; BK_FROM=; BK_TO=
    fill_box || return 1
    seq0=$(sqlite3 -readonly "$DB" 'select coalesce(max(seq), 0) from statmsg') ||
        { fail "cannot read $DB"; return 1; }
    settle
    if [ "$mode" = during ]; then
        began=$(count_lines "$BLOG" "$BEGAN"); ended=$(count_lines "$BLOG" "$ENDED")
        sc backup now || { fail "sitectl backup now failed:"; show_log; return 1; }
        wait_log "$began" "$BEGAN" ||
            { fail "sitebkup did not begin the backup within ${TIMEOUT}s"; return 1; }
    fi
    t0=$(now)
    start_daemon statmgr || return 1
    pid=$LAST_PID
    deadline=$(( ${t0%.*} + TIMEOUT ))
    while :; do
        rows=$(sqlite3 -readonly "$DB" \
            "select count(*) from statmsg where seq > $seq0 and component = 'smgen'" 2>/dev/null)
        if [ "${rows:-0}" -ge "$N" ]; then
            left=$(find "$BOX" -maxdepth 1 -name '*.svf' | wc -l)
            [ "$left" -eq 0 ] && break
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            fail "statmgr did not drain in ${TIMEOUT}s: ${rows:-?} rows," \
                 "$(find "$BOX" -maxdepth 1 -name '*.svf' | wc -l) files left"
            return 1
        fi
        kill -0 "$pid" 2>/dev/null || { fail "statmgr (pid $pid) died while ingesting"; return 1; }
        sleep 0.1
    done
    t1=$(now)
    ING_S=$(elapsed "$t0" "$t1")
    [ "$rows" -eq "$N" ] || { fail "database holds $rows new smgen rows, wanted $N"; return 1; }
    if [ "$mode" = during ]; then
        if ! wait_log "$ended" "$ENDED"; then
            fail "the backup did not end within ${TIMEOUT}s"; return 1
        fi
        if grep -a -- "$ENDED" "$BLOG" | sed -n "$((ended + 1))p" | grep -q 'failed: '; then
            fail "the backup during the ingestion failed:"
            grep -a -- "$ENDED" "$BLOG" | sed -n "$((ended + 1))p" | sed 's/^/    log: /' >&2
            return 1
        fi
        BK_FROM=$(log_at "$BLOG" $((began + 1)) "$BEGAN" "$t0")
        BK_TO=$(log_at "$BLOG" $((ended + 1)) "$ENDED" "$t0")
        check_and_clear || return 1
    fi
    stop_daemon statmgr || return 1
}

# The share of the ingestion [0, $1] the backup [$2, $3] covered, in %.
cover() {
    awk -v i="$1" -v a="$2" -v b="$3" 'BEGIN {
        if (i == "" || a == "nan" || b == "nan" || i <= 0) { print "nan"; exit }
        lo = a > 0 ? a : 0; hi = b < i ? b : i
        c = hi > lo ? (hi - lo) / i * 100 : 0; printf "%.0f", c }'
}

during_once() {
    ingest_once during || return 1
    DURING+=("$ING_S")
    COVER+=("$(cover "$ING_S" "$BK_FROM" "$BK_TO")")
    SPANS+=("$(secs "$BK_FROM")..$(secs "$BK_TO")")
    # The ingestion's end is seen by a poll every 0.1 s (plus the poll's
    # own sqlite3 and find): a backup that ended within 0.15 s of it
    # covered it as far as this can tell.
    if awk -v e="$BK_TO" -v i="$ING_S" 'BEGIN { exit !(e != "nan" && e < i - 0.15) }'; then
        ENDED_EARLY=$((ENDED_EARLY + 1))
        note "bench: the backup ended at $(secs "$BK_TO")s, before the ingestion (${ING_S}s):" \
             "only ${COVER[-1]}% of it ran beside a backup"
    fi
    note "bench: ingestion during a backup: ${ING_S}s ($(rate "$N" "$ING_S") msgs/s);" \
         "the backup ran from $(secs "$BK_FROM")s to $(secs "$BK_TO")s after statmgr's start" \
         "(${COVER[-1]}% of the ingestion covered)"
}
alone_once() {
    ingest_once alone || return 1
    ALONE+=("$ING_S")
    note "bench: ingestion alone: ${ING_S}s ($(rate "$N" "$ING_S") msgs/s)"
}

if setup; then
    for i in $(seq "$REPS"); do
        if [ $((i % 2)) -eq 1 ]; then
            sqlite_once || break; backup_once || break
        else
            backup_once || break; sqlite_once || break
        fi
        note "bench: backup run $i: sitebkup ${BK[-1]}s (by its log ${BKLOG[-1]}s);" \
             "sqlite3 .backup ${SQ[-1]}s, + sync ${SQS[-1]}s"
    done
    if [ "$failed" -eq 0 ]; then
        for i in $(seq "$JOB_REPS"); do
            if [ $((i % 2)) -eq 1 ]; then
                alone_once || break; during_once || break
            else
                during_once || break; alone_once || break
            fi
        done
    fi
elif [ -n "$SKIPPED" ]; then
    printf '  skipped: %s\n' "$SKIPPED"
fi

# --- report -------------------------------------------------------------------
echo
bk=$(median "${BK[@]}"); bklog=$(median "${BKLOG[@]}"); sq=$(median "${SQ[@]}"); sqs=$(median "${SQS[@]}")
r_sq=$(ratio "$bk" "$sq"); r_sqs=$(ratio "$bk" "$sqs")
if [ "${#BK[@]}" -gt 0 ]; then
    printf 'backup of a %s MB site database: sitebkup %s s; sqlite3 .backup %s s (%sx), .backup + sync %s s (%sx); goal <= %sx: %s against .backup, %s against .backup + sync\n' \
        "$(mb $((DB_BYTES / 1024)))" "$(secs "$bk")" "$(secs "$sq")" "$r_sq" "$(secs "$sqs")" "$r_sqs" \
        "$GOAL_BACKUP" "$(met le "$r_sq" "$GOAL_BACKUP" | sed 's/goal //')" \
        "$(met le "$r_sqs" "$GOAL_BACKUP" | sed 's/goal //')"
    printf '  sitebkup by its own log (request seen to backup complete): %s s (%sx .backup, %sx .backup + sync)\n' \
        "$(secs "$bklog")" "$(ratio "$bklog" "$sq")" "$(ratio "$bklog" "$sqs")"
    printf '  runs: sitebkup (sitectl backup now --wait) %s s, by its log %s s; sqlite3 .backup %s s; + sync %s s\n' \
        "$(list "${BK[@]}")" "$(list "${BKLOG[@]}")" "$(list "${SQ[@]}")" "$(list "${SQS[@]}")"
fi
alone=$(median "${ALONE[@]}"); during=$(median "${DURING[@]}")
ra=$(rate "$N" "$alone"); rd=$(rate "$N" "$during"); r_jobs=$(ratio "$rd" "$ra")
if [ "${#ALONE[@]}" -gt 0 ] && [ "${#DURING[@]}" -gt 0 ]; then
    printf 'statmgr ingestion of %d messages into the %s MB site: alone %s msgs/s (%s s); during a backup %s msgs/s (%s s); ratio %s; goal >= %s: %s\n' \
        "$N" "$(mb $((DB_BYTES / 1024)))" "$ra" "$(secs "$alone")" "$rd" "$(secs "$during")" \
        "$r_jobs" "$GOAL_JOBS" "$(met ge "$r_jobs" "$GOAL_JOBS")"
    printf '  runs: alone %s s; during %s s; the backup ran (s after statmgr'"'"'s start) %s; ingestion covered %s %%\n' \
        "$(list "${ALONE[@]}")" "$(list "${DURING[@]}")" "$(words "${SPANS[@]}")" "$(words "${COVER[@]}")"
    [ "$ENDED_EARLY" -gt 0 ] &&
        printf '  note: in %d run(s) the backup ended before the ingestion: the ratio understates the backup'"'"'s cost\n' "$ENDED_EARLY"
fi

result sitebkup.db_mb "$DB_MB"
result sitebkup.db_bytes "$DB_BYTES"
result sitebkup.backup_bytes "${BK_BYTES:-nan}"
result sitebkup.runs "${#BK[@]}"
result sitebkup.backup_s "$bk"
result sitebkup.backup_log_s "$bklog"
result baseline.sqlite_backup_s "$sq"
result baseline.sqlite_backup_sync_s "$sqs"
result sitebkup.ratio_sqlite "$r_sq"
result sitebkup.ratio_sqlite_sync "$r_sqs"
result sitebkup.log_ratio_sqlite "$(ratio "$bklog" "$sq")"
result sitebkup.goal_met "$(yes_if le "$r_sq" "$GOAL_BACKUP")"
result sitebkup.goal_met_durable "$(yes_if le "$r_sqs" "$GOAL_BACKUP")"
result sitebkup.messages "$N"
result sitebkup.job_runs "${#DURING[@]}"
result sitebkup.ingest_alone_s "$alone"
result sitebkup.ingest_during_s "$during"
result sitebkup.msgs_per_s_alone "$ra"
result sitebkup.msgs_per_s_during "$rd"
result sitebkup.jobs_ratio "$r_jobs"
result sitebkup.covered_pct "$(median "${COVER[@]}")"
result sitebkup.ended_early "$ENDED_EARLY"
result sitebkup.jobs_goal_met "$(yes_if ge "$r_jobs" "$GOAL_JOBS")"
result sitebkup.skipped "$([ -n "$SKIPPED" ] && echo yes || echo no)"
result sitebkup.seconds "$(elapsed "$T_START" "$(now)")"
result sitebkup.failed "$failed"
[ -z "${BENCH_RESULTS:-}" ] && printf '\nfigures: %s\n' "$RES"
exit "$failed"
