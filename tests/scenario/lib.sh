# shellcheck shell=bash
# lib.sh - shared helpers of the scenario tests (sourced, never run).
#
# A scenario runs the real daemons, started with sitectl, in a site root
# of its own under a fresh temporary directory, and leaves nothing behind:
# an EXIT trap stops the daemons with sitectl, kills whatever daemon of
# ours still holds a pid file in that root (checked through /proc/PID/exe,
# so an unrelated process that reused the pid is never touched), stops the
# background jobs the test registered, and removes the directory.
#
# Environment (tests/run.sh exports it; the defaults serve a manual run
# from the source tree): SITECTL, SITESRV_LIBEXEC, TOOLS, SITESRV_SRCDIR;
# KEEP=1 keeps the temporary directory of a failed run for a post-mortem.
#
# After sourcing:
#   SCN_DIR   the temporary directory;  ROOT  the site root inside it;
#   SCRATCH   a work directory for the test's own files.
#
# Helpers:
#   site_init [CODE]            sitectl init, then short delays (config only)
#   sc ARGS...                  sitectl --root $ROOT ARGS... (with a time limit)
#   say TEXT                    print what is being checked
#   fail MSG                    print "FAIL: MSG" and exit 1
#   check COND MSG              eval COND; fail MSG unless it holds
#   expect_eq WHAT WANT GOT     fail "expected WANT WHAT, got GOT" unless equal
#   wait_for SECS CMD...        run CMD every 0.1 s until it succeeds; 1 on timeout
#   db_count SQL                one value from site.db (sqlite3 -readonly)
#   inbox_files DIR             regular non-dot files directly in DIR
#   corrupt_files DIR           quarantined files in DIR/corrupt (no .reason)
#   daemon_pid NAME             the pid in run/NAME.pid ("" if none)
#   is_our_daemon PID           does PID run a binary from $SITESRV_LIBEXEC?
#   pid_gone PID                no such process, or only a zombie
#   pidfile_locked NAME         does any process hold the lock on run/NAME.pid?
#   bg_track PID                kill this background job at exit
set -u
export LC_ALL=C

SITESRV_SRCDIR=${SITESRV_SRCDIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
SITECTL=${SITECTL:-$SITESRV_SRCDIR/build/bin/sitectl}
SITESRV_LIBEXEC=${SITESRV_LIBEXEC:-$SITESRV_SRCDIR/build/libexec/sitesrv}
TOOLS=${TOOLS:-$SITESRV_SRCDIR/build/tests/tools}
unset SITESRV_ROOT NOTIFY_SOCKET WATCHDOG_USEC WATCHDOG_PID

SCN_NAME=$(basename "$0" .sh)
SCN_LIBEXEC_REAL=$(readlink -f "$SITESRV_LIBEXEC" 2>/dev/null || echo "$SITESRV_LIBEXEC")
SCN_BG_PIDS=()
SCN_MOUNTS=()
SCN_FAIL_MSG=
SCN_SKIP_MSG=
SCN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/sitesrv-$SCN_NAME.XXXXXX") || {
    echo "FAIL: cannot create a temporary directory" >&2
    exit 1
}
ROOT=$SCN_DIR/site
SCRATCH=$SCN_DIR/scratch
mkdir -p "$SCRATCH"

for scn_bin in "$SITECTL" "$SITESRV_LIBEXEC/statmgr"; do
    if [ ! -x "$scn_bin" ]; then
        echo "FAIL: $scn_bin is missing (run make check-build)"
        rm -rf "$SCN_DIR"
        exit 1
    fi
done

say() { printf '%s\n' "$*"; }

fail() {
    SCN_FAIL_MSG="FAIL: $*"
    printf '%s\n' "$SCN_FAIL_MSG"
    exit 1
}

# skip REASON: this scenario cannot run here; run.sh counts it apart.
skip() {
    SCN_SKIP_MSG="SKIP: $*"
    printf '%s\n' "$SCN_SKIP_MSG"
    exit 77
}

# check COND MSG: COND is evaluated by the shell, e.g.
#   check '[ "$n" -eq 512 ]' "expected 512 rows, got $n"
check() {
    eval "$1" || fail "$2"
}

expect_eq() {
    local what=$1 want=$2 got=$3
    [ "$want" = "$got" ] || fail "expected $want $what, got $got"
    say "ok: $got $what"
}

