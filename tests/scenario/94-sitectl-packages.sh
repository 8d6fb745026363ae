#!/bin/bash
# 94-sitectl-packages.sh - sitectl dp, site, package and retry, without a
# daemon: what sitectl writes itself (SPEC 9; design note "who writes
# what") and what it says.
#
#  - Usage errors exit 2: a missing subcommand, --name or --source, a bad
#    DP name, site code, address or package ID, an option a subcommand
#    does not take.  A bad site *code* is a usage error (2); this site's
#    own code, a key that is not Ed25519, or garbage, is a failure (1).
#  - dp add: an unreachable root is accepted with a warning and not
#    created; a duplicate name or path, a relative path: exit 1.
#  - package add prints the ID alone on stdout; IDs count up (CEN00001,
#    CEN00002...); a failed add (relative, missing or non-directory
#    source, unknown --dp) exits 1 and uses no ID.  Each add leaves a
#    request action=update in distmgr.box; dp add and site add leave
#    action=retry package=*.
#  - Every listing's --json is valid JSON; on a new site it is [].
#    package show --json has the fields of SPEC 9; a target DP without a
#    dp_state row is pending; attempts, next_retry and last_error come
#    from the retry row "ID/V/DP".
#  - retry now / retry clear change the retry rows and the DP states as
#    the design note says; package wait exits 1 on a failed DP and on its
#    timeout, 0 once every DP is installed at the version, and 0 when a
#    package being deleted is gone.
# What distmgr would record (versions, dp_state, retry rows) is written
# here with the sqlite3 shell.
# shellcheck disable=SC2016  # check() evaluates its single-quoted condition
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

command -v python3 >/dev/null || skip "python3 is needed to check the JSON"

