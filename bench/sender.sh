#!/bin/bash
# sender.sh - the sender benchmarks: jobs from one site to another, end to
# end (docs/bench.md, section 5, says how to read them).
#
#   B=build bench/sender.sh       (bench/run.sh calls it, after building)
#
# Two sites on this machine, CEN and its child B01 (sitectl site add both
# ways, with each other's keys), each other's file: address being the
# other's inboxes/despoolr.box/receive/.  CEN's jobs are made by CEN's
# distmgr, for real (`sitectl package add` with only distmgr running);
# then distmgr is stopped, B01's despooler is started, and the clock
# starts at `sitectl start sender` at CEN.  B01's distmgr is not running:
# the despooler drops a request into B01's distmgr.box for each version it
# installs, and that is where the measured work ends.  bench/sendwait
# polls every 10 ms (one database connection, no processes) and records
# two moments: "sent" (no job and no send request left at CEN) and
# "installed" (B01's database holds every package at version >= 1).
#
# 1. Small jobs: SEND_JOBS (300) packages of one 1 KB file each (different
#    content each), i.e. as many jobs for B01 waiting in CEN's
#    schedule.box, each with its signed instruction and package file in
#    store/out.  The two sites are prepared once and copied (cp -a) back
#    into place before every run, so every run starts from the same
#    state.  Baseline in the same run, on the same file system:
#    bench/handoff's raw mode, the plain durable single-writer loop
#    (create+write+fsync+rename+fsync(dir), 512 bytes) over as many files,
#    one measurement beside every run.  Goal: jobs/s >= 50% of raw
#    files/s.
# 2. One large package: one file of SEND_BIG_MB (200) MB from
#    /dev/urandom (incompressible: the package file is as large), a fresh
#    pair of sites per run, the job made by CEN's distmgr as above.  Times
#    from `sitectl start sender` until B01 installed it, and until CEN's
#    request is gone (the sender alone).  Baselines in the same run: `cp
#    -a` of CEN's store/out/<pkg>-1.pck into B01's site root (the same file
#    system as its receive/), and the same followed by `sync -f` (the
#    durable copy: the sender fsyncs what it writes, the despooler its
#    store).  Goal: end to end at most 1.5x cp -a.
#
# Every timed run starts after `sync` (nothing dirty from the set-up) and,
# for the large package, after one `cat` of the package file (cached for
# both the sender and cp).  Runs alternate who goes first.  Every figure
# is the median of the runs; the single runs are printed too.  Benchmarks
# never fail on timing; the exit status is non-zero only when something
# did not work (a binary missing, a site or daemon not starting, a job not
# made, a package not installed, files left in receive/).
#
# Output: lines on stdout; the same figures as key=value lines appended to
# $BENCH_RESULTS (by default $B/bench/sender.txt, truncated first).
# Temporary files: one directory under $BENCH_DIR (default $B/bench/tmp,
# the build directory's file system: /tmp may be tmpfs, where fsync costs
# nothing), removed at the end; it needs about 1 GB with the defaults.
#
# Environment (all optional): B, BENCH_DIR, BENCH_RESULTS, SEND_JOBS (300),
# SEND_REPS (3), SEND_BIG_MB (200), SEND_BIG_REPS (3), SEND_TIMEOUT
# (seconds per run, 300), SEND_KEEP=1 (keep the temp directory).
set -u
B=${B:-build}
SRC=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$SRC/bench/lib.sh"
cd "$SRC" || exit 1

N=${SEND_JOBS:-300}
REPS=${SEND_REPS:-3}
BIG_MB=${SEND_BIG_MB:-200}
BIG_REPS=${SEND_BIG_REPS:-3}
TIMEOUT=${SEND_TIMEOUT:-300}
GOAL_JOBS=0.5       # end-to-end jobs/s over raw files/s, at least
GOAL_BIG=1.5        # end-to-end time over cp -a's, at most

BB=$SRC/$B/bench
SITECTL=$SRC/$B/bin/sitectl
HANDOFF=$BB/handoff
SENDWAIT=$BB/sendwait
RES=${BENCH_RESULTS:-$BB/sender.txt}

# fsync on, and nothing of the caller's site or service manager.
unset SITESRV_UNSAFE_NOFSYNC SITESRV_ROOT NOTIFY_SOCKET WATCHDOG_USEC WATCHDOG_PID
export SITESRV_LIBEXEC=$SRC/$B/libexec/sitesrv

