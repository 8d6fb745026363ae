#!/bin/bash
# 100-q319207.sh - SPEC 4.1 / Q319207, the retry storm.  Two DPs, one of
# them unreachable (its root does not exist), three child sites.  However
# many times the unreachable DP is retried, and across a SIGKILL of
# distmgr, each child site gets exactly one job in schedule.box per
# (package, source version) and 2339 says so once each; an update makes
# exactly one more job per site; the reachable DP is not copied again;
# when the missing DP root appears it is brought to the current version.
# Then max_retries: a DP that keeps failing ends failed with one 8100,
# `retry now` starts it afresh (attempts reset), `retry clear` stops it.
#
# Nothing consumes schedule.box here (no sender runs), so every job
# distmgr ever wrote is still there to count.
# shellcheck disable=SC2016  # check() evaluates its single-quoted condition
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=helpers/dm.sh
. "$(dirname "$0")/helpers/dm.sh"

SITES="B01 B02 B03"
site_init CEN
dm_short_delays
sc config set distmgr.max_retries 1000 >/dev/null || fail "sitectl config set distmgr.max_retries 1000 exited $?"
SRC=$SCRATCH/src
DP1=$SCRATCH/dp1
DP2=$SCRATCH/dp2          # does not exist until the end of part 1
mkdir -p "$DP1" "$SRC/sub"
echo "one" >"$SRC/a"
head -c 70000 /dev/urandom >"$SRC/sub/b"
echo "three" >"$SRC/sub/c"

# Child sites: only their keys are needed (no daemon runs there).
for s in $SITES; do
    r=$SCN_DIR/child-$s
    "$SITECTL" init --site "$s" --root "$r" >/dev/null || fail "sitectl init --site $s exited $?"
    mkdir -p "$r/inboxes/despoolr.box/receive"
    sc site add "$s" --address "file:$r/inboxes/despoolr.box/receive" --key "$r/keys/site.pub" >/dev/null ||
        fail "sitectl site add $s exited $?"
done
expect_eq "child sites recorded" 3 "$(db_count "SELECT count(*) FROM site WHERE relation = 'child'")"
sc dp add DP1 "$DP1" >/dev/null || fail "sitectl dp add DP1 exited $?"
sc dp add DP2 "$DP2" >/dev/null 2>&1 || fail "sitectl dp add DP2 (unreachable) exited $?"

sc start distmgr statmgr >/dev/null || fail "sitectl start exited $?"
ID=$(sc package add --name q319207 --source "$SRC") || fail "sitectl package add exited $?"
say "package $ID"

dp_installed_at() { [ "$(dp_field "$ID" "$1" state)" = installed ] && [ "$(dp_field "$ID" "$1" version)" = "$2" ]; }
attempts_at_least() {
    local a
    a=$(dp_field "$ID" DP2 attempts)
    [ "$a" != null ] && [ "$a" -ge "$1" ]
}
wait_for 30 dp_installed_at DP1 1 || fail "DP1 not installed at version 1 within 30 s: $(pkg_json "$ID" | jq -c .dps)"
say "ok: DP1 installed at version 1"

# A SIGKILL in the middle of the retries: the history is durable.
wait_for 60 attempts_at_least 4 || fail "DP2 not tried 4 times within 60 s: $(pkg_json "$ID" | jq -c .dps)"
dm_kill
before=$(dp_field "$ID" DP2 attempts)
dm_restart
say "ok: distmgr killed with SIGKILL at $before attempts of DP2 and started again"
wait_for 60 attempts_at_least $((before + 1)) || fail "DP2 not tried again after the restart"
check '[ "$(dp_field "$ID" DP2 attempts)" -gt "$before" ]' "the attempts of DP2 did not go on from $before after the restart"
wait_for 90 attempts_at_least 10 || fail "DP2 not tried 10 times within 90 s: $(pkg_json "$ID" | jq -c .dps)"
expect_eq "state of DP2" retrying "$(dp_field "$ID" DP2 state)"
expect_eq "state of DP1" installed "$(dp_field "$ID" DP1 state)"
check '[ "$(dp_field "$ID" DP2 last_error)" != null ]' "DP2 has no last_error while retrying"
say "ok: DP2 retried $(dp_field "$ID" DP2 attempts) times: $(dp_field "$ID" DP2 last_error)"
# DP1 is not touched by the retries of DP2: one start (2342) and one
# completion (2330) for it at version 1, whatever DP2 went through.
dp1_msgs() { db_count "SELECT count(*) FROM statmsg WHERE msgid = $1 AND json_extract(attrs, '\$.PackageID') = '$ID' AND json_extract(attrs, '\$.DP') = 'DP1'"; }
expect_eq "messages 2342 (distribution started) for DP1" 1 "$(dp1_msgs 2342)"
expect_eq "messages 2330 (distributed) for DP1" 1 "$(dp1_msgs 2330)"

