#!/bin/bash
# 91-config-set-loadable.sh - `sitectl config set` only writes a site.conf
# that the daemons can load: a retry_max_delay below its retry_delay (each
# value fine alone) is refused with exit 1, a message naming both keys,
# and site.conf byte for byte as it was; statmgr still starts on it.  In
# the right order the same change goes through, and a running statmgr
# reloads it.
# shellcheck disable=SC2016  # check() evaluates its single-quoted condition
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

site_init TST
CONF=$ROOT/site.conf

refused() {   # refused WANT-IN-STDERR KEY VALUE
    local want=$1 err rc before
    shift
    before=$(cat "$CONF")
    err=$(sc config set "$@" 2>&1 >/dev/null)
    rc=$?
    expect_eq "exit status of 'config set $*'" 1 "$rc"
    printf '%s\n' "$err" | grep -qF -- "$want" || fail "config set $*: no '$want' in: $err"
    printf '%s\n' "$err" | grep -qF -- "left unchanged" || fail "config set $*: no 'left unchanged' in: $err"
    [ "$(cat "$CONF")" = "$before" ] || fail "the refused 'config set $*' changed site.conf"
}

refused "distmgr.retry_max_delay 1m is shorter than distmgr.retry_delay 30m" \
    distmgr.retry_max_delay 1m
refused "distmgr.retry_max_delay 4h is shorter than distmgr.retry_delay 5h" \
    distmgr.retry_delay 5h
refused "sender.retry_max_delay 30s is shorter than sender.retry_delay 1m" \
    sender.retry_max_delay 30s
say "ok: three unloadable pairs refused, site.conf untouched"

sc start statmgr || fail "statmgr does not start on the site.conf left by the refusals"
pid=$(daemon_pid statmgr)
LOG=$ROOT/logs/statmgr.log

# The same change in an order where every step loads.
sc config set distmgr.retry_max_delay 8h >/dev/null || fail "config set distmgr.retry_max_delay 8h exited $?"
sc config set distmgr.retry_delay 5h >/dev/null || fail "config set distmgr.retry_delay 5h exited $?"
expect_eq "distmgr.retry_delay" 5h "$(sc config get distmgr.retry_delay)"
expect_eq "distmgr.retry_max_delay" 8h "$(sc config get distmgr.retry_max_delay)"
reloads() { grep -c 'configuration reloaded' "$LOG" 2>/dev/null; }
two_reloads() { [ "$(reloads)" -ge 2 ]; }
wait_for 10 two_reloads || fail "statmgr logged $(reloads) reloads, not 2"
! grep -q 'not reloaded' "$LOG" || fail "statmgr refused a reload: $(grep 'not reloaded' "$LOG" | tail -n 1)"
expect_eq "statmgr pid after the reloads" "$pid" "$(daemon_pid statmgr)"
say "ok: in the right order both edits are written and reloaded by statmgr (pid $pid)"
