# shellcheck shell=bash
# helpers/sites.sh - several sites on this machine, for the scenarios of
# the scheduler, the sender and the despooler (108-110, and the three-level
# test); sourced after lib.sh, never run.
#
# Each site has a root of its own, $SCN_DIR/<CODE>, made by sitectl init,
# and is linked to its parent over file: addresses (the other site's
# inboxes/despoolr.box/receive/), with both sites' public keys exchanged by
# `sitectl site add CODE --address file:PATH --key PUBFILE` at each end.
# lib.sh's ROOT is not used by these helpers (a test may still use it).
#
#   site_init CODE [PARENT]     sitectl init (--parent PARENT), short delays by
#                               configuration only; the site is stopped at exit
#   site_root CODE              the root of site CODE
#   site_link PARENT CHILD      both `site add` calls: CHILD at PARENT, PARENT at CHILD
#   sx CODE ARGS...             sitectl --root <root of CODE> ARGS... (time limit)
#   site_db CODE SQL            one value from CODE's site.db (read-only; "" if none)
#   site_pid CODE DAEMON        the pid in CODE's run/DAEMON.pid ("" if none)
#   site_running CODE DAEMON    is DAEMON of CODE running (ours, ready file)?
#   site_kill CODE DAEMON       SIGKILL it and wait until it is gone and its pid
#                               file unlocked (fails the test if not)
#   site_pidfile_locked CODE DAEMON  does a process hold the lock on its pid file?
#   site_receive CODE           CODE's inboxes/despoolr.box/receive
#   site_requests CODE          send requests (*.srq) waiting at CODE
#   site_pkg_version CODE ID    the version of package ID in CODE's database (0: none)
#   site_msg_count CODE ID [SQL-COND]   status messages ID in CODE's database
#   site_msgs_drained CODE      CODE's statmgr has no status message waiting
#
# The cleanup (an EXIT trap set here, then lib.sh's own) stops every site
# site_init made with `sitectl stop`, kills with SIGKILL a daemon of ours
# that still holds a pid file there (which fails the test), and on failure
# prints the last lines of every site's logs.
# shellcheck disable=SC2016
# shellcheck disable=SC2034  # SCN_FAIL_MSG is read by lib.sh's scn_cleanup

SITES_ALL=()

site_root() {
    printf '%s/%s\n' "$SCN_DIR" "$1"
}

sx() {
    local code=$1
    shift
    timeout 120 "$SITECTL" --root "$(site_root "$code")" "$@"
}

site_init() {
    local code=$1 parent=${2:-} r
    r=$(site_root "$code")
    if [ -n "$parent" ]; then
        "$SITECTL" init --site "$code" --parent "$parent" --root "$r" >/dev/null ||
            fail "sitectl init --site $code --parent $parent exited $?"
    else
        "$SITECTL" init --site "$code" --root "$r" >/dev/null || fail "sitectl init --site $code exited $?"
    fi
    [ -f "$r/site.conf" ] || fail "sitectl init made no $r/site.conf"
    SITES_ALL+=("$code")
    # Short delays, by configuration only: the daemons run as shipped.
    local kv
    for kv in statmgr.rescan=1s sender.retry_delay=200ms sender.retry_max_delay=1s \
        distmgr.retry_delay=200ms distmgr.retry_max_delay=1s; do
        sx "$code" config set "${kv%%=*}" "${kv#*=}" >/dev/null ||
            fail "sitectl config set ${kv%%=*} ${kv#*=} at $code exited $?"
    done
    say "site $code initialised in $r${parent:+ (parent $parent)}"
}

site_receive() {
    printf '%s/inboxes/despoolr.box/receive\n' "$(site_root "$1")"
}

site_link() {
    local parent=$1 child=$2
    sx "$parent" site add "$child" --address "file:$(site_receive "$child")" \
        --key "$(site_root "$child")/keys/site.pub" >/dev/null ||
        fail "sitectl site add $child (at $parent) exited $?"
    sx "$child" site add "$parent" --address "file:$(site_receive "$parent")" \
        --key "$(site_root "$parent")/keys/site.pub" >/dev/null ||
        fail "sitectl site add $parent (at $child) exited $?"
    [ "$(site_db "$parent" "SELECT relation FROM site WHERE code = '$child'")" = child ] ||
        fail "$child is not recorded as a child at $parent"
    [ "$(site_db "$child" "SELECT relation FROM site WHERE code = '$parent'")" = parent ] ||
        fail "$parent is not recorded as the parent at $child"
}