# The jobs: one per child site, whatever the retries did.
job_sites() { grep -h '^site=' "$ROOT"/inboxes/schedule.box/*.job 2>/dev/null | sort | tr '\n' ' '; }
job_sites_v() { grep -l "^version=$1\$" "$ROOT"/inboxes/schedule.box/*.job 2>/dev/null | xargs -r grep -h '^site=' | sort | tr '\n' ' '; }
expect_eq "jobs in schedule.box" 3 "$(jobs_in_schedule)"
expect_eq "sites of the jobs" "site=B01 site=B02 site=B03 " "$(job_sites)"
expect_eq "site_job rows" 3 "$(db_count "SELECT count(*) FROM site_job WHERE package = '$ID'")"
n2339() { sc messages --id 2339 --json | jq --arg p "$ID" '[.[] | select(.attrs.PackageID == $p)] | length'; }
has_2339() { [ "$(n2339)" -ge "$1" ]; }
wait_for 20 has_2339 3 || fail "statmgr did not record three 2339 messages (has $(n2339))"
wait_for 20 msgs_drained || fail "statmgr did not drain its inbox"
expect_eq "2339 messages (sent to a child site)" 3 "$(n2339)"
say "info: $(msg_count 2328 "$ID") messages 2328 (DP copy failed) recorded so far"
# One 2328 per attempt; the kill may have taken one, and the last attempt's
# may still be on its way.
check '[ "$(msg_count 2328 "$ID")" -ge 8 ]' "fewer than 8 messages 2328 for 10 attempts on DP2"

# A new source version: exactly one more job per site.
echo "one, changed" >"$SRC/a"
echo "new" >"$SRC/sub/d"
sc package update "$ID" >/dev/null || fail "sitectl package update exited $?"
wait_for 30 dp_installed_at DP1 2 || fail "DP1 not installed at version 2 within 30 s: $(pkg_json "$ID" | jq -c .dps)"
v2_attempts() {
    [ "$(pkg_json "$ID" | jq -r '.dps[] | select(.name == "DP2") | "\(.target) \(.attempts)"' | awk '$1 == 2 && $2 >= 3 { print "y" }')" = y ]
}
wait_for 60 v2_attempts || fail "DP2 not retried 3 times for version 2: $(pkg_json "$ID" | jq -c .dps)"
expect_eq "jobs in schedule.box after the update" 6 "$(jobs_in_schedule)"
expect_eq "sites of the version 2 jobs" "site=B01 site=B02 site=B03 " "$(job_sites_v 2)"
expect_eq "site_job rows after the update" 6 "$(db_count "SELECT count(*) FROM site_job WHERE package = '$ID'")"
wait_for 20 has_2339 6 || fail "statmgr did not record six 2339 messages (has $(n2339))"
wait_for 20 msgs_drained || fail "statmgr did not drain its inbox"
expect_eq "2339 messages after the update" 6 "$(n2339)"

# The DP comes back: brought to the current version.
mkdir "$DP2"
sc package wait "$ID" --timeout 30 >/dev/null || fail "package wait after DP2 appeared exited $?: $(pkg_json "$ID" | jq -c .dps)"
expect_eq "version installed on DP2" 2 "$(dp_field "$ID" DP2 version)"
expect_eq "state of DP2" installed "$(dp_field "$ID" DP2 state)"
expect_eq "attempts of DP2 once installed" 0 "$(dp_field "$ID" DP2 attempts)"
diff -r "$SRC" "$DP2/$ID" || fail "DP2/$ID differs from the source"
diff -r "$SRC" "$DP1/$ID" || fail "DP1/$ID differs from the source"
expect_eq "jobs in schedule.box at the end of part 1" 6 "$(jobs_in_schedule)"
say "ok: part 1 (Q319207) passed"

# Part 2: max_retries.  Restarted with the new value (no reload race).
sc stop distmgr >/dev/null || fail "sitectl stop distmgr exited $?"
sc config set distmgr.max_retries 3 >/dev/null || fail "sitectl config set distmgr.max_retries 3 exited $?"
DP3=$SCRATCH/dp3
SRC2=$SCRATCH/src2
mkdir -p "$SRC2"
echo "p2" >"$SRC2/f"
sc dp add DP3 "$DP3" >/dev/null 2>&1 || fail "sitectl dp add DP3 exited $?"
ID2=$(sc package add --name maxret --source "$SRC2" --dp DP3) || fail "sitectl package add --dp DP3 exited $?"
sc start distmgr >/dev/null || fail "sitectl start distmgr exited $?"
say "package $ID2 on DP3 only, max_retries 3"

dp3() { dp_field "$ID2" DP3 "$1"; }
n8100() { msg_count 8100 "$ID2"; }
n2328() { msg_count 2328 "$ID2"; }
failed_with() { [ "$(dp3 state)" = failed ] && [ "$(n8100)" -ge "$1" ]; }
wait_for 60 failed_with 1 || fail "DP3 not failed with an 8100 within 60 s: $(pkg_json "$ID2" | jq -c .dps)"
wait_for 20 msgs_drained || fail "statmgr did not drain its inbox"
expect_eq "messages 8100 for $ID2" 1 "$(n8100)"
expect_eq "messages 2328 for $ID2 (one per attempt)" 3 "$(n2328)"
# Failed stays failed: no more attempts over several retry delays.
sleep $((3 * DM_DELAY_MS / 1000 + 1))
wait_for 20 msgs_drained || fail "statmgr did not drain its inbox"
expect_eq "state of DP3 a while later" failed "$(dp3 state)"
expect_eq "messages 2328 a while later" 3 "$(n2328)"

# retry now: a fresh start, three more attempts before failed again.
sc retry now "$ID2" DP3 >/dev/null || fail "sitectl retry now $ID2 DP3 exited $?"
more_2328() { [ "$(n2328)" -gt "$1" ]; }
wait_for 30 more_2328 3 || fail "no new attempt on DP3 after retry now"
wait_for 60 failed_with 2 || fail "DP3 not failed again (second 8100) after retry now: $(pkg_json "$ID2" | jq -c .dps)"
wait_for 20 msgs_drained || fail "statmgr did not drain its inbox"
expect_eq "messages 2328 after retry now (attempts reset: 3 + 3)" 6 "$(n2328)"
expect_eq "messages 8100 after retry now" 2 "$(n8100)"

# retry clear while it is retrying: failed, and no more attempts.
sc retry now "$ID2" DP3 >/dev/null || fail "sitectl retry now $ID2 DP3 exited $?"
wait_for 30 more_2328 6 || fail "no new attempt on DP3 after the second retry now"
retrying() { [ "$(dp3 state)" = retrying ]; }
wait_for 10 retrying || fail "DP3 not retrying after the second retry now: $(pkg_json "$ID2" | jq -c .dps)"
sc retry clear "$ID2" DP3 >/dev/null || fail "sitectl retry clear $ID2 DP3 exited $?"
expect_eq "state of DP3 after retry clear" failed "$(dp3 state)"
sleep $((DM_DELAY_MS / 1000 + 1))
wait_for 20 msgs_drained || fail "statmgr did not drain its inbox"
c1=$(n2328)
sleep $((3 * DM_DELAY_MS / 1000 + 1))
wait_for 20 msgs_drained || fail "statmgr did not drain its inbox"
c2=$(n2328)
expect_eq "messages 2328 a few retry delays after retry clear (was $c1)" "$c1" "$c2"
expect_eq "state of DP3 a few retry delays after retry clear" failed "$(dp3 state)"
expect_eq "retry rows of $ID2 after retry clear" 0 "$(db_count "SELECT count(*) FROM retry WHERE scope = 'dp' AND target LIKE '$ID2/%'")"
check 'daemon_running distmgr' "distmgr is not running at the end"
sc stop >/dev/null || fail "sitectl stop exited $?"
say PASS