OUT=$SCRATCH/out
ERR=$SCRATCH/err
BOX=$ROOT/inboxes/distmgr.box
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
        fail "sitectl $* exited $RC, expected $want; stdout: $(head -c 300 "$OUT"); stderr: $(head -c 300 "$ERR")"
    say "ok: sitectl $* -> $RC"
}
err_has() {   # err_has TEXT WHAT
    grep -qF -- "$1" "$ERR" || fail "$2: no '$1' on stderr: $(cat "$ERR")"
}
py() {   # py EXPR: EXPR evaluated with d = the JSON document in $OUT
    python3 -c 'import json,sys
d = json.load(open(sys.argv[1]))
print(eval(sys.argv[2]))' "$OUT" "$1" || fail "python3 could not evaluate $1 on: $(head -c 400 "$OUT")"
}
json_ok() {
    python3 -c 'import json,sys; json.load(sys.stdin)' <"$OUT" ||
        fail "not valid JSON: $(head -c 400 "$OUT")"
}
requests() {   # requests ACTION PACKAGE: requests of that kind waiting in distmgr.box
    local n=0 f
    for f in "$BOX"/*.pkg; do
        [ -f "$f" ] || continue
        grep -qx "action=$1" "$f" && grep -qxF "package=$2" "$f" && n=$((n + 1))
    done
    echo "$n"
}
sql() {   # sql SQL: write as distmgr would
    sqlite3 -cmd '.timeout 10000' "$DB" "$1" >/dev/null || fail "sqlite3 failed on: $1"
}

site_init CEN

# ---- 1. usage errors: 2, and nothing changed ----
mkdir -p "$SCRATCH/src/sub" "$SCRATCH/dp1" || fail "cannot make the source and DP"
echo one >"$SCRATCH/src/a.txt"
echo two >"$SCRATCH/src/sub/b.txt"
expect_rc 2 dp
expect_rc 2 dp frobnicate
expect_rc 2 dp add DP1
expect_rc 2 dp add 'bad name' "$SCRATCH/dp1"
expect_rc 2 dp add DP1 "$SCRATCH/dp1" --json
expect_rc 2 dp list extra
expect_rc 2 package add --source "$SCRATCH/src"
err_has "--name NAME is required" "package add without --name"
err_has "usage: sitectl" "package add without --name"
expect_rc 2 package add --name x
expect_rc 2 package add --name x --source "$SCRATCH/src" --bogus
expect_rc 2 package show cen00001
expect_rc 2 package show
expect_rc 2 package wait CEN00001 --timeout soon
expect_rc 2 retry clear
expect_rc 2 retry now CEN00001 DP1 extra
expect_rc 2 site add ch1 --address "file:$SCRATCH/x" --key /dev/null
expect_rc 2 site add CH1 --address "$SCRATCH/x" --key /dev/null
expect_rc 2 site add CH1 --key /dev/null
expect_rc 2 site add CH1 --address "file:$SCRATCH/x"
expect_eq "requests in distmgr.box after usage errors" 0 "$(inbox_files "$BOX")"

# ---- 2. empty listings ----
for what in dp site package retry; do
    expect_rc 0 "$what" list --json
    json_ok
    expect_eq "entries in '$what list --json' of a new site" 0 "$(py 'len(d)')"
    expect_rc 0 "$what" list
done
expect_rc 1 package show CEN00001
err_has "no package CEN00001" "package show of a missing package"

# ---- 3. dp add, and what it refuses ----
expect_rc 0 dp add DP1 "$SCRATCH/dp1/"
expect_eq "retry * requests after dp add" 1 "$(requests retry '*')"
expect_rc 0 dp add DP2 "$SCRATCH/offline-share"
err_has "is not reachable now" "dp add of a missing path"
err_has "distmgr will retry it" "dp add of a missing path"
check '[ ! -e "$SCRATCH/offline-share" ]' "dp add created the missing DP root"
expect_rc 1 dp add DP1 "$SCRATCH/other"
err_has "already a DP named DP1" "duplicate DP name"
expect_rc 1 dp add DP3 "$SCRATCH/dp1"
err_has "already has the path" "duplicate DP path"
expect_rc 1 dp add DP3 relative/path
expect_rc 0 dp list --json
json_ok
expect_eq "DPs listed" 2 "$(py 'len(d)')"
expect_eq "DP1 path (trailing slash dropped)" "$SCRATCH/dp1" "$(py 'd[0]["path"]')"
expect_eq "DP1 reachable" True "$(py 'd[0]["reachable"]')"
expect_eq "DP2 reachable" False "$(py 'd[1]["reachable"]')"
expect_eq "DP1 installed" 0 "$(py 'd[0]["installed"]')"
expect_rc 0 dp list
grep -q '^DP2  *no ' "$OUT" || fail "dp list does not show DP2 unreachable: $(cat "$OUT")"

# ---- 4. package add ----
expect_rc 0 package add --name "Office 2000" --source "$SCRATCH/src"
expect_eq "stdout of package add" CEN00001 "$(cat "$OUT")"
expect_eq "update requests for CEN00001" 1 "$(requests update CEN00001)"
expect_rc 1 package add --name bad --source src
err_has "absolute path" "package add with a relative source"
expect_rc 1 package add --name bad --source "$SCRATCH/missing"
expect_rc 1 package add --name bad --source "$SCRATCH/src/a.txt"
err_has "not a directory" "package add with a file as source"
expect_rc 1 package add --name bad --source "$SCRATCH/src" --dp NODP
err_has "no DP named NODP" "package add with an unknown DP"
check '[ ! -s "$OUT" ]' "a failed package add printed an ID: $(cat "$OUT")"
expect_rc 0 package add --name "DP1 only" --source "$SCRATCH/src/" --dp DP1
expect_eq "stdout of the second package add (failed adds use no ID)" CEN00002 "$(cat "$OUT")"
expect_eq "packages in the database" 2 "$(db_count "SELECT count(*) FROM package")"
expect_eq "all_dps, origin of CEN00001" "1|CEN" \
    "$(db_count "SELECT all_dps || '|' || origin FROM package WHERE id = 'CEN00001'")"
expect_eq "targets of CEN00002" DP1 "$(db_count "SELECT group_concat(dp) FROM package_dp WHERE package = 'CEN00002'")"

expect_rc 0 package list --json
json_ok
expect_eq "packages listed" "CEN00001 CEN00002" "$(py '" ".join(p["id"] for p in d)')"
expect_eq "DP counts of CEN00001, CEN00002" "0/2 0/1" \
    "$(py '" ".join("%d/%d" % (p["dps_installed"], p["dps_total"]) for p in d)')"

# ---- 5. site add ----
CH1=$SCN_DIR/ch1
"$SITECTL" init --site CH1 --parent CEN --root "$CH1" >/dev/null || fail "init of CH1 failed"
ADDR=file:$CH1/inboxes/despoolr.box/receive
n_retry=$(requests retry '*')
expect_rc 0 site add CH1 --address "$ADDR" --key "$CH1/keys/site.pub"
expect_eq "retry * requests after site add" $((n_retry + 1)) "$(requests retry '*')"
expect_rc 0 site add CH1 --address "$ADDR" --key "$CH1/keys/site.pub"
grep -q updated "$OUT" || fail "site add of a known site does not say it updated it: $(cat "$OUT")"
expect_rc 1 site add CEN --address "$ADDR" --key "$CH1/keys/site.pub"
err_has "own code" "site add of this site's code"
if ! openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out "$SCRATCH/rsa.key" 2>/dev/null ||
    ! openssl pkey -in "$SCRATCH/rsa.key" -pubout -out "$SCRATCH/rsa.pub"; then
    fail "cannot make an RSA key with openssl"
fi
expect_rc 1 site add CH2 --address "$ADDR" --key "$SCRATCH/rsa.pub"
err_has "not an Ed25519 key" "site add with an RSA key"
echo 'not a key' >"$SCRATCH/garbage.pub"
expect_rc 1 site add CH2 --address "$ADDR" --key "$SCRATCH/garbage.pub"
expect_rc 1 site add CH2 --address "$ADDR" --key "$SCRATCH/none.pub"
expect_rc 0 site list --json
json_ok
expect_eq "sites listed" 1 "$(py 'len(d)')"
expect_eq "CH1 relation" child "$(py 'd[0]["relation"]')"
expect_eq "CH1 address" "$ADDR" "$(py 'd[0]["address"]')"
want_fp=$(openssl pkey -pubin -in "$CH1/keys/site.pub" -outform DER | sha256sum | cut -d ' ' -f 1)
expect_eq "CH1 key fingerprint" "$want_fp" "$(py 'd[0]["key_sha256"]')"

# ---- 6. package show --json ----
expect_rc 0 package show CEN00001 --json
json_ok
for k in id name version state source last_error dps sites; do
    expect_eq "presence of '$k' in package show --json" True "$(py "'$k' in d")"
done
expect_eq "id, name, version, state" "CEN00001|Office 2000|0|active" \
    "$(py '"|".join(str(d[k]) for k in ("id", "name", "version", "state"))')"
expect_eq "DPs of CEN00001" "DP1:pending DP2:pending" \
    "$(py '" ".join(x["name"] + ":" + x["state"] for x in d["dps"])')"
for k in name state version attempts next_retry last_error; do
    expect_eq "presence of dps[].$k" True "$(py "all('$k' in x for x in d['dps'])")"
done
expect_eq "sites of CEN00001" "CH1:pending:0" \
    "$(py '" ".join("%s:%s:%s" % (x["code"], x["state"], x["version"]) for x in d["sites"])')"
expect_rc 0 package show CEN00002 --json
json_ok
expect_eq "DPs of CEN00002" DP1 "$(py '" ".join(x["name"] for x in d["dps"])')"
expect_rc 0 package show CEN00001
grep -q '^DP2 .*pending' "$OUT" || fail "package show does not list DP2 pending: $(cat "$OUT")"

# ---- 7. what distmgr records, shown; retry now and clear ----
rm -f "$BOX"/*.pkg
now_ms=$(scn_now_ms)
sql "UPDATE package SET version = 1 WHERE id = 'CEN00001';
     INSERT INTO dp_state (package, dp, state, version, target, updated_ms)
       VALUES ('CEN00001', 'DP1', 'installed', 1, 1, $now_ms);
     INSERT INTO dp_state (package, dp, state, version, target, last_error, updated_ms)
       VALUES ('CEN00001', 'DP2', 'retrying', 0, 1, 'unreachable', $now_ms);
     INSERT INTO retry VALUES ('dp', 'CEN00001/1/DP2', 'retrying', 3, $((now_ms + 600000)),
       'DP2: No such file or directory', $now_ms);"
expect_rc 0 package show CEN00001 --json
json_ok
expect_eq "DP2 state, attempts, error" "retrying|3|DP2: No such file or directory" \
    "$(py '"|".join(str(d["dps"][1][k]) for k in ("state", "attempts", "last_error"))')"
py 'd["dps"][1]["next_retry"]' | grep -q '^20[0-9][0-9]-.*Z$' ||
    fail "next_retry of DP2 is no ISO time: $(py 'd["dps"][1]["next_retry"]')"
expect_eq "DP1 next_retry" None "$(py 'd["dps"][0]["next_retry"]')"
expect_rc 0 package list --json
expect_eq "DP count of CEN00001" 1/2 "$(py '"%d/%d" % (d[0]["dps_installed"], d[0]["dps_total"])')"
expect_rc 0 retry list --json
json_ok
expect_eq "retry rows" "dp CEN00001/1/DP2 retrying 3" \
    "$(py '" ".join(str(d[0][k]) for k in ("scope", "target", "state", "attempts"))')"

expect_rc 1 package wait CEN00001 --timeout 1
err_has "DP2" "package wait timing out"
sql "UPDATE dp_state SET state = 'failed' WHERE dp = 'DP2';
     UPDATE retry SET state = 'failed', attempts = 100"
expect_rc 1 package wait CEN00001 --timeout 30
err_has "not installed on DP2" "package wait with a failed DP"

expect_rc 0 retry now CEN00001 DP2
grep -q '1 retry rows made due now, 1 failed DPs' "$OUT" || fail "retry now said: $(cat "$OUT")"
expect_eq "retry row after retry now" "retrying|0" \
    "$(db_count "SELECT state || '|' || attempts FROM retry WHERE target = 'CEN00001/1/DP2'")"
expect_eq "DP2 state after retry now" pending \
    "$(db_count "SELECT state FROM dp_state WHERE package = 'CEN00001' AND dp = 'DP2'")"
expect_eq "retry requests for CEN00001" 1 "$(requests retry CEN00001)"
expect_rc 0 retry clear CEN00001
grep -q '1 retry rows cleared' "$OUT" || fail "retry clear said: $(cat "$OUT")"
expect_eq "retry rows after retry clear" 0 "$(db_count "SELECT count(*) FROM retry")"
sql "UPDATE dp_state SET state = 'retrying' WHERE dp = 'DP2'"
expect_rc 0 retry clear CEN00001 DP2
expect_eq "DP2 after retry clear" "failed|retries cleared by the administrator" \
    "$(db_count "SELECT state || '|' || last_error FROM dp_state WHERE dp = 'DP2'")"
expect_eq "DP1 after retry clear" installed \
    "$(db_count "SELECT state FROM dp_state WHERE dp = 'DP1'")"
expect_rc 1 retry now CEN0000F
expect_rc 1 retry now CEN00001 NODP

# A source distmgr could not read (retry scope "source", target the ID):
# the wait goes on while it is retried and ends, exit 1, once it failed.
sql "UPDATE package SET version = 1 WHERE id = 'CEN00002';
     INSERT INTO dp_state (package, dp, state, version, target, updated_ms)
       VALUES ('CEN00002', 'DP1', 'installed', 1, 1, 0);
     INSERT INTO retry VALUES ('source', 'CEN00002', 'retrying', 2, $((now_ms + 600000)),
       'source unreadable', $now_ms);"
expect_rc 1 package wait CEN00002 --timeout 1
grep -q 'the source failed (attempt 2' "$OUT" || fail "package wait with a source retrying said: $(cat "$OUT")"
err_has "timed out" "package wait with a source retrying"
sql "UPDATE retry SET state = 'failed' WHERE scope = 'source'"
expect_rc 1 package wait CEN00002 --timeout 30
err_has "no new version could be made" "package wait with a failed source"
expect_rc 0 retry now CEN00002
expect_eq "source retry after retry now" "retrying|0" \
    "$(db_count "SELECT state || '|' || attempts FROM retry WHERE scope = 'source'")"
expect_rc 0 retry clear CEN00002
expect_eq "source retry rows after retry clear" 0 "$(db_count "SELECT count(*) FROM retry WHERE scope = 'source'")"

# ---- 8. wait succeeds once every DP is installed at the version ----
rm -f "$BOX"/*.pkg
sql "UPDATE dp_state SET state = 'installed', version = 1, last_error = '' WHERE dp = 'DP2'"
expect_rc 0 package wait CEN00001 --timeout 30
grep -q 'CEN00001 v1 is installed on every DP' "$OUT" || fail "package wait said: $(cat "$OUT")"
# A request not yet taken by distmgr means a new version is coming.
expect_rc 0 package update CEN00001
expect_eq "update requests for CEN00001" 1 "$(requests update CEN00001)"
expect_rc 1 package wait CEN00001 --timeout 1
grep -q 'waiting for distmgr' "$OUT" || fail "package wait with a request waiting said: $(cat "$OUT")"

# ---- 9. delete, update refused, dp remove ----
expect_rc 1 package update CEN000FF
expect_rc 0 package delete CEN00001
expect_eq "delete requests for CEN00001" 1 "$(requests delete CEN00001)"
expect_eq "state of CEN00001" deleting "$(db_count "SELECT state FROM package WHERE id = 'CEN00001'")"
expect_rc 1 package update CEN00001
err_has "being deleted" "update of a package being deleted"
# distmgr removes the row while sitectl waits (the sleep only makes the
# removal fall during the wait; the wait itself is on the database).
(sleep 1; sqlite3 -cmd '.timeout 10000' "$DB" "DELETE FROM package WHERE id = 'CEN00001'") &
bg_track $!
expect_rc 0 package wait CEN00001 --timeout 30
grep -q 'being deleted' "$OUT" || fail "package wait did not show the deletion: $(cat "$OUT")"
grep -q 'CEN00001 is deleted' "$OUT" || fail "package wait of a deleted package said: $(cat "$OUT")"
expect_eq "package rows of CEN00001" 0 "$(db_count "SELECT count(*) FROM package WHERE id = 'CEN00001'")"
# Gone before the wait: an ID this site handed out, so deleted.
expect_rc 0 package wait CEN00001 --timeout 30
expect_rc 1 package wait CEN00009 --timeout 1
err_has "no package CEN00009" "package wait of an ID never handed out"

sql "INSERT INTO dp_state (package, dp, state, version, target, updated_ms)
       VALUES ('CEN00002', 'DP2', 'installed', 1, 1, 0);
     INSERT INTO retry VALUES ('dp', 'CEN00002/1/DP2', 'retrying', 1, 0, 'x', 0);
     INSERT INTO retry VALUES ('dp', 'CEN00002/1/DP1', 'retrying', 1, 0, 'x', 0);"
expect_rc 0 dp remove DP2
grep -q 'left in' "$OUT" || fail "dp remove does not say the content stays: $(cat "$OUT")"
expect_eq "DP2 rows left" "0 0 0" \
    "$(db_count "SELECT (SELECT count(*) FROM dp WHERE name = 'DP2') || ' ' ||
                        (SELECT count(*) FROM dp_state WHERE dp = 'DP2') || ' ' ||
                        (SELECT count(*) FROM retry WHERE target LIKE '%/DP2')")"
expect_eq "DP1 retry rows kept" 1 "$(db_count "SELECT count(*) FROM retry WHERE target = 'CEN00002/1/DP1'")"
expect_rc 1 dp remove DP2
expect_rc 0 site remove CH1
expect_rc 1 site remove CH1

# ---- 10. the usage names the new commands; send is still to come ----
expect_rc 0 --help
for u in "dp add NAME PATH" "package add --name NAME --source DIR" "package wait ID" \
    "retry list [--json]" "site add CODE --address ADDR --key PUBFILE"; do
    grep -qF -- "$u" "$OUT" || fail "sitectl --help does not show '$u'"
done
expect_rc 0 send list
say "ok: dp, site, package and retry behave as SPEC 9 says"
