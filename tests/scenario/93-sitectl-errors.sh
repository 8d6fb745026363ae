#!/bin/bash
# 93-sitectl-errors.sh - sitectl tells a monitoring script the truth.
#
#  - A root without site.conf: `messages` and `status` (text and --json)
#    exit 1, print nothing on stdout, and name the root on stderr.
#  - An initialised root with no rows yet: `messages` is an empty list,
#    exit 0; `status --json` has the site code and no "error".
#  - A site.conf with a bad line: `messages` exits 1 naming the line;
#    `status` exits 1, and its --json report has "site": null and an
#    "error" naming site.conf.
#  - `client send-status --cap DIR` where DIR is reached but is no client
#    access point (no statmsgs.box in it, a statmsgs.box that is not a
#    directory, DIR a file) exits 1 and queues nothing; a DIR that is
#    missing still means "unreachable": queued, exit 0, delivered later.
#  - `inbox` counts files claimed in work/ and left in .tmp/ ("claimed",
#    "tmp"), skipping dot files and directories, beside the other keys.
# No daemon runs here: every check is on sitectl alone.
# shellcheck disable=SC2016  # check() evaluates its single-quoted condition
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

OUT=$SCRATCH/out
ERR=$SCRATCH/err

# run ARGS...: sitectl ARGS (no --root of ours), stdout in $OUT, stderr
# in $ERR, exit status in $RC.
run() {
    timeout 120 "$SITECTL" "$@" >"$OUT" 2>"$ERR"
    RC=$?
}
json() {   # json PATH: one value of $OUT by the sqlite3 shell's JSON functions
    sqlite3 :memory: "SELECT json_extract(CAST(readfile('$OUT') AS TEXT), '$1')"
}
json_type() {   # json_type PATH: its JSON type, "" when absent
    sqlite3 :memory: "SELECT json_type(CAST(readfile('$OUT') AS TEXT), '$1')"
}
json_ok() {
    [ "$(sqlite3 :memory: "SELECT json_valid(CAST(readfile('$OUT') AS TEXT))")" = 1 ] ||
        fail "not valid JSON: $(head -c 300 "$OUT")"
}
err_has() {   # err_has TEXT WHAT
    grep -qF -- "$1" "$ERR" || fail "$2: no '$1' on stderr: $(cat "$ERR")"
}

# ---- 1. a root that is no site ----
NOROOT=$SCN_DIR/nonexist
for args in "messages" "messages --json" "status" "status --json"; do
    # shellcheck disable=SC2086  # the words of $args are the arguments
    run --root "$NOROOT" $args
    expect_eq "exit status of '$args' on a missing root" 1 "$RC"
    check '[ ! -s "$OUT" ]' "'$args' on a missing root printed on stdout: $(head -c 200 "$OUT")"
    err_has "$NOROOT is not a site root" "'$args' on a missing root"
    err_has "site.conf" "'$args' on a missing root"
done
say "ok: messages and status fail on a missing root, nothing on stdout"

site_init TST

# ---- 2. an initialised site without rows: empty, exit 0 ----
run --root "$ROOT" messages
expect_eq "exit status of messages on a new site" 0 "$RC"
check '[ ! -s "$OUT" ]' "messages on a new site printed: $(head -c 200 "$OUT")"
run --root "$ROOT" messages --json
expect_eq "exit status of messages --json on a new site" 0 "$RC"
json_ok
expect_eq "messages in --json on a new site" 0 \
    "$(sqlite3 :memory: "SELECT json_array_length(CAST(readfile('$OUT') AS TEXT))")"
run --root "$ROOT" status --json
expect_eq "exit status of status --json on a new site" 0 "$RC"
json_ok
expect_eq "site of status --json" TST "$(json '$.site')"
expect_eq "type of status --json error (none)" "" "$(json_type '$.error')"
say "ok: a new site has no messages, exit 0, and a status"

# ---- 3. a site.conf that does not load ----
cp "$ROOT/site.conf" "$SCRATCH/site.conf.good" || fail "cannot save site.conf"
printf 'this is not a setting\n' >>"$ROOT/site.conf"
line=$(wc -l <"$ROOT/site.conf")
for args in "messages" "messages --json"; do
    # shellcheck disable=SC2086
    run --root "$ROOT" $args
    expect_eq "exit status of '$args' with a bad site.conf" 1 "$RC"
    check '[ ! -s "$OUT" ]' "'$args' with a bad site.conf printed: $(head -c 200 "$OUT")"
    err_has "$ROOT" "'$args' with a bad site.conf"
    err_has "site.conf:$line:" "'$args' with a bad site.conf"
done
run --root "$ROOT" status
expect_eq "exit status of status with a bad site.conf" 1 "$RC"
err_has "site.conf:$line:" "status with a bad site.conf"
grep -q "not initialised" "$OUT" && fail "status still says 'not initialised'"
run --root "$ROOT" status --json
expect_eq "exit status of status --json with a bad site.conf" 1 "$RC"
json_ok
expect_eq "type of status --json site" null "$(json_type '$.site')"
json '$.error' | grep -qF "site.conf:$line:" || fail "status --json error: $(json '$.error')"
cp "$SCRATCH/site.conf.good" "$ROOT/site.conf" || fail "cannot restore site.conf"
run --root "$ROOT" status
expect_eq "exit status of status once site.conf is repaired" 0 "$RC"
say "ok: a bad site.conf fails messages and status, naming the line"

