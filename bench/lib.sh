# shellcheck shell=bash
# bench/lib.sh - what the benchmark scripts share (sourced by bench/run.sh
# and bench/distmgr.sh): messages and the results file, medians and
# times, and stopping every daemon a script started.
#
# The caller sets RES (results file), SITECTL, and the arrays ROOTS (site
# roots it made) and PIDS (daemon pids it saw), and `failed=0`.

note() { printf '%s\n' "$*" >&2; }
# shellcheck disable=SC2034  # failed is the caller's exit status
fail() { note "bench: $*"; failed=1; }
result() { printf '%s=%s\n' "$1" "$2" >>"$RES"; }

median() {
    [ "$#" -eq 0 ] && { echo nan; return; }
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
        END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2];
              else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
now() { printf '%s\n' "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
mb() { awk -v k="$1" 'BEGIN { if (k == "" || k == "nan") print "?"; else printf "%.1f", k / 1024 }'; }

# Stop daemon $1 in every root of ROOTS, then whatever pid of PIDS still
# runs that daemon: by TERM, then KILL after 10 s.  Nothing this script
# started is left running, whatever happened to it.
stop_started() {
    local d=$1 r p _
    for r in "${ROOTS[@]}"; do
        [ -d "$r" ] && timeout 30 "$SITECTL" --root "$r" stop "$d" >/dev/null 2>&1
    done
    for p in "${PIDS[@]}"; do
        kill -0 "$p" 2>/dev/null || continue
        [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$d" ] || continue
        kill -TERM "$p" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
    done
}

# Figures: ratios and rates of "nan"-able numbers, seconds for display,
# goals, and the CMTrace time= fields of log lines.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan" || b <= 0) print "nan"; else printf "%.2f", a / b }'; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { if (s == "nan" || s <= 0) print "nan"; else printf "%.0f", n / s }'; }
# shellcheck disable=SC2317  # le and ge are called through met and yes_if
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "nan" && a <= b) }'; }
# shellcheck disable=SC2317
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "nan" && a >= b) }'; }
secs() { awk -v s="$1" 'BEGIN { if (s == "nan" || s == "") print "n/a"; else if (s < 10 && s > -10) printf "%.2f", s; else printf "%.1f", s }'; }
list() { local x out=; for x in "$@"; do out="$out${out:+ }$(secs "$x")"; done; echo "${out:-n/a}"; }
words() { local out="$*"; echo "${out:-n/a}"; }
met() { if "$@"; then echo "goal met"; else echo "goal NOT met"; fi; }
yes_if() { if "$@"; then echo yes; else echo no; fi; }
log_times() { sed -n 's/.*time="\([0-9][0-9]\):\([0-9][0-9]\):\([0-9.]*\)+000".*/\1 \2 \3/p'; }
