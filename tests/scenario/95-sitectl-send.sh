#!/bin/bash
# 95-sitectl-send.sh - sitectl send list and the child-site states of
# package show, without a daemon: the files and rows the scheduler, the
# sender and statmgr would write are written here by hand.
#
#  - send list on a new site: "(nothing to send)" and [] (exit 0).
#  - send list lists every send request in schedule.box/requests (state
#    "waiting" while its next try is in the future, else "pending"),
#    every job not yet scheduled (schedule.box/*.job and work/*.job,
#    state "queued"; a job whose request R.srq exists is listed once, as
#    the request), and an unreadable request with its error (state
#    "unreadable", exit 0).  Each item carries its site's throttle, the
#    retry row of scope "send" whose target is the hop's code; the text
#    listing has one header per site, also for a throttled site with
#    nothing waiting.
#  - package show: a child site is "sending" while a request or job for
#    the package's version to it waits, "sent" once our sender's message
#    8200 (PackageID, Version, Site) is recorded, "installed" with the
#    version it reported once its despooler's message 8300 (site = the
#    child, PackageID, Version >= ours) reached our statmsg table; an
#    older version installed, or another package, leaves it "pending".
#    A statmsg row whose attrs is not JSON changes nothing.
# shellcheck disable=SC2016  # check() evaluates its single-quoted condition
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

command -v python3 >/dev/null || skip "python3 is needed to write records and check the JSON"
command -v sqlite3 >/dev/null || skip "the sqlite3 shell is needed to write what the daemons would"

OUT=$SCRATCH/out
ERR=$SCRATCH/err
SBOX=$ROOT/inboxes/schedule.box
DB=$ROOT/db/site.db

run() {   # run ARGS...: sitectl --root $ROOT ARGS; stdout $OUT, stderr $ERR, status $RC
    timeout 120 "$SITECTL" --root "$ROOT" "$@" >"$OUT" 2>"$ERR"
    RC=$?
}
expect_rc() {   # expect_rc WANT ARGS...
    local want=$1
    shift
    run "$@"
    [ "$RC" = "$want" ] ||
        fail "sitectl $* exited $RC, expected $want; stdout: $(head -c 600 "$OUT"); stderr: $(head -c 300 "$ERR")"
    say "ok: sitectl $* -> $RC"
}
py() {   # py EXPR: EXPR evaluated with d = the JSON document in $OUT
    python3 -c 'import json,sys
d = json.load(open(sys.argv[1]))
print(eval(sys.argv[2]))' "$OUT" "$1" || fail "python3 could not evaluate $1 on: $(head -c 600 "$OUT")"
}
json_ok() {
    python3 -c 'import json,sys; json.load(sys.stdin)' <"$OUT" ||
        fail "not valid JSON: $(head -c 600 "$OUT")"
}
out_has() {   # out_has REGEX WHAT
    grep -qE -- "$1" "$OUT" || fail "$2: no line matching '$1' in: $(cat "$OUT")"
}
sql() {
    sqlite3 -cmd '.timeout 10000' "$DB" "$1" >/dev/null || fail "sqlite3 failed on: $1"
}
# record FILE KIND FIELD=VALUE...: a record (docs/formats.md) with its
# checksum, written under a dot name and renamed, as a writer would.
record() {
    python3 - "$@" <<'EOF' || fail "cannot write the record $1"
import hashlib, os, sys
path, kind, fields = sys.argv[1], sys.argv[2], sys.argv[3:]
body = "sitesrv %s 1\n" % kind + "".join(f + "\n" for f in fields)
data = body.encode() + b"end " + hashlib.sha256(body.encode()).hexdigest().encode() + b"\n"
tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".new")
with open(tmp, "wb") as f:
    f.write(data)
os.rename(tmp, path)
EOF
}
iso() {   # iso MS: an ISO 8601 UTC time
    python3 -c 'import sys,time; ms=int(sys.argv[1]); print(time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + ".%03dZ" % (ms % 1000))' "$1"
}
hex32() {
    od -An -N16 -tx1 /dev/urandom | tr -d ' \n'
}
# statmsg MSGID SITE COMPONENT ATTRS: a row as statmgr's ingest writes it.
statmsg() {
    sql "INSERT INTO statmsg (uid, msgid, severity, type, component, site, machine, pid,
           tid, time_ms, oserr, istr, attrs, received_ms, via)
         VALUES (randomblob(16), $1, 'I', 'milestone', '$3', '$2', 'host', 1, 1,
           $(scn_now_ms), 0, '[]', '$4', $(scn_now_ms), '$2')"
}

site_init CEN

# ---- 1. nothing to send ----
expect_rc 0 send list
expect_eq "send list of a new site" "(nothing to send)" "$(cat "$OUT")"
expect_rc 0 send list --json
json_ok
expect_eq "entries in send list --json of a new site" 0 "$(py 'len(d)')"
expect_rc 2 send list extra
expect_rc 2 send list --name x
expect_rc 2 send

