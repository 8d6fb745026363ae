#!/bin/bash
# 113-restart-storm.sh - SPEC 4.3 (hang after restart), issue 5 "Restart
# storm": the daemons of two sites stopped and started at random while
# packages and status messages flow, and afterwards all work completes.
#
# CEN and its child B01 (file: addresses, keys exchanged), each with a DP,
# every daemon (distmgr sender despool statmgr) running at first.  B01's
# statmgr also replicates the component "storm" to CEN, so that status
# messages travel up through B01's sender and CEN's despooler and statmgr.
# While
#
#   - a package producer updates one of NPKG small packages at CEN every
#     0.5-1 s (a changed file, a file added, an older one removed) with
#     `sitectl package update`, and
#   - a status producer at each site drops status messages (component
#     "storm") with smgen into statmgr.box/statmsgs and with
#     `sitectl client send-status` into the client access point,
#
# SCN_CYCLES cycles (default 100) each pick a site, start or stop, and a
# random non-empty subset of the five daemons in random order, run
# `sitectl start|stop --timeout LIMIT NAMES`, then wait 0-200 ms.  Every
# call must exit 0: sitectl's own time limit (start: ready within
# START_LIMIT; stop: exited within STOP_LIMIT, the daemon's stop_timeout
# 10 s + 5 s) is the check - durations are only printed, never asserted,
# since the machine is shared.  After each call the named daemons are
# really running (ready file naming a pid that holds the pid lock) or
# really gone (no lock, no ready file); at the start of each cycle every
# daemon the storm left running still runs with the same pid (no crash).
#
# Afterwards every daemon of both sites is started, the producers stop,
# and the test waits until everything drains, then checks:
#
#   - every inbox of both sites empty (sitectl inbox --json: files 0,
#     claimed 0, corrupt 0; the .tmp/ of each is shown), no send request;
#   - every package installed on CEN's DP at its final version, equal to
#     the source, and at B01 at the same version with B01's DP equal to it;
#   - every status message produced recorded exactly once in its site's
#     database (rows counted by the insertion-string prefix "rs<SITE>",
#     each insertion string unique), and B01's exactly once at CEN too;
#   - no daemon crashed: sitectl status shows every daemon ready with the
#     pid of its pid file; no core file; no "Assertion" or sanitizer report
#     in any daemon's stderr of any incarnation (run/<daemon>.stderr is
#     truncated at each start, so each is kept before it is);
#   - after the final `sitectl stop` at both sites, no pid or ready file
#     left under run/.
#
# The random choices come from SEED (printed; set it to replay a run's
# choices - the timing of the producers is not replayed).
# shellcheck disable=SC2016  # check() evaluates its single-quoted condition
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=helpers/sites.sh
. "$(dirname "$0")/helpers/sites.sh"

command -v sqlite3 >/dev/null || skip "sqlite3 is not installed"
command -v python3 >/dev/null || skip "python3 is not installed"

CYCLES=${SCN_CYCLES:-100}
NPKG=3
START_LIMIT=30      # seconds: sitectl start's own default
STOP_LIMIT=15       # seconds: daemon.stop_timeout (10 s) + 5 s, sitectl stop's default
DAEMONS=(distmgr sender despool statmgr sitebkup)
SITES=(CEN B01)
SEED=${SEED:-$(od -An -tu2 -N2 /dev/urandom | tr -d ' ')}
RANDOM=$SEED
say "SEED=$SEED CYCLES=$CYCLES"

# The daemons inherit our working directory: a core dump lands in ours,
# which is removed at the end (or kept with KEEP=1), never the source tree.
cd "$SCN_DIR" || fail "cannot cd to $SCN_DIR"
ulimit -S -c unlimited 2>/dev/null || true

site_init CEN
site_init B01 CEN
site_link CEN B01
sx B01 config set statmgr.replicate "distmgr despool sender storm" >/dev/null ||
    fail "sitectl config set statmgr.replicate at B01 exited $?"
DPC=$SCRATCH/dp-CEN
DPB=$SCRATCH/dp-B01
mkdir -p "$DPC" "$DPB"
sx CEN dp add DPC "$DPC" >/dev/null || fail "sitectl dp add DPC (at CEN) exited $?"
sx B01 dp add DPB "$DPB" >/dev/null || fail "sitectl dp add DPB (at B01) exited $?"
for c in "${SITES[@]}"; do
    sx "$c" start "${DAEMONS[@]}" >/dev/null || fail "sitectl start ${DAEMONS[*]} at $c exited $?"
