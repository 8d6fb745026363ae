#!/bin/bash
# 92-messages-utf8.sh - text that is not UTF-8 never reaches a listing:
# statmgr quarantines a status message file whose insertion string is not
# valid UTF-8 (sm_parse refuses it; the same file with valid UTF-8 is
# ingested, so the refusal is about the text and not the checksum), and
# `sitectl messages --json` stays valid JSON in valid UTF-8 even for rows
# that an older statmgr stored with such bytes, or with an attrs column
# that is not a JSON object of strings.
#
# Checked with the tools of tools/deps.sh only: iconv for UTF-8, the
# sqlite3 shell's json_valid and json_extract for the JSON.
# shellcheck disable=SC2016  # check() evaluates its single-quoted condition
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

site_init TST
sc start statmgr || fail "sitectl start statmgr exited $?"
BOX=$ROOT/inboxes/statmgr.box/statmsgs

# Two copies of one valid message, each with its insertion string
# replaced and the checksum line ("end <sha256 of what precedes>")
# written again: one with a byte that is not UTF-8, one with UTF-8.
GEN=$SCRATCH/gen
mkdir -p "$GEN/.tmp"
out=$("$TOOLS/smgen" --box "$GEN" --count 2 --istr-prefix utf8case --nosync) ||
    fail "smgen exited $?: $out"
mapfile -t F < <(find "$GEN" -maxdepth 1 -type f -name '*.svf' | sort)
expect_eq "messages made" 2 "${#F[@]}"
reseal() {   # reseal FILE SED-SCRIPT: edit the fields, then the end line
    local body=$SCRATCH/body
    head -n -1 "$1" | sed "$2" >"$body" || fail "cannot edit $1"
    printf 'end %s\n' "$(sha256sum "$body" | cut -d ' ' -f 1)" >>"$body"
    mv "$body" "$1"
}
reseal "${F[0]}" 's/^istr=utf8case-[0-9]*$/istr=utf8bad-caf\xe9/'
reseal "${F[1]}" 's/^istr=utf8case-[0-9]*$/istr=utf8good-caf\xc3\xa9/'
grep -aq 'utf8bad' "${F[0]}" || fail "the insertion string of ${F[0]} was not replaced"
grep -aq 'utf8good' "${F[1]}" || fail "the insertion string of ${F[1]} was not replaced"
# One rename each and nothing else: mv may look at a file again after
# moving it, and statmgr may have taken it by then.
python3 -c 'import os, sys
for f in sys.argv[2:]:
    os.rename(f, os.path.join(sys.argv[1], os.path.basename(f)))' "$BOX" "${F[@]}" ||
    fail "cannot move the files into $BOX"

good_in() { [ "$(db_count "SELECT count(*) FROM statmsg WHERE istr LIKE '%utf8good%'")" -eq 1 ]; }
bad_out() { [ "$(corrupt_files "$BOX")" -eq 1 ]; }
wait_for 20 good_in || fail "the message with valid UTF-8 was not ingested within 20 s"
wait_for 20 bad_out || fail "the message with a Latin-1 byte was not quarantined within 20 s"
expect_eq "rows with the bad insertion string" 0 \
    "$(db_count "SELECT count(*) FROM statmsg WHERE istr LIKE '%utf8bad%'")"
grep -aqr 'not valid UTF-8' "$BOX/corrupt/" --include='*.reason' ||
    fail "the .reason of the quarantined file does not say 'not valid UTF-8': $(cat "$BOX"/corrupt/*.reason)"
say "ok: invalid UTF-8 quarantined with its reason, valid UTF-8 ingested"

# Rows as an older statmgr could have stored them.
sql="INSERT INTO statmsg(uid, msgid, severity, type, component, site, machine, pid, tid,
       time_ms, oserr, istr, attrs, received_ms, via) VALUES
     (randomblob(16), 8691, 'I', 'milestone', CAST(X'636f6dff' AS TEXT), 'TST',
      CAST(X'68ff' AS TEXT), 1, 1, 1795305000123, 0,
      CAST(X'5b2261ff62225d' AS TEXT), CAST(X'7b2250617468223a222fff227d' AS TEXT),
      1795305000123, 'cap'),
     (randomblob(16), 8692, 'W', 'milestone', 'legacy', 'TST', 'h2', 1, 1,
      1795305000124, 0, '[\"x\"]', '{\"a\":\"b\"}, {\"c\":\"d\"}', 1795305000124, 'cap')"
sqlite3 -cmd '.timeout 10000' "$ROOT/db/site.db" "$sql" || fail "cannot insert the legacy rows"

J=$SCRATCH/messages.json
sc messages --json >"$J" 2>"$SCRATCH/messages.err" || fail "sitectl messages --json exited $?"
iconv -f UTF-8 -t UTF-8 "$J" >/dev/null 2>&1 || fail "messages --json is not valid UTF-8"
jq_() {   # jq_ PATH: one value of the output, by the sqlite3 shell
    sqlite3 :memory: "SELECT json_extract(CAST(readfile('$J') AS TEXT), '$1')"
}
expect_eq "json_valid of messages --json" 1 \
    "$(sqlite3 :memory: "SELECT json_valid(CAST(readfile('$J') AS TEXT))")"
n=$(sqlite3 :memory: "SELECT json_array_length(CAST(readfile('$J') AS TEXT))")
idx=-1
for i in $(seq 0 $((n - 1))); do
    [ "$(jq_ "\$[$i].id")" = 8691 ] && idx=$i
done
[ "$idx" -ge 0 ] || fail "message 8691 is not in messages --json"
R=$'\xef\xbf\xbd'   # U+FFFD in UTF-8
expect_eq "istr of the legacy row" "a${R}b" "$(jq_ "\$[$idx].istr[0]")"
expect_eq "attribute Path of the legacy row" "/${R}" "$(jq_ "\$[$idx].attrs.Path")"
expect_eq "component of the legacy row" "com${R}" "$(jq_ "\$[$idx].component")"
expect_eq "machine of the legacy row" "h${R}" "$(jq_ "\$[$idx].machine")"
grep -q 'attributes are not a JSON object of strings' "$SCRATCH/messages.err" ||
    fail "no warning for the attrs that are not an object: $(cat "$SCRATCH/messages.err")"
expect_eq "good message's insertion string" "utf8good-café" \
    "$(sqlite3 :memory: "SELECT json_extract(value, '\$.istr[0]') FROM json_each(CAST(readfile('$J') AS TEXT)) WHERE json_extract(value, '\$.istr[0]') LIKE 'utf8good%'")"
say "ok: messages --json is valid JSON in UTF-8; bad bytes shown as U+FFFD, bad attrs as {}"