site_db() {
    local out
    if ! out=$(sqlite3 -readonly -cmd '.timeout 10000' "$(site_root "$1")/db/site.db" "$2" 2>&1); then
        echo "site_db: sqlite3 failed at $1 on '$2': $out" >&2
        return 1
    fi
    printf '%s\n' "$out"
}

site_pid() {
    local p='' f
    f=$(site_root "$1")/run/$2.pid
    [ -f "$f" ] && read -r p <"$f" 2>/dev/null
    case $p in
    '' | *[!0-9]*) echo "" ;;
    *) echo "$p" ;;
    esac
}

site_running() {
    local p
    p=$(site_pid "$1" "$2")
    [ -n "$p" ] && is_our_daemon "$p" && [ -f "$(site_root "$1")/run/$2.ready" ]
}

# The daemon locks its pid file with fcntl; /proc/locks names the inode.
site_pidfile_locked() {
    local f ino
    f=$(site_root "$1")/run/$2.pid
    [ -f "$f" ] || return 1
    ino=$(stat -c %i "$f") || return 1
    grep -q ":$ino " /proc/locks
}

# Gone means the pid file's lock is released too: the group leader of a
# killed daemon may be a zombie while another of its threads (one in
# fdatasync, say) still holds the process's files, and a `sitectl start`
# then would find the old daemon running.
site_kill() {
    local pid
    pid=$(site_pid "$1" "$2")
    is_our_daemon "$pid" || fail "$1's run/$2.pid names '$pid', not a running $2"
    kill -KILL "$pid" 2>/dev/null
    wait_for 10 pid_gone "$pid" || fail "$1's $2 (pid $pid) still alive 10 s after SIGKILL"
    wait_for 10 site_pidfile_unlocked "$1" "$2" ||
        fail "$1's run/$2.pid still locked 10 s after SIGKILL of pid $pid"
}
site_pidfile_unlocked() { ! site_pidfile_locked "$1" "$2"; }

site_requests() {
    find "$(site_root "$1")/inboxes/schedule.box/requests" -mindepth 1 -maxdepth 1 -type f \
        -name '*.srq' -printf x 2>/dev/null | wc -c
}

site_pkg_version() {
    local v
    v=$(site_db "$1" "SELECT coalesce(max(version), 0) FROM package WHERE id = '$2'") || v=0
    echo "${v:-0}"
}

site_msg_count() {
    local cond=${3:-1}
    site_db "$1" "SELECT count(*) FROM statmsg WHERE msgid = $2 AND ($cond)"
}

site_msgs_drained() {
    local b
    b=$(site_root "$1")/inboxes/statmgr.box/statmsgs
    [ "$(inbox_files "$b")" -eq 0 ] && [ "$(inbox_files "$b/work")" -eq 0 ]
}

sites_cleanup() {
    local rc=$? code r f p
    set +e
    trap - EXIT
    for code in "${SITES_ALL[@]}"; do
        r=$(site_root "$code")
        [ -f "$r/site.conf" ] || continue
        timeout 60 "$SITECTL" --root "$r" stop >/dev/null 2>&1 ||
            echo "cleanup: sitectl stop at $code exited $?"
        for f in "$r"/run/*.pid; do
            [ -f "$f" ] || continue
            read -r p <"$f" 2>/dev/null
            if [ -n "$p" ] && is_our_daemon "$p"; then
                echo "cleanup: $code's $(basename "$f" .pid) (pid $p) still running after sitectl stop; killing it"
                kill -KILL "$p" 2>/dev/null
                [ "$rc" -eq 0 ] && { rc=1; SCN_FAIL_MSG="FAIL: a daemon of $code survived sitectl stop"; }
            fi
        done
        if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
            for f in "$r"/logs/*.log; do
                [ -f "$f" ] || continue
                echo "--- last lines of $code's $(basename "$f")"
                tail -n 12 "$f" | cut -c 1-400
            done
        fi
    done
    (exit "$rc")
    scn_cleanup
}
trap sites_cleanup EXIT