failed=0
for x in "$SITECTL" "$HANDOFF" "$SENDWAIT" "$SITESRV_LIBEXEC/sender" \
         "$SITESRV_LIBEXEC/despool" "$SITESRV_LIBEXEC/distmgr"; do
    [ -x "$x" ] || fail "missing $x (run 'make bench', which builds it)"
done
[ "$failed" -eq 0 ] || exit 1
[ -z "${BENCH_RESULTS:-}" ] && : >"$RES"

BASE=${BENCH_DIR:-$BB/tmp}
mkdir -p "$BASE" || exit 1
W=$(mktemp -d "$BASE/sitesrv-sender.XXXXXX") || exit 1
W=$(cd "$W" && pwd) || exit 1
ROOTS=()          # site roots made here: every daemon is stopped in each at exit
PIDS=()           # daemon pids seen here, killed at exit if still alive

# Stop what this script started, by the pids it recorded, and remove its
# directory; nothing is left running whatever happened.
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    local d
    for d in sender despool distmgr; do stop_started "$d"; done
    if [ "${SEND_KEEP:-0}" = 1 ]; then
        note "bench: kept $W"
    else
        rm -rf "$W"
    fi
    [ -z "${BENCH_DIR:-}" ] && rmdir "$BASE" 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


# sitectl in site root $1, quietly, with a time limit; the output goes to
# $1.log (shown on failure).
sc() {
    local r=$1
    shift
    timeout 120 "$SITECTL" --root "$r" "$@" >>"$r.log" 2>&1
}
show_log() { sed 's/^/    /' "$1.log" | tail -n 8 >&2; }

# Start daemon $2 in root $1 and record its pid.
start_daemon() {
    local r=$1 d=$2 p
    if ! sc "$r" start "$d"; then
        fail "sitectl start $d failed in $r:"; show_log "$r"; return 1
    fi
    p=$(tr -dc '0-9' <"$r/run/$d.pid" 2>/dev/null)
    if [ -z "$p" ] || [ "$(cat "/proc/$p/comm" 2>/dev/null)" != "$d" ]; then
        fail "$d started in $r but no live pid in run/$d.pid"; return 1
    fi
    PIDS+=("$p")
}
stop_daemon() {
    sc "$1" stop "$2" || { fail "sitectl stop $2 failed in $1:"; show_log "$1"; return 1; }
}

# A fresh pair of sites in directory $1: $1/cen (CEN, central) and $1/b01
# (B01, child of CEN), each knowing the other's address and key.
new_pair() {
    local d=$1
    mkdir -p "$d" || { fail "cannot make $d"; return 1; }
    ROOTS+=("$d/cen" "$d/b01")
    if ! sc "$d/cen" init --site CEN --root "$d/cen" ||
       ! sc "$d/b01" init --site B01 --parent CEN --root "$d/b01" ||
       ! sc "$d/b01" site add CEN --address "file:$d/cen/inboxes/despoolr.box/receive" \
            --key "$d/cen/keys/site.pub" ||
       ! sc "$d/cen" site add B01 --address "file:$d/b01/inboxes/despoolr.box/receive" \
            --key "$d/b01/keys/site.pub"; then
        fail "setting up the sites CEN and B01 in $d failed:"; show_log "$d/cen"; show_log "$d/b01"
        return 1
    fi
}

jobs_in() { find "$1/inboxes/schedule.box" -maxdepth 1 -name '*.job' | wc -l; }

# Wait until CEN (root $1) has $2 jobs in schedule.box; distmgr is running.
wait_jobs() {
    local r=$1 want=$2 deadline=$(($(date +%s) + TIMEOUT)) have
    while :; do
        have=$(jobs_in "$r")
        [ "$have" -ge "$want" ] && return 0
        if [ "$(date +%s)" -ge "$deadline" ]; then
            fail "CEN's distmgr made $have jobs of $want in ${TIMEOUT}s"
            tail -n 5 "$r/logs/distmgr.log" 2>/dev/null | sed 's/^/    log: /' >&2
            return 1
        fi
        sleep 0.1
    done
}