# ---- 2. three child sites and a package at version 3 ----
for code in CH1 CH2 CH3; do
    croot=$SCN_DIR/$code
    "$SITECTL" init --site $code --parent CEN --root "$croot" >/dev/null || fail "init of $code failed"
    expect_rc 0 site add $code --address "file:$croot/inboxes/despoolr.box/receive" \
        --key "$croot/keys/site.pub"
done
mkdir -p "$SCRATCH/src" && echo one >"$SCRATCH/src/a.txt"
expect_rc 0 package add --name "Office 2000" --source "$SCRATCH/src"
expect_eq "package ID" CEN00001 "$(cat "$OUT")"
sql "UPDATE package SET version = 3 WHERE id = 'CEN00001'"
expect_rc 0 package show CEN00001 --json
json_ok
expect_eq "site states with nothing sent" "CH1:pending CH2:pending CH3:pending" \
    "$(py '" ".join(x["code"] + ":" + x["state"] for x in d["sites"])')"

# ---- 3. what the scheduler and the sender would have written ----
now=$(scn_now_ms)
created=$(iso $((now - 60000)))
next=$(iso $((now + 600000)))
R1=CEN-$(hex32)         # package to CH1, half sent, waiting for its next try
R2=CEN-$(hex32)         # status bundle to CH2, due now
R3=CEN-$(hex32)         # package job to CH2, not yet scheduled
R4=CEN-$(hex32)         # a job already scheduled: its request is R4.srq
mkdir -p "$ROOT/store/out"
head -c 300 /dev/zero >"$ROOT/store/out/CEN00001-3.ins"
head -c 5000 /dev/zero >"$ROOT/store/out/CEN00001-3.pck"
record "$SBOX/requests/$R1.srq" sendreq type=package dest=CH1 hop=CH1 priority=high \
    package=CEN00001 version=3 "xfer=CEN-$(hex32)" size=1000 offset=450 pck_done=0 \
    attempts=2 "next_try=$next" "last_error=connection refused" "created=$created"
record "$SBOX/requests/$R2.srq" sendreq type=status dest=CH2 hop=CH2 priority=low \
    "xfer=CEN-$(hex32)" size=77 offset=0 pck_done=0 attempts=0 next_try= last_error= \
    "created=$created"
record "$SBOX/$R3.job" job site=CH2 priority=medium package=CEN00001 version=3 \
    instruction=store/out/CEN00001-3.ins package_file=store/out/CEN00001-3.pck \
    "created=$created"
record "$SBOX/work/$R4.job" job site=CH3 priority=low package=CEN00002 version=1 \
    instruction=store/out/CEN00002-1.ins package_file=store/out/CEN00002-1.pck \
    "created=$created"
record "$SBOX/requests/$R4.srq" sendreq type=package dest=CH3 hop=CH3 priority=low \
    package=CEN00002 version=1 "xfer=CEN-$(hex32)" size=10 offset=0 pck_done=0 \
    attempts=0 next_try= last_error= "created=$created"
# A job for a grandchild: listed under the child the route table names
# (when this release has the table), else under its destination.
R5=CEN-$(hex32)
record "$SBOX/$R5.job" job site=GCH priority=high package=CEN00001 version=3 \
    instruction=store/out/CEN00001-3.ins package_file=store/out/CEN00001-3.pck \
    "created=$(iso $((now - 30000)))"
if [ "$(db_count "SELECT count(*) FROM sqlite_master WHERE name = 'route'")" = 1 ]; then
    sql "INSERT INTO route (site, via, updated_ms) VALUES ('GCH', 'CH1', $now)"
    R5_SITE=CH1 R5_FOR=' \(for GCH\)'
else
    R5_SITE=GCH R5_FOR=
fi
# A request a kill left half written: listed with its error, not fatal.
printf 'sitesrv sendreq 1\ntype=package\n' >"$SBOX/requests/CEN-$(hex32).srq"
sql "INSERT INTO retry VALUES ('send', 'CH1', 'retrying', 4, $((now + 300000)),
       'CH1: No such file or directory', $now);
     INSERT INTO retry VALUES ('send', 'CH9', 'retrying', 1, $((now + 300000)), 'gone', $now);"

expect_rc 0 send list --json
json_ok
expect_eq "items listed" 6 "$(py 'len(d)')"
for k in site dest request type package version priority state attempts next_retry \
    last_error size offset site_attempts site_next_retry; do
    expect_eq "presence of '$k' in every item" True "$(py "all('$k' in x for x in d)")"
done
item() {   # item R EXPR: EXPR with x = the item of request R
    py "[$2 for x in d if x['request'] == '$1'][0]"
}
expect_eq "R1: site dest type package version priority state attempts error size offset" \
    "CH1 CH1 package CEN00001 3 high waiting 2 connection refused 1000 450" \
    "$(item "$R1" '" ".join(str(x[k]) for k in ("site", "dest", "type", "package", "version", "priority", "state", "attempts", "last_error", "size", "offset"))')"
item "$R1" 'x["next_retry"]' | grep -q '^20[0-9][0-9]-.*Z$' ||
    fail "next_retry of R1 is no ISO time: $(item "$R1" 'x["next_retry"]')"
expect_eq "R1: site throttle" "4 CH1: No such file or directory" \
    "$(item "$R1" '"%s %s" % (x["site_attempts"], x["site_last_error"])')"
