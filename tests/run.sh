#!/bin/bash
# run.sh - run every cmocka binary and every scenario test; print one line
# per binary or scenario, then the total as "N passed, N failed".
#
# Environment: B (build directory, default build), ONLY (a substring: run
# only tests whose name contains it).  Logs go to $B/test-logs/.
set -u
B=${B:-build}
SRC=$(cd "$(dirname "$0")/.." && pwd)
LOGS=$B/test-logs
mkdir -p "$LOGS"
passed=0
failed=0
skipped=0
failures=()

export SITESRV_SRCDIR=$SRC
export SITECTL=$SRC/$B/bin/sitectl
export SITESRV_LIBEXEC=$SRC/$B/libexec/sitesrv
export TOOLS=$SRC/$B/tests/tools
unset SITESRV_ROOT NOTIFY_SOCKET WATCHDOG_USEC WATCHDOG_PID
# faketime is an LD_PRELOAD library: under AddressSanitizer it comes before
# the ASan runtime, which is harmless for the clients it wraps.
export ASAN_OPTIONS=${ASAN_OPTIONS:-verify_asan_link_order=0}

for t in "$B"/tests/test_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    [ -n "${ONLY:-}" ] && [[ $name != *"$ONLY"* ]] && continue
    log=$LOGS/$name.log
    timeout 300 "$t" >"$log" 2>&1
    rc=$?
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -n1)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -n1)
    p=${p:-0}; f=${f:-0}
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1     # crashed or timed out before cmocka could count
    fi
    passed=$((passed + p)); failed=$((failed + f))
    printf 'unit      %-28s %4d passed, %d failed\n' "$name" "$p" "$f"
    [ "$f" -ne 0 ] && { failures+=("$log"); sed -n '/\[  FAILED  \]\|\[  ERROR   \]\|FAIL\|ERROR\|Sanitizer\|runtime error/p' "$log" | head -20; }
done

for s in "$SRC"/tests/scenario/[0-9]*.sh; do
    [ -f "$s" ] || continue
    name=$(basename "$s" .sh)
    [ -n "${ONLY:-}" ] && [[ $name != *"$ONLY"* ]] && continue
    log=$LOGS/$name.log
    start=$(date +%s)
    timeout 900 bash "$s" >"$log" 2>&1
    rc=$?
    secs=$(( $(date +%s) - start ))
    if [ "$rc" -eq 0 ]; then
        passed=$((passed + 1))
        printf 'scenario  %-28s pass (%ds)\n' "$name" "$secs"
    elif [ "$rc" -eq 77 ]; then
        # A scenario that cannot run here (it needs root, say) says so
        # with exit 77 and is counted apart, neither passed nor failed.
        skipped=$((skipped + 1))
        printf 'scenario  %-28s skipped: %s\n' "$name" "$(tail -n 1 "$log")"
    else
        failed=$((failed + 1))
        failures+=("$log")
        printf 'scenario  %-28s FAIL (exit %d, %ds)\n' "$name" "$rc" "$secs"
        tail -n 15 "$log" | sed 's/^/    /'
    fi
done

[ ${#failures[@]} -gt 0 ] && printf 'logs of failures: %s\n' "${failures[*]}"
if [ "$skipped" -gt 0 ]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