# Seconds since midnight UTC of a log line's time="HH:MM:SS.mmm+000", and
# of an $EPOCHREALTIME: for spans measured from the start of a run.
# The last log line of file $1 matching $2, in seconds after $3 (an
# $EPOCHREALTIME); nan if none.
log_at() {
    local t
    t=$(grep -a -- "$2" "$1" 2>/dev/null | log_times | tail -n 1)
    [ -z "$t" ] && { echo nan; return; }
    awk -v t="$t" -v t0="$3" 'BEGIN { split(t, a, " "); s = a[1] * 3600 + a[2] * 60 + a[3]
        z = t0 % 86400; d = s - z; if (d < -43200) d += 86400; printf "%.3f", d }'
}

# Wait, with bench/sendwait, from $EPOCHREALTIME $2 until pair $1 has
# sent every job and B01 has installed $3 packages (0: sent only).  Sets
# SENT_S and INST_S.
wait_pair() {
    local d=$1 t0=$2 want=$3 out
    SENT_S=; INST_S=
    if ! out=$("$SENDWAIT" --since "$t0" --box "$d/cen/inboxes/schedule.box" \
                 --db "$d/b01/db/site.db" --want "$want" --timeout "$TIMEOUT" 2>"$d/wait.err"); then
        fail "the jobs did not get through:"; sed 's/^/    /' "$d/wait.err" >&2
        tail -n 3 "$d/cen/logs/sender.log" "$d/b01/logs/despool.log" 2>/dev/null | sed 's/^/    /' >&2
        return 1
    fi
    SENT_S=$(sed -n 's/.*sent_s=\([0-9.]*\).*/\1/p' <<<"$out")
    INST_S=$(sed -n 's/.*installed_s=\([0-9.a-z]*\).*/\1/p' <<<"$out")
}

# Nothing may be left in B01's receive/ (pair $1) once all is installed;
# the despooler removes an instruction's files just after recording the
# install, so it gets a moment.
receive_empty() {
    local rx=$1/b01/inboxes/despoolr.box/receive left
    for _ in $(seq 50); do
        left=$(find "$rx" "$rx/work" -maxdepth 1 -type f \( -name '*.ins' -o -name '*.pck' \) | wc -l)
        [ "$left" -eq 0 ] && return 0
        sleep 0.1
    done
    fail "$left files left in B01's receive/ after the run"
}

# Start B01's despooler and CEN's sender in pair $1, time until $2 jobs
# are sent and installed, stop both, check that B01's receive/ is empty.
# Sets SENT_S, INST_S and T0.  The clock is read just before the sender's
# start; the despooler is started before it (an idle despooler costs
# nothing).
run_pair() {
    local d=$1 want=$2
    T0=
    start_daemon "$d/b01" despool || return 1
    sync
    T0=$(now)
    start_daemon "$d/cen" sender || return 1
    wait_pair "$d" "$T0" "$want" || return 1
    receive_empty "$d"
    stop_daemon "$d/cen" sender
    stop_daemon "$d/b01" despool
    [ "$failed" -eq 0 ]
}

# The same in two stages: CEN's sender alone (B01's despooler stopped)
# until CEN has sent everything, then B01's despooler alone until it has
# installed $2.  Sets ALONE_SENT_S and ALONE_INST_S.
run_staged() {
    local d=$1 want=$2 t0
    ALONE_SENT_S=; ALONE_INST_S=
    sync
    t0=$(now)
    start_daemon "$d/cen" sender || return 1
    wait_pair "$d" "$t0" 0 || return 1
    ALONE_SENT_S=$SENT_S
    stop_daemon "$d/cen" sender || return 1
    sync
    t0=$(now)
    start_daemon "$d/b01" despool || return 1
    wait_pair "$d" "$t0" "$want" || return 1
    ALONE_INST_S=$INST_S
    receive_empty "$d"
    stop_daemon "$d/b01" despool
    [ "$failed" -eq 0 ]
}

FS=$(stat -f -c %T "$W")
T_START=$(now)
printf 'sender benchmarks: sites CEN -> B01 on this machine, temp dir %s (%s); fsync on;\n' "$BASE" "$FS"
printf '  default settings (sender.max_sendings 5, max_per_site 3; despool.threads 3); medians of the runs\n'
case $FS in
tmpfs|ramfs) note "bench: warning: $BASE is on $FS: fsync costs nothing there" ;;
esac