done

# ---- the packages ----
PKG_IDS=()
for k in $(seq 1 "$NPKG"); do
    s=$SCRATCH/src$k
    mkdir -p "$s/sub"
    echo "package $k update 0" >"$s/a"
    head -c 2000 /dev/urandom >"$s/sub/b"
    echo "file 0" >"$s/sub/f0"
    id=$(sx CEN package add --name "storm$k" --source "$s") || fail "sitectl package add storm$k exited $?"
    PKG_IDS+=("$id")
done
say "packages ${PKG_IDS[*]} added at CEN"

STOP=$SCRATCH/stop-producers
ERRF=$SCRATCH/producer-errors

# One package at random every 0.5-1 s: a changed, b new now and then,
# f<n> added and f<n-2> removed; then `package update`.  Whatever distmgr
# is doing meanwhile, the last update comes after the last change.
pkg_producer() {
    local n=0 k s ms
    RANDOM=$((SEED + 1))
    while [ ! -e "$STOP" ]; do
        ms=$((500 + RANDOM % 501))
        sleep "$((ms / 1000)).$(printf '%03d' $((ms % 1000)))"
        [ -e "$STOP" ] && break
        n=$((n + 1))
        k=$((RANDOM % NPKG + 1))
        s=$SCRATCH/src$k
        echo "package $k update $n" >"$s/a"
        [ $((RANDOM % 3)) -eq 0 ] && head -c 2000 /dev/urandom >"$s/sub/b"
        echo "file $n" >"$s/sub/f$n"
        rm -f "$s/sub/f$((n - 2))"
        if sx CEN package update "${PKG_IDS[k - 1]}" >/dev/null; then
            echo "$n" >"$SCRATCH/updates.new" && mv "$SCRATCH/updates.new" "$SCRATCH/updates"
        else
            echo "sitectl package update ${PKG_IDS[k - 1]} ($n) exited $?" >>"$ERRF"
        fi
    done
}

# Status messages at site $1, every insertion string unique and starting
# with "rs$1": smgen writes 5 ("rs$1s<i>-1".."-5"), sitectl client
# send-status one ("rs$1c<i>").  Counts exactly what was handed over.
status_producer() {
    local code=$1 i=0 sent=0 out rc r
    r=$(site_root "$code")
    while [ ! -e "$STOP" ]; do
        i=$((i + 1))
        out=$("$TOOLS/smgen" --box "$r/inboxes/statmgr.box/statmsgs" --count 5 --prefix "$code" \
            --component storm --istr-prefix "rs${code}s$i")
        rc=$?
        sent=$((sent + ${out:-0}))
        [ "$rc" -eq 0 ] || echo "smgen at $code batch $i exited $rc after $out files" >>"$ERRF"
        if "$SITECTL" --root "$r" client send-status --cap "$r/inboxes/cap" --id 8602 \
            --component storm --istr "rs${code}c$i" >/dev/null; then
            sent=$((sent + 1))
        else
            echo "sitectl client send-status at $code ($i) exited $?" >>"$ERRF"
        fi
        echo "$sent" >"$SCRATCH/sent-$code.new" && mv "$SCRATCH/sent-$code.new" "$SCRATCH/sent-$code"
        sleep 0.2
    done
}

pkg_producer &
bg_track $!
PRODUCERS=($!)
for c in "${SITES[@]}"; do
    status_producer "$c" &
    bg_track $!
    PRODUCERS+=($!)
done
say "producers running (pids ${PRODUCERS[*]})"

# ---- the storm ----
# Each incarnation's stderr is kept in $SCRATCH/stderr-<site>-<daemon>
# before a start truncates it, and once the daemon has exited.
keep_stderr() {   # keep_stderr CODE DAEMON
    local f
    f=$(site_root "$1")/run/$2.stderr
    [ -s "$f" ] || return 0
    { echo "=== $(date +%T.%N)"; cat "$f"; } >>"$SCRATCH/stderr-$1-$2"
}

declare -A RUNPID=()
for c in "${SITES[@]}"; do
    for d in "${DAEMONS[@]}"; do
        RUNPID[$c:$d]=$(site_pid "$c" "$d")
        is_our_daemon "${RUNPID[$c:$d]}" || fail "$c's $d is not running after the first start"
    done
