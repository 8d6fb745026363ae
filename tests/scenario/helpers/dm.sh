# shellcheck shell=bash
# helpers/dm.sh - what the distmgr scenarios (100-105) share; sourced after
# lib.sh, never run.
#
#   dm_short_delays             distmgr retry delays as short as site.conf takes
#   pkg_json ID                 sitectl package show ID --json (fails the test if it fails)
#   pkg_field ID JQ             one value of package show --json, through jq
#   dp_field ID DP FIELD        one field of one DP in package show --json
#   msg_count ID [PKG]          status messages ID in the database (of package PKG)
#   msgs_drained                statmgr's inbox has nothing waiting
#   jobs_in_schedule            .job files in inboxes/schedule.box
#   dm_kill                     SIGKILL distmgr, wait until it is gone
#   dm_restart                  sitectl start distmgr after a kill
#   tree_list DIR               one line per entry: path, type, mode, mtime, size
#   no_staging DPPATH ID        no DPPATH/.ID.new left behind
#
# Every helper reads the database and sitectl output only: the daemons run
# as shipped, configured by site.conf.

# Short retry delays by configuration.  The contract (SPEC 9) gives
# durations ms suffixes; a site.conf that refuses delays under a second
# gets 1 s and 2 s, and DM_DELAY_MS says which one is in force.
HELPERS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dm_short_delays() {
    if sc config set distmgr.retry_delay 200ms >/dev/null 2>&1; then
        sc config set distmgr.retry_max_delay 400ms || fail "sitectl config set distmgr.retry_max_delay 400ms exited $?"
        # shellcheck disable=SC2034  # read by the scenarios
        DM_DELAY_MS=200
    else
        say "note: site.conf refuses distmgr.retry_delay 200ms; using 1s and 2s"
        sc config set distmgr.retry_delay 1s || fail "sitectl config set distmgr.retry_delay 1s exited $?"
        sc config set distmgr.retry_max_delay 2s || fail "sitectl config set distmgr.retry_max_delay 2s exited $?"
        # shellcheck disable=SC2034  # read by the scenarios
        DM_DELAY_MS=1000
    fi
}

pkg_json() {
    local out
    out=$(sc package show "$1" --json) || fail "sitectl package show $1 --json exited $?"
    printf '%s\n' "$out"
}

pkg_field() {
    pkg_json "$1" | jq -r "$2"
}

dp_field() {
    pkg_json "$1" | jq -r --arg dp "$2" --arg f "$3" '.dps[] | select(.name == $dp) | .[$f]'
}

# Counted in the database (statmgr has ingested them), through the
# attributes' JSON, so that one package's messages are told apart.
msg_count() {
    if [ $# -ge 2 ]; then
        db_count "SELECT count(*) FROM statmsg WHERE msgid = $1 AND json_extract(attrs, '\$.PackageID') = '$2'"
    else
        db_count "SELECT count(*) FROM statmsg WHERE msgid = $1"
    fi
}

msgs_drained() {
    local b=$ROOT/inboxes/statmgr.box/statmsgs
    [ "$(inbox_files "$b")" -eq 0 ] && [ "$(inbox_files "$b/work")" -eq 0 ]
}

jobs_in_schedule() {
    find "$ROOT/inboxes/schedule.box" -mindepth 1 -maxdepth 1 -type f -name '*.job' -printf x | wc -c
}

DM_KILLS=0
dm_kill() {
    local pid
    pid=$(daemon_pid distmgr)
    is_our_daemon "$pid" || fail "run/distmgr.pid names '$pid', not a running distmgr"
    kill -KILL "$pid"
    wait_for 10 pid_gone "$pid" || fail "distmgr pid $pid still alive 10 s after SIGKILL"
    DM_KILLS=$((DM_KILLS + 1))
    DM_LAST_PID=$pid
}

dm_restart() {
    local pid
    sc start distmgr >/dev/null || fail "sitectl start distmgr after SIGKILL of pid $DM_LAST_PID exited $?"
    pid=$(daemon_pid distmgr)
    is_our_daemon "$pid" || fail "after restart run/distmgr.pid names '$pid', not a running distmgr"
}

# Path, type, octal mode, mtime (s.ns) and size of every entry under DIR,
# sorted; directories without size and mtime (the tree's own bookkeeping
# changes those).
tree_list() {
    (cd "$1" && find . -mindepth 1 \( -type f -printf '%P f %m %T@ %s\n' \) -o \( -type d -printf '%P d %m\n' \) -o -printf '%P other\n') | sort
}

no_staging() {
    [ ! -e "$1/.$2.new" ]
}