# --- 1. small jobs end to end, beside the raw durable hand-off ----------------
P1=$W/small
SMALL_OK=0
prepare_small() {
    local i
    new_pair "$P1" || return 1
    for i in $(seq "$N"); do
        mkdir -p "$W/srcs/p$i" || return 1
        # 1 KB of text, different in every package.
        awk -v i="$i" 'BEGIN { for (l = 0; l < 16; l++) printf "package %06d line %02d %40s\n", i, l, "x" }' \
            >"$W/srcs/p$i/a" || return 1
    done
    start_daemon "$P1/cen" distmgr || return 1
    for i in $(seq "$N"); do
        if ! sc "$P1/cen" package add --name "small$i" --source "$W/srcs/p$i"; then
            fail "sitectl package add small$i failed:"; show_log "$P1/cen"; return 1
        fi
    done
    wait_jobs "$P1/cen" "$N" || return 1
    stop_daemon "$P1/cen" distmgr || return 1
    [ "$(jobs_in "$P1/cen")" -eq "$N" ] || { fail "wanted $N jobs, found $(jobs_in "$P1/cen")"; return 1; }
    cp -a "$P1" "$W/small.pristine" || { fail "cp -a of the prepared sites failed"; return 1; }
}
JOBS=(); JSENT=(); RAW=(); RAWR=(); JRATE=(); SPANS=(); ASENT=(); AINST=()
raw_once() {
    local out
    rm -f "$W/handoff.txt"
    sync
    if ! out=$("$HANDOFF" --dir "$W/handoff" --count "$N" --reps 1 --size 512 \
                 --results "$W/handoff.txt" 2>&1); then
        fail "handoff failed:"; printf '%s\n' "$out" | sed 's/^/    /' >&2; return 1
    fi
    RAW+=("$(sed -n 's/^handoff.raw_write_s=//p' "$W/handoff.txt")")
    RAWR+=("$(sed -n 's/^handoff.raw_files_per_s=//p' "$W/handoff.txt")")
}
small_once() {
    local sched sent inst
    rm -rf "$P1"
    cp -a "$W/small.pristine" "$P1" || { fail "cannot restore $P1"; return 1; }
    run_pair "$P1" "$N" || return 1
    JOBS+=("$INST_S"); JSENT+=("$SENT_S"); JRATE+=("$(rate "$N" "$INST_S")")
    # Where the time went, by the daemons' logs: the moment of the last
    # job scheduled, of the last transfer sent, of the last install.
    sched=$(log_at "$P1/cen/logs/sched.log" "^<!\[LOG\[job .*: request" "$T0")
    sent=$(log_at "$P1/cen/logs/sender.log" ": sent package" "$T0")
    inst=$(log_at "$P1/b01/logs/despool.log" " installed: " "$T0")
    SPANS+=("$sched/$sent/$inst")
    local dm
    dm=$(find "$P1/b01/inboxes/distmgr.box" -maxdepth 1 -name '*.pkg' | wc -l)
    [ "$dm" -ge "$N" ] || fail "B01's distmgr.box holds $dm requests, wanted $N"
    [ "$failed" -eq 0 ]
}
staged_once() {
    rm -rf "$P1"
    cp -a "$W/small.pristine" "$P1" || { fail "cannot restore $P1"; return 1; }
    run_staged "$P1" "$N" || return 1
    ASENT+=("$ALONE_SENT_S"); AINST+=("$ALONE_INST_S")
}
if [ "$REPS" -gt 0 ]; then
    t=$(now)
    if prepare_small; then
        note "bench: $N small jobs prepared at CEN in $(elapsed "$t" "$(now)")s (not counted)"
        SMALL_OK=1
        for i in $(seq "$REPS"); do
            if [ $((i % 2)) -eq 1 ]; then
                raw_once || break; small_once || break; staged_once || break
            else
                staged_once || break; small_once || break; raw_once || break
            fi
            note "bench: small jobs run $i: $N jobs installed in ${JOBS[-1]}s (${JRATE[-1]}/s;" \
                 "CEN done at ${JSENT[-1]}s; last scheduled/sent/installed at ${SPANS[-1]}s by the logs);" \
                 "apart: sender ${ASENT[-1]}s, then despool ${AINST[-1]}s; raw ${RAWR[-1]} files/s"
        done
    fi
fi