# ---- 4. client send-status: a wrong --cap is said plainly, loses nothing ----
CAP=$ROOT/inboxes/cap
BOX=$CAP/statmsgs.box
QUEUE=$SCRATCH/queue
send() {   # send CAP
    run client send-status --cap "$1" --queue "$QUEUE" --id 8600 --istr errors-test
}
queued() { inbox_files "$QUEUE"; }
mkdir -p "$SCRATCH/boxfile" || fail "cannot make boxfile"
: >"$SCRATCH/boxfile/statmsgs.box" || fail "cannot make boxfile/statmsgs.box"
: >"$SCRATCH/plainfile" || fail "cannot make plainfile"
n=0
for cap in "$ROOT/inboxes" "$SCRATCH/boxfile" "$SCRATCH/plainfile"; do
    send "$cap"
    n=$((n + 1))
    expect_eq "exit status of send-status --cap $cap" 0 "$RC"
    err_has "$cap is not a client access point" "send-status --cap $cap"
    expect_eq "messages queued after send-status --cap $cap" "$n" "$(queued)"
done
send "$ROOT/inboxes"
n=$((n + 1))
err_has "no statmsgs.box in it" "send-status --cap $ROOT/inboxes"
expect_eq "files in the drop box" 0 "$(inbox_files "$BOX")"
send "$CAP"
expect_eq "exit status of send-status to the real --cap" 0 "$RC"
expect_eq "files queued after delivery" 0 "$(queued)"
expect_eq "files in the drop box" $((n + 1)) "$(inbox_files "$BOX")"
rm -f "$BOX"/*.svf
say "ok: a --cap that is no access point is named, and its messages are kept and delivered later"

send "$SCN_DIR/offline-share"
expect_eq "exit status of send-status to a missing --cap" 0 "$RC"
err_has "queued locally" "send-status to a missing --cap"
expect_eq "files queued for a missing --cap" 1 "$(queued)"
send "$CAP"
expect_eq "exit status of send-status to the real --cap" 0 "$RC"
expect_eq "files queued after delivery" 0 "$(queued)"
expect_eq "files in the drop box" 2 "$(inbox_files "$BOX")"
say "ok: a missing --cap is still an outage: queued, then delivered"

# ---- 5. inbox: claimed and tmp ----
IB=$ROOT/inboxes/statmgr.box/statmsgs
for f in work/c1.svf work/c2.svf work/.hidden .tmp/t1.svf .tmp/.dot w1.svf; do
    : >"$IB/$f" || fail "cannot make $IB/$f"
done
mkdir "$IB/.tmp/subdir" || fail "cannot make $IB/.tmp/subdir"
run --root "$ROOT" inbox --json
expect_eq "exit status of inbox --json" 0 "$RC"
json_ok
n=$(sqlite3 :memory: "SELECT json_array_length(CAST(readfile('$OUT') AS TEXT))")
idx=-1
for i in $(seq 0 $((n - 1))); do
    [ "$(json "\$[$i].inbox")" = statmgr.box/statmsgs ] && idx=$i
done
[ "$idx" -ge 0 ] || fail "statmgr.box/statmsgs is not in inbox --json"
expect_eq "claimed in statmgr.box/statmsgs" 2 "$(json "\$[$idx].claimed")"
expect_eq "tmp in statmgr.box/statmsgs" 1 "$(json "\$[$idx].tmp")"
expect_eq "files in statmgr.box/statmsgs" 1 "$(json "\$[$idx].files")"
expect_eq "corrupt in statmgr.box/statmsgs" 0 "$(json "\$[$idx].corrupt")"
expect_eq "reader of statmgr.box/statmsgs" statmgr "$(json "\$[$idx].reader")"
expect_eq "path of statmgr.box/statmsgs" "$IB" "$(json "\$[$idx].path")"
expect_eq "type of oldest_s" integer "$(json_type "\$[$idx].oldest_s")"
for i in $(seq 0 $((n - 1))); do
    [ "$i" -eq "$idx" ] && continue
    if [ "$(json "\$[$i].claimed")" != 0 ] || [ "$(json "\$[$i].tmp")" != 0 ]; then
        fail "inbox $(json "\$[$i].inbox") shows claimed $(json "\$[$i].claimed"), tmp $(json "\$[$i].tmp")"
    fi
done
run --root "$ROOT" inbox
expect_eq "exit status of inbox" 0 "$RC"
head -n 1 "$OUT" | grep -q 'claimed.*tmp' || fail "no claimed and tmp columns: $(head -n 1 "$OUT")"
row=$(grep '^statmgr.box/statmsgs ' "$OUT")
# inbox reader files oldest claimed tmp corrupt path
read -r _ _ f _ cl tm co _ <<<"$row"
expect_eq "files, claimed, tmp, corrupt in the table" "1 2 1 0" "$f $cl $tm $co"
run --root "$ROOT" status --json
json_ok
expect_eq "claimed in status --json" 2 "$(json "\$.inboxes[$idx].claimed")"
rm -rf "${IB:?}/work/c1.svf" "$IB/work/c2.svf" "$IB/work/.hidden" "$IB/.tmp/t1.svf" \
    "$IB/.tmp/.dot" "$IB/.tmp/subdir" "$IB/w1.svf"
say "ok: inbox shows files claimed in work/ and left in .tmp/"