done

# Every daemon the storm left running still runs, with the same pid.
check_alive() {
    local key pid
    for key in "${!RUNPID[@]}"; do
        pid=${RUNPID[$key]}
        [ -n "$pid" ] || continue
        if ! is_our_daemon "$pid" || [ "$(site_pid "${key%%:*}" "${key#*:}")" != "$pid" ]; then
            keep_stderr "${key%%:*}" "${key#*:}"
            fail "cycle $1: ${key%%:*}'s ${key#*:} (pid $pid) died without being stopped;" \
                "stderr: $(tail -n 5 "$SCRATCH/stderr-${key%%:*}-${key#*:}" 2>/dev/null | tr '\n' '|')"
        fi
    done
}

max_start=0 max_start_what='' max_stop=0 max_stop_what=''
nstart=0 nstop=0 dstart=0 dstop=0 busy_stops=0 inflight=0
storm_t0=$(scn_now_ms)
for i in $(seq 1 "$CYCLES"); do
    check_alive "$i"
    site=${SITES[RANDOM % 2]}
    if [ $((RANDOM % 2)) -eq 0 ]; then action=start limit=$START_LIMIT; else action=stop limit=$STOP_LIMIT; fi
    # A random non-empty subset, in random order (a shuffle, then a prefix).
    names=("${DAEMONS[@]}")
    for ((j = ${#names[@]} - 1; j > 0; j--)); do
        r=$((RANDOM % (j + 1)))
        t=${names[j]} names[j]=${names[r]} names[r]=$t
    done
    names=("${names[@]:0:$((RANDOM % ${#names[@]} + 1))}")
    if [ "$action" = start ]; then
        for d in "${names[@]}"; do
            site_pidfile_locked "$site" "$d" || keep_stderr "$site" "$d"
        done
    fi
    # Only shown: whether a stop found work waiting or claimed at its site.
    [ "$action" = stop ] && inflight=$(find "$(site_root "$site")/inboxes" -type f \
        ! -path '*/.tmp/*' ! -path '*/corrupt/*' ! -name '.*' -printf x | wc -c)
    t0=$(scn_now_ms)
    out=$(sx "$site" "$action" --timeout "${limit}s" "${names[@]}" 2>&1)
    rc=$?
    ms=$(($(scn_now_ms) - t0))
    [ "$rc" -eq 0 ] ||
        fail "cycle $i: sitectl $action --timeout ${limit}s ${names[*]} at $site exited $rc after $ms ms: $(tr '\n' '|' <<<"$out")"
    what="cycle $i, $site ${names[*]}"
    if [ "$action" = start ]; then
        nstart=$((nstart + 1)) dstart=$((dstart + ${#names[@]}))
        [ "$ms" -gt "$max_start" ] && max_start=$ms max_start_what=$what
        for d in "${names[@]}"; do
            site_running "$site" "$d" || fail "cycle $i: $site's $d is not running after sitectl start returned 0 ($out)"
            site_pidfile_locked "$site" "$d" || fail "cycle $i: $site's $d runs but nobody holds its pid lock"
            RUNPID[$site:$d]=$(site_pid "$site" "$d")
        done
    else
        nstop=$((nstop + 1)) dstop=$((dstop + ${#names[@]}))
        [ "$inflight" -gt 0 ] && busy_stops=$((busy_stops + 1))
        [ "$ms" -gt "$max_stop" ] && max_stop=$ms max_stop_what=$what
        for d in "${names[@]}"; do
            ! site_pidfile_locked "$site" "$d" || fail "cycle $i: $site's $d still holds its pid lock after sitectl stop returned 0"
            [ ! -f "$(site_root "$site")/run/$d.ready" ] || fail "cycle $i: $site's run/$d.ready is still there after sitectl stop"
            keep_stderr "$site" "$d"
            RUNPID[$site:$d]=
        done
    fi
    ms=$((RANDOM % 201))
    sleep "0.$(printf '%03d' "$ms")"
done
check_alive end
say "ok: $CYCLES cycles in $(($(scn_now_ms) - storm_t0)) ms, every call exited 0:" \
    "$nstart starts ($dstart daemons), $nstop stops ($dstop daemons)"
say "info: $busy_stops of the $nstop stops came while files waited or were claimed in the site's inboxes"
say "info: slowest start $max_start ms ($max_start_what), slowest stop $max_stop ms ($max_stop_what)"

# ---- drain ----
for c in "${SITES[@]}"; do
    for d in "${DAEMONS[@]}"; do
        site_pidfile_locked "$c" "$d" || keep_stderr "$c" "$d"
    done
    out=$(sx "$c" start --timeout "${START_LIMIT}s" "${DAEMONS[@]}" 2>&1) ||
        fail "final sitectl start at $c exited $?: $(tr '\n' '|' <<<"$out")"
done
touch "$STOP"
for p in "${PRODUCERS[@]}"; do
    wait "$p"
done
SCN_BG_PIDS=()   # lib.sh's cleanup has nothing left to stop
[ -s "$ERRF" ] && fail "the producers saw failures: $(head -n 3 "$ERRF" | tr '\n' ';')"
UPDATES=$(cat "$SCRATCH/updates" 2>/dev/null || echo 0)
declare -A SENT=()
for c in "${SITES[@]}"; do
    SENT[$c]=$(cat "$SCRATCH/sent-$c" 2>/dev/null || echo 0)
    check '[ "${SENT[$c]}" -gt 0 ]' "the status producer at $c sent nothing"
done
say "producers stopped: $UPDATES package updates, ${SENT[CEN]} status messages at CEN, ${SENT[B01]} at B01"

# rows SITE-DB PREFIX: status rows whose first insertion string starts so.
rows() { site_db "$1" "SELECT count(*) FROM statmsg WHERE component = 'storm' AND istr LIKE '[\"$2%'"; }
distinct_rows() { site_db "$1" "SELECT count(DISTINCT istr) FROM statmsg WHERE component = 'storm' AND istr LIKE '[\"$2%'"; }

# inbox_busy CODE: the inboxes of CODE with files, claimed or quarantined
# ones, as "name:files/claimed/corrupt" words (empty when all are empty).
inbox_busy() {
    sx "$1" inbox --json | python3 -c '
import json, sys
print(" ".join("%s:%d/%d/%d" % (i["inbox"], i["files"], i.get("claimed", 0), i["corrupt"])
               for i in json.load(sys.stdin)
               if i["files"] or i.get("claimed", 0) or i["corrupt"]))'
}
# The package's version at CEN, its DP there at that version, B01 the same.
pkg_done() {   # pkg_done ID
    local v
    v=$(site_pkg_version CEN "$1")
    [ "$v" -gt 0 ] &&
        [ "$(site_db CEN "SELECT count(*) FROM dp_state WHERE package = '$1' AND version = $v AND state = 'installed'")" = 1 ] &&
        [ "$(site_pkg_version B01 "$1")" = "$v" ] &&
        [ "$(site_db B01 "SELECT count(*) FROM dp_state WHERE package = '$1' AND version = $v AND state = 'installed'")" = 1 ]
}
WHY=
drained() {
    local c id b
    for c in "${SITES[@]}"; do
        b=$(inbox_busy "$c")
        [ -z "$b" ] || { WHY="$c inboxes busy: $b"; return 1; }
        [ "$(site_requests "$c")" -eq 0 ] || { WHY="$c has $(site_requests "$c") send requests"; return 1; }
        [ "$(rows "$c" "rs$c")" -ge "${SENT[$c]}" ] || { WHY="$c has $(rows "$c" "rs$c") of ${SENT[$c]} status rows"; return 1; }
    done
    [ "$(rows CEN rsB01)" -ge "${SENT[B01]}" ] || { WHY="CEN has $(rows CEN rsB01) of B01's ${SENT[B01]} status rows"; return 1; }
    for id in "${PKG_IDS[@]}"; do
        pkg_done "$id" || { WHY="$id: CEN at $(site_pkg_version CEN "$id"), B01 at $(site_pkg_version B01 "$id")"; return 1; }
    done
    return 0
}
t0=$(scn_now_ms)
wait_for 120 drained || fail "not drained within 120 s: $WHY"
say "ok: drained $(($(scn_now_ms) - t0)) ms after the storm"
for id in "${PKG_IDS[@]}"; do
    sx CEN package wait "$id" --timeout 60 >/dev/null || fail "sitectl package wait $id at CEN exited $?"
done
wait_for 60 drained || fail "not drained after package wait: $WHY"

# ---- checks ----
for c in "${SITES[@]}"; do
    b=$(sx "$c" inbox --json | python3 -c '
import json, sys
print(" ".join("%s:%d" % (i["inbox"], i.get("tmp", 0)) for i in json.load(sys.stdin) if i.get("tmp", 0)))')
    [ -z "$b" ] || say "note: files in .tmp/ at $c: $b"
    b=$(inbox_busy "$c")
    [ -z "$b" ] || fail "inboxes at $c not empty (inbox:files/claimed/corrupt): $b"
    say "ok: every inbox at $c empty, nothing claimed or quarantined"
    expect_eq "send requests at $c" 0 "$(site_requests "$c")"
done
for k in $(seq 1 "$NPKG"); do
    id=${PKG_IDS[k - 1]}
    v=$(site_pkg_version CEN "$id")
    expect_eq "version of $id at B01 (CEN has $v)" "$v" "$(site_pkg_version B01 "$id")"
    diff -r "$SCRATCH/src$k" "$DPC/$id" || fail "CEN's DP copy of $id (version $v) differs from the source"
    diff -r "$DPC/$id" "$DPB/$id" || fail "B01's DP copy of $id differs from CEN's (version $v)"
    say "ok: $id at version $v on both DPs, equal to the source"
done
for c in "${SITES[@]}"; do
    expect_eq "status rows of $c's producer at $c" "${SENT[$c]}" "$(rows "$c" "rs$c")"
    expect_eq "distinct insertion strings of $c's producer at $c" "${SENT[$c]}" "$(distinct_rows "$c" "rs$c")"
done
expect_eq "status rows of B01's producer replicated to CEN" "${SENT[B01]}" "$(rows CEN rsB01)"
expect_eq "distinct insertion strings of B01's producer at CEN" "${SENT[B01]}" "$(distinct_rows CEN rsB01)"
expect_eq "rows of CEN's producer at B01" 0 "$(rows B01 rsCEN)"

# Every daemon ready, with the pid of its pid file.
for c in "${SITES[@]}"; do
    bad=$(sx "$c" status --json | python3 -c '
import json, sys
want = sys.argv[1:]
st = {d["name"]: d for d in json.load(sys.stdin)["daemons"]}
print(" ".join("%s:%s" % (n, st.get(n, {}).get("state")) for n in want
               if st.get(n, {}).get("state") != "ready"))' "${DAEMONS[@]}")
    [ -z "$bad" ] || fail "sitectl status at $c: daemons not ready: $bad"
    for d in "${DAEMONS[@]}"; do
        site_running "$c" "$d" || fail "$c's $d: status says ready but run/$d.pid and .ready disagree"
    done
    say "ok: sitectl status at $c shows ${DAEMONS[*]} ready"
done

for c in "${SITES[@]}"; do
    out=$(sx "$c" stop --timeout "${STOP_LIMIT}s" "${DAEMONS[@]}" 2>&1) ||
        fail "final sitectl stop at $c exited $?: $(tr '\n' '|' <<<"$out")"
    for d in "${DAEMONS[@]}"; do
        keep_stderr "$c" "$d"
    done
    left=$(find "$(site_root "$c")/run" -mindepth 1 -maxdepth 1 \( -name '*.pid' -o -name '*.ready' \) -printf '%f ')
    [ -z "$left" ] || fail "left in $c's run/ after sitectl stop: $left"
    say "ok: $c stopped, no pid or ready file left"
done

# No crash: no core file, nothing alarming in any incarnation's stderr.
cores=$(find "$SCN_DIR" -name 'core*' -type f -printf '%P ' 2>/dev/null)
[ -z "$cores" ] || fail "core files: $cores"
for c in "${SITES[@]}"; do
    for d in "${DAEMONS[@]}"; do
        f=$SCRATCH/stderr-$c-$d
        [ -f "$f" ] || continue
        if grep -q 'Assertion\|AddressSanitizer\|LeakSanitizer\|ThreadSanitizer\|runtime error:\|Segmentation\|SUMMARY:' "$f"; then
            grep -n -m 20 -A 10 'Assertion\|AddressSanitizer\|LeakSanitizer\|ThreadSanitizer\|runtime error:\|Segmentation\|SUMMARY:' "$f" | head -n 40
            fail "$c's $d reported a crash or a sanitizer error (stderr above)"
        fi
    done
done
say "ok: no core, no assertion or sanitizer report in any daemon's stderr"
say PASS