# --- 2. one large package, beside cp -a ---------------------------------------
P2=$W/big
BIG=(); BSENT=(); CP=(); CPS=(); BINST=(); BXFER=()
big_src() {
    mkdir -p "$W/bigsrc" || return 1
    head -c "$((BIG_MB * 1024 * 1024))" /dev/urandom >"$W/bigsrc/big.bin" ||
        { fail "cannot write $BIG_MB MB into $W/bigsrc"; return 1; }
}
# A fresh pair with the package's job waiting at CEN; sets PCK.
prepare_big() {
    local job
    PCK=
    rm -rf "$P2"
    new_pair "$P2" || return 1
    start_daemon "$P2/cen" distmgr || return 1
    if ! sc "$P2/cen" package add --name big --source "$W/bigsrc"; then
        fail "sitectl package add big failed:"; show_log "$P2/cen"; return 1
    fi
    wait_jobs "$P2/cen" 1 || return 1
    stop_daemon "$P2/cen" distmgr || return 1
    job=$(find "$P2/cen/inboxes/schedule.box" -maxdepth 1 -name '*.job' | head -n 1)
    PCK=$P2/cen/$(sed -n 's/^package_file=//p' "$job")
    [ -f "$PCK" ] || { fail "the job $job names no package file"; return 1; }
}
settle_big() { sync; cat "$PCK" >/dev/null; }
cp_once() {
    local t0 t1 t2 dst=$P2/b01/cp-baseline.pck
    settle_big
    t0=$(now)
    cp -a "$PCK" "$dst" || { fail "cp -a failed"; return 1; }
    t1=$(now)
    sync -f "$dst" || { fail "sync -f failed"; return 1; }
    t2=$(now)
    CP+=("$(elapsed "$t0" "$t1")"); CPS+=("$(elapsed "$t0" "$t2")")
    rm -f "$dst"
}
big_once() {
    settle_big
    run_pair "$P2" 1 || return 1
    BIG+=("$INST_S"); BSENT+=("$SENT_S")
    # The despooler's own figure for the install ("... in N ms").
    BINST+=("$(grep -a ' installed: ' "$P2/b01/logs/despool.log" | tail -n 1 |
               sed -n 's/.* in \([0-9][0-9]*\) ms.*/\1/p' | awk '{ printf "%.3f", $1 / 1000 }')")
    BXFER+=("$(log_at "$P2/cen/logs/sender.log" ": sent package" "$T0")")
}
PCK_BYTES=
if [ "$BIG_REPS" -gt 0 ] && [ "$failed" -eq 0 ]; then
    t=$(now)
    if big_src; then
        note "bench: $BIG_MB MB of /dev/urandom written in $(elapsed "$t" "$(now)")s (not counted)"
        for i in $(seq "$BIG_REPS"); do
            t=$(now)
            prepare_big || break
            PCK_BYTES=$(stat -c %s "$PCK")
            note "bench: large package run $i: CEN's distmgr made the job in $(elapsed "$t" "$(now)")s (not counted)"
            if [ $((i % 2)) -eq 1 ]; then
                cp_once || break; big_once || break
            else
                big_once || break; cp_once || break
            fi
            note "bench: large package run $i: installed at B01 in ${BIG[-1]}s (CEN done at ${BSENT[-1]}s," \
                 "sent by the log at ${BXFER[-1]}s, despool's install ${BINST[-1]:-?}s); cp -a ${CP[-1]}s, + sync ${CPS[-1]}s"
        done
        rm -rf "$P2"
    fi
fi