scn_now_ms() {
    local t=${EPOCHREALTIME/./}
    echo $((10#$t / 1000))
}

# Waiting on a condition, never a fixed sleep: poll every 0.1 s.
wait_for() {
    local secs=$1
    shift
    local deadline=$(($(scn_now_ms) + secs * 1000))
    while :; do
        "$@" && return 0
        [ "$(scn_now_ms)" -ge "$deadline" ] && return 1
        sleep 0.1
    done
}

# sitectl on this root; a hung sitectl must fail the test, not stall it.
sc() {
    timeout 120 "$SITECTL" --root "$ROOT" "$@"
}

site_init() {
    local code=${1:-TST}
    "$SITECTL" init --site "$code" --root "$ROOT" || fail "sitectl init --site $code --root $ROOT exited $?"
    [ -f "$ROOT/site.conf" ] || fail "sitectl init made no $ROOT/site.conf"
    [ -d "$ROOT/inboxes/statmgr.box/statmsgs" ] || fail "sitectl init made no inboxes/statmgr.box/statmsgs"
    # Short delays, by configuration only: the daemons run as shipped.
    sc config set statmgr.rescan 1s || fail "sitectl config set statmgr.rescan 1s exited $?"
    say "site $code initialised in $ROOT"
}

# One value from the site database, read-only, waiting out a writer's lock.
db_count() {
    local out
    if ! out=$(sqlite3 -readonly -cmd '.timeout 10000' "$ROOT/db/site.db" "$1" 2>&1); then
        echo "db_count: sqlite3 failed on '$1': $out" >&2
        echo -1
        return 1
    fi
    echo "${out:-0}"
}

# Counts by -printf, not by lines, so that a name with a newline is one file.
inbox_files() {
    find "$1" -mindepth 1 -maxdepth 1 -type f ! -name '.*' -printf x 2>/dev/null | wc -c
}

corrupt_files() {
    find "$1/corrupt" -mindepth 1 -maxdepth 1 -type f ! -name '.*' ! -name '*.reason' -printf x 2>/dev/null | wc -c
}

reason_files() {
    find "$1/corrupt" -mindepth 1 -maxdepth 1 -type f -name '*.reason' -printf x 2>/dev/null | wc -c
}

daemon_pid() {
    local p=
    [ -f "$ROOT/run/$1.pid" ] && read -r p <"$ROOT/run/$1.pid" 2>/dev/null
    case $p in
    '' | *[!0-9]*) echo "" ;;
    *) echo "$p" ;;
    esac
}

is_our_daemon() {
    local exe
    [ -n "$1" ] || return 1
    exe=$(readlink "/proc/$1/exe" 2>/dev/null) || return 1
    [[ $exe == "$SCN_LIBEXEC_REAL"/* ]]
}

pid_gone() {
    local state
    [ -e "/proc/$1" ] || return 0
    state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null)
    [ -z "$state" ] || [ "$state" = Z ]
}

# The daemon locks its pid file with fcntl; /proc/locks names the inode.
pidfile_locked() {
    local f=$ROOT/run/$1.pid ino
    [ -f "$f" ] || return 1
    ino=$(stat -c %i "$f") || return 1
    grep -q ":$ino " /proc/locks
}

daemon_running() {
    local p
    p=$(daemon_pid "$1")
    [ -n "$p" ] && is_our_daemon "$p" && [ -f "$ROOT/run/$1.ready" ]
}

bg_track() {
    SCN_BG_PIDS+=("$1")
}

scn_cleanup() {
    local rc=$? p f
    set +e
    trap - EXIT INT TERM
    for p in "${SCN_BG_PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null
    done
    for p in "${SCN_BG_PIDS[@]}"; do
        wait "$p" 2>/dev/null
    done
    if [ -f "$ROOT/site.conf" ]; then
        timeout 60 "$SITECTL" --root "$ROOT" stop >/dev/null 2>&1 ||
            echo "cleanup: sitectl stop exited $?"
    fi
    for f in "$ROOT"/run/*.pid; do
        [ -f "$f" ] || continue
        read -r p <"$f" 2>/dev/null
        if [ -n "$p" ] && is_our_daemon "$p"; then
            echo "cleanup: $(basename "$f" .pid) (pid $p) still running after sitectl stop; killing it"
            kill -KILL "$p" 2>/dev/null
            [ "$rc" -eq 0 ] && { rc=1; SCN_FAIL_MSG="FAIL: a daemon survived sitectl stop"; }
        fi
    done
    # A daemon built with the sanitizers reports into run/<daemon>.stderr,
    # which nobody else reads: any report there fails the test.
    for f in "$ROOT"/run/*.stderr; do
        [ -f "$f" ] || continue
        if grep -q 'ERROR: AddressSanitizer\|ERROR: LeakSanitizer\|runtime error:' "$f"; then
            echo "--- sanitizer report in $f"
            head -n 40 "$f"
            [ "$rc" -eq 0 ] && { rc=1; SCN_FAIL_MSG="FAIL: sanitizer report in $(basename "$f")"; }
        fi
    done
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
        for f in "$ROOT"/logs/*.log; do
            [ -f "$f" ] || continue
            echo "--- last lines of $f"
            tail -n 12 "$f" | cut -c 1-400
        done
        [ -n "$SCN_FAIL_MSG" ] && printf '%s\n' "$SCN_FAIL_MSG"
    elif [ "$rc" -eq 77 ]; then
        tail -n 1 <<<"$SCN_SKIP_MSG"
    fi
    # File systems a test mounted inside its directory (scn_mount).
    for f in "${SCN_MOUNTS[@]}"; do
        umount "$f" 2>/dev/null || umount -l "$f" 2>/dev/null
    done
    if [ "$rc" -ne 0 ] && [ -n "${KEEP:-}" ]; then
        echo "kept $SCN_DIR"
    else
        rm -rf "$SCN_DIR"
    fi
    exit "$rc"
}

# scn_mount SIZE DIR: a tmpfs of SIZE on DIR, unmounted at cleanup.
scn_mount() {
    mount -t tmpfs -o "size=$1,mode=0755" "scn-$SCN_NAME" "$2" || return 1
    SCN_MOUNTS+=("$2")
}
trap scn_cleanup EXIT
trap 'SCN_FAIL_MSG="FAIL: terminated by SIGTERM (the time limit of the runner?)"; exit 143' TERM
trap 'SCN_FAIL_MSG="FAIL: interrupted"; exit 130' INT