item "$R1" 'x["site_next_retry"]' | grep -q '^20[0-9][0-9]-.*Z$' ||
    fail "site_next_retry of R1 is no ISO time: $(item "$R1" 'x["site_next_retry"]')"
expect_eq "R2: site type package version priority state next_retry last_error site_attempts site_next_retry" \
    "CH2 status None None low pending None None 0 None" \
    "$(item "$R2" '" ".join(str(x[k]) for k in ("site", "type", "package", "version", "priority", "state", "next_retry", "last_error", "site_attempts", "site_next_retry"))')"
expect_eq "R3 (a job): site dest state package version priority attempts size offset" \
    "CH2 CH2 queued CEN00001 3 medium 0 5300 0" \
    "$(item "$R3" '" ".join(str(x[k]) for k in ("site", "dest", "state", "package", "version", "priority", "attempts", "size", "offset"))')"
expect_eq "R4 (job and request) listed once, as the request" "1 pending" \
    "$(py "' '.join([str(len([x for x in d if x['request'] == '$R4'])), [x['state'] for x in d if x['request'] == '$R4'][0]])")"
expect_eq "R5 (a job for a grandchild): site dest state" "$R5_SITE GCH queued" \
    "$(item "$R5" '" ".join(str(x[k]) for k in ("site", "dest", "state"))')"
expect_eq "unreadable items" 1 "$(py 'len([x for x in d if x["state"] == "unreadable"])')"
py '[x["last_error"] for x in d if x["state"] == "unreadable"][0]' | grep -q 'truncated' ||
    fail "the unreadable request's error: $(py '[x["last_error"] for x in d if x["state"] == "unreadable"]')"

expect_rc 0 send list
out_has '^site CH1: attempts 4, next retry in [0-9]+m, last error: CH1: No such file' "CH1 header"
out_has '^site CH2: attempts 0, next retry -, last error: -$' "CH2 header"
out_has '^site CH9: attempts 1, .*gone$' "header of a throttled site with nothing waiting"
out_has "^  $R1 +package +waiting +CEN00001-3 +high +45% .* +2 +in [0-9]+m +connection refused$" "R1 line"
out_has "^  $R2 +status +pending +- +low " "R2 line"
out_has "^  $R3 +package +queued +CEN00001-3 +medium " "R3 line"
out_has "unreadable: .*truncated" "the unreadable request"
out_has "^  $R5 +package +queued +CEN00001-3 +high .* -$R5_FOR\$" "R5 line"
# R1 (high, and older than R5) first under CH1: the line after its header.
expect_eq "line after CH1's header" "$R1" \
    "$(awk '/^site CH1:/ { getline; print $1 }' "$OUT")"

# ---- 4. package show: sending, sent, installed ----
expect_rc 0 package show CEN00001 --json
json_ok
expect_eq "site states with a request (CH1) and a job (CH2) waiting" \
    "CH1:sending CH2:sending CH3:pending" \
    "$(py '" ".join(x["code"] + ":" + x["state"] for x in d["sites"])')"

statmsg 8200 CEN sender '{"PackageID":"CEN00001","Version":"3","Site":"CH2"}'
statmsg 8200 CEN sender '{"PackageID":"CEN00001","Version":"2","Site":"CH3"}'
statmsg 8300 CH1 despool '{"PackageID":"CEN00001","Version":"4","Site":"CEN"}'
statmsg 8300 CH3 despool '{"PackageID":"CEN00001","Version":"2","Site":"CEN"}'
statmsg 8300 CH3 despool '{"PackageID":"CEN00002","Version":"9","Site":"CEN"}'
statmsg 8300 CH3 despool 'not json'
expect_rc 0 package show CEN00001 --json
json_ok
expect_eq "site states and versions" "CH1:installed:4 CH2:sent:0 CH3:pending:0" \
    "$(py '" ".join("%s:%s:%s" % (x["code"], x["state"], x["version"]) for x in d["sites"])')"
expect_rc 0 package show CEN00001
out_has '^CH1 +installed +4 ' "CH1 line of package show"
out_has '^CH2 +sent ' "CH2 line of package show"
out_has '^CH3 +pending ' "CH3 line of package show"

# Installed at our version from a message replicated up (via = the child).
statmsg 8300 CH3 despool '{"PackageID":"CEN00001","Version":"3","Site":"CEN"}'
expect_rc 0 package show CEN00001 --json
expect_eq "CH3 after its 8300 for version 3" "installed:3" \
    "$(py '"%s:%s" % (d["sites"][2]["state"], d["sites"][2]["version"])')"
say "ok: send list and the site states of package show"

# send now: the named site's throttle is due now, the other one's stays.
expect_rc 0 send now CH1
out_has '^1 site throttle made due now' "send now CH1"
later=$(db_count "SELECT count(*) FROM retry WHERE scope = 'send' AND next_ms > $(scn_now_ms)")
expect_eq "throttles still in the future after send now CH1" 1 "$later"
expect_rc 2 send now 'not a site'
expect_rc 0 send now
out_has '^2 site throttles made due now' "send now (every site)"
say "ok: send now"