# --- report -------------------------------------------------------------------
echo
jobs=$(median "${JOBS[@]}"); jsent=$(median "${JSENT[@]}"); raw=$(median "${RAW[@]}")
jrate=$(rate "$N" "$jobs"); rawrate=$(rate "$N" "$raw"); jratio=$(ratio "$jrate" "$rawrate")
if [ "$SMALL_OK" = 1 ]; then
    printf '%d small jobs CEN -> B01, end to end: %s jobs/s (%s s); raw durable hand-off %s files/s; ratio %s; goal >= %s: %s\n' \
        "$N" "$jrate" "$(secs "$jobs")" "$rawrate" "$jratio" "$GOAL_JOBS" "$(met ge "$jratio" "$GOAL_JOBS")"
    printf '  runs: installed at B01 after %s s (%s jobs/s); CEN had sent all after %s s; raw %s files/s\n' \
        "$(list "${JOBS[@]}")" "$(words "${JRATE[@]}")" "$(list "${JSENT[@]}")" "$(words "${RAWR[@]}")"
    printf '  runs, by the logs (s after start): last job scheduled/last sent/last installed: %s\n' \
        "$(words "${SPANS[@]}")"
    asent=$(median "${ASENT[@]}"); ainst=$(median "${AINST[@]}")
    printf '  apart: CEN sender alone (despool stopped) %s s, %s jobs/s (%sx raw); B01 despool alone then %s s, %s jobs/s (%sx raw)\n' \
        "$(secs "$asent")" "$(rate "$N" "$asent")" "$(ratio "$(rate "$N" "$asent")" "$rawrate")" \
        "$(secs "$ainst")" "$(rate "$N" "$ainst")" "$(ratio "$(rate "$N" "$ainst")" "$rawrate")"
    printf '  runs apart: sender %s s; despool %s s\n' "$(list "${ASENT[@]}")" "$(list "${AINST[@]}")"
fi
big=$(median "${BIG[@]}"); bsent=$(median "${BSENT[@]}"); cp=$(median "${CP[@]}"); cps=$(median "${CPS[@]}")
r_cp=$(ratio "$big" "$cp"); r_cps=$(ratio "$big" "$cps"); rs_cp=$(ratio "$bsent" "$cp"); rs_cps=$(ratio "$bsent" "$cps")
if [ "${#BIG[@]}" -gt 0 ]; then
    printf 'one %s MB package (%s MB package file) CEN -> B01, end to end: %s s; cp -a %s s (%sx), cp -a + sync %s s (%sx); goal <= %sx: %s against cp -a, %s against cp -a + sync\n' \
        "$BIG_MB" "$(mb $((PCK_BYTES / 1024)))" "$(secs "$big")" "$(secs "$cp")" "$r_cp" \
        "$(secs "$cps")" "$r_cps" "$GOAL_BIG" \
        "$(met le "$r_cp" "$GOAL_BIG" | sed 's/goal //')" "$(met le "$r_cps" "$GOAL_BIG" | sed 's/goal //')"
    printf '  the sender alone (until CEN has no request): %s s (%sx cp -a, %sx cp -a + sync)\n' \
        "$(secs "$bsent")" "$rs_cp" "$rs_cps"
    printf '  runs: end to end %s s (despool install by its log %s s); sender alone %s s; cp -a %s s; cp -a + sync %s s\n' \
        "$(list "${BIG[@]}")" "$(list "${BINST[@]}")" "$(list "${BSENT[@]}")" "$(list "${CP[@]}")" "$(list "${CPS[@]}")"
fi

result sender.jobs "$N"
result sender.small_runs "${#JOBS[@]}"
result sender.small_s "$jobs"
result sender.small_sent_s "$jsent"
result sender.small_jobs_per_s "$jrate"
result baseline.raw_handoff_s "$raw"
result baseline.raw_handoff_files_per_s "$rawrate"
result sender.small_ratio_raw "$jratio"
result sender.small_sender_alone_s "$(median "${ASENT[@]}")"
result sender.small_despool_alone_s "$(median "${AINST[@]}")"
result sender.small_goal_met "$(yes_if ge "$jratio" "$GOAL_JOBS")"
result sender.big_mb "$BIG_MB"
result sender.big_pck_bytes "${PCK_BYTES:-nan}"
result sender.big_runs "${#BIG[@]}"
result sender.big_s "$big"
result sender.big_sent_s "$bsent"
result sender.big_despool_s "$(median "${BINST[@]}")"
result baseline.big_cp_s "$cp"
result baseline.big_cp_sync_s "$cps"
result sender.big_ratio_cp "$r_cp"
result sender.big_ratio_cp_sync "$r_cps"
result sender.big_sent_ratio_cp "$rs_cp"
result sender.big_goal_met "$(yes_if le "$r_cp" "$GOAL_BIG")"
result sender.big_goal_met_durable "$(yes_if le "$r_cps" "$GOAL_BIG")"
result sender.seconds "$(elapsed "$T_START" "$(now)")"
result sender.failed "$failed"
[ -z "${BENCH_RESULTS:-}" ] && printf '\nfigures: %s\n' "$RES"
exit "$failed"
