#!/bin/bash
# 114-backup-cli.sh - sitectl backup now, backup list and restore, without
# the sitebkup daemon: what sitebkup would write is written here by hand.
#
#  - backup list on a new site: "(no backups in ROOT/backup)" and []
#    (exit 0); also when backup.destination names a directory that does
#    not exist.
#  - backup now drops a request INBOX/sitebkup.box/<SITE>-<32 hex>.bkt, a
#    record "backupreq" version 1 with requested (ISO, now) and by=sitectl
#    whose end line is the SHA-256 of what precedes it; it prints
#    "backup requested (NAME)".
#  - backup now --wait --timeout 2 with no daemon: exit 1, "sitebkup is
#    not running: the request waits for it" once, "no result within 2 s
#    (the request stays queued)", and the request stays in the inbox.
#  - backup now --wait reads the result results/<base>.res (here written
#    by hand, as sitebkup would): "backup PATH succeeded" exit 0, or
#    "backup failed: ERROR" exit 1; the result is removed after reading.
#  - A backup directory made by hand (files and a MANIFEST, docs/formats.md
#    "Backups"): backup list shows it complete with its files and bytes;
#    restore into a non-empty directory is refused (exit 1), into a new
#    one succeeds and says what comes next; a backup with an altered file
#    is refused naming the file.
#  - restore of a path that does not exist: exit 1.  Usage errors: exit 2.
#
# NEEDS THE DAEMON (the lead extends this when sitebkup exists): a real
# backup by `backup now --wait` with sitebkup running (replacing the
# hand-written results of part 4), the backup it made in `backup list`,
# and a restore of it.
# shellcheck disable=SC2016  # check() evaluates its single-quoted condition
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

command -v python3 >/dev/null || skip "python3 is needed to read and write records and JSON"

OUT=$SCRATCH/out
ERR=$SCRATCH/err
BOX=$ROOT/inboxes/sitebkup.box

run() {   # run ARGS...: sitectl --root $ROOT ARGS; stdout $OUT, stderr $ERR, status $RC
    timeout 120 "$SITECTL" --root "$ROOT" "$@" >"$OUT" 2>"$ERR"
    RC=$?
}
run_bare() {   # run_bare ARGS...: sitectl ARGS (no --root added)
    timeout 120 "$SITECTL" "$@" >"$OUT" 2>"$ERR"
    RC=$?
}
expect_rc() {   # expect_rc WANT ARGS...
    local want=$1
    shift
    run "$@"
    [ "$RC" = "$want" ] ||
        fail "sitectl $* exited $RC, expected $want; stdout: $(head -c 600 "$OUT"); stderr: $(head -c 600 "$ERR")"
    say "ok: sitectl $* -> $RC"
}
expect_rc_bare() {
    local want=$1
    shift
    run_bare "$@"
    [ "$RC" = "$want" ] ||
        fail "sitectl $* exited $RC, expected $want; stdout: $(head -c 600 "$OUT"); stderr: $(head -c 600 "$ERR")"
    say "ok: sitectl $* -> $RC"
}
py() {   # py EXPR: EXPR evaluated with d = the JSON document in $OUT
    python3 -c 'import json,sys
d = json.load(open(sys.argv[1]))
print(eval(sys.argv[2]))' "$OUT" "$1" || fail "python3 could not evaluate $1 on: $(head -c 600 "$OUT")"
}
has() {   # has FILE TEXT WHAT: FILE holds the fixed string TEXT
    grep -qF -- "$2" "$1" || fail "$3: no '$2' in: $(head -c 600 "$1")"
}
requests() {   # the request files waiting in sitebkup.box
    find "$BOX" -mindepth 1 -maxdepth 1 -type f -name '*.bkt' -printf '%f\n' | sort
}
# record FILE KIND FIELD=VALUE...: a record with its checksum, written
# under a dot name and renamed, as a writer would.
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

site_init TST

# ---- 1. usage ----
expect_rc 2 backup
expect_rc 2 backup later
expect_rc 2 backup list extra
expect_rc 2 backup list --wait
expect_rc 2 backup now --json
expect_rc 2 backup now --timeout 2          # --timeout without --wait
expect_rc 2 backup now --wait --timeout soon
expect_rc 2 backup now --bogus
expect_rc_bare 2 restore --root "$SCRATCH/new"
expect_rc_bare 2 restore "$SCRATCH/b" "$SCRATCH/c" --root "$SCRATCH/new"
expect_rc_bare 2 restore "$SCRATCH/b" --root "$SCRATCH/new" --bogus
# restore takes its new root from --root only, never from the environment.
SITESRV_ROOT=$SCRATCH/new expect_rc_bare 2 restore "$SCRATCH/b"
has "$ERR" "restore needs --root DIR" "restore without --root"
run_bare --help
has "$OUT" "backup now [--wait] [--timeout SECONDS] | backup list [--json]" "the help"
has "$OUT" "restore BACKUP --root DIR" "the help"
[ -z "$(requests)" ] || fail "a usage error dropped a request: $(requests)"

# ---- 2. backup list with no backups ----
expect_rc 0 backup list
expect_eq "backup list of a new site" "(no backups in $ROOT/backup)" "$(cat "$OUT")"
expect_rc 0 backup list --json
expect_eq "backup list --json of a new site" "[]" "$(py 'json.dumps(d)')"
expect_rc 0 config set backup.destination "$SCRATCH/nowhere/backups"
expect_rc 0 backup list --json
expect_eq "backups in a destination that does not exist" "[]" "$(py 'json.dumps(d)')"
expect_rc 0 config set backup.destination ""
expect_rc 1 --root "$SCRATCH/nosite" backup list   # not a site root

# ---- 3. backup now drops a request ----
expect_rc 0 backup now
name=$(sed -n 's/^backup requested (\(.*\))$/\1/p' "$OUT")
[ -n "$name" ] || fail "backup now printed no 'backup requested (NAME)': $(cat "$OUT")"
[[ $name =~ ^TST-[0-9a-f]{32}\.bkt$ ]] || fail "request name $name is not TST-<32 hex>.bkt"
expect_eq "requests waiting" "$name" "$(requests)"
python3 - "$BOX/$name" <<'EOF' || fail "the request $name is not a backupreq record: $(cat "$BOX/$name")"
import calendar, hashlib, re, sys, time
data = open(sys.argv[1], "rb").read()
body, sep, end = data.rpartition(b"end ")
assert sep and re.fullmatch(rb"[0-9a-f]{64}\n", end), "no end line"
assert hashlib.sha256(body).hexdigest().encode() == end[:64], "the checksum differs"
lines = body.decode().split("\n")
assert lines[0] == "sitesrv backupreq 1", lines[0]
fields = dict(l.split("=", 1) for l in lines[1:] if l)
assert fields.get("by") == "sitectl", fields
m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.\d{3}Z", fields.get("requested", ""))
assert m, fields
t = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
assert abs(t - time.time()) < 120, "requested is not now: %s" % fields["requested"]
EOF
say "ok: $name is a backupreq record with requested and by=sitectl"

# ---- 4. backup now --wait ----
# Without a daemon, the wait ends at its timeout and the request stays.
expect_rc 1 backup now --wait --timeout 2
has "$ERR" "no result within 2 s (the request stays queued)" "the timeout"
has "$ERR" "sitebkup is not running: the request waits for it" "the wait"
expect_eq "'not running' notices" 1 "$(grep -c 'sitebkup is not running' "$ERR")"
expect_eq "requests waiting after the timeout" 2 "$(requests | wc -l)"

# The result, as sitebkup would write it (NEEDS THE DAEMON for the real
# thing): read, printed, removed.
# wait_answer STATUS PATH ERROR: backup now --wait in the background, a
# result written for its request, then its exit status and output.
wait_answer() {
    local before new
    before=$(requests)
    timeout 120 "$SITECTL" --root "$ROOT" backup now --wait --timeout 60 >"$OUT" 2>"$ERR" &
    local pid=$!
    bg_track "$pid"
    newreq() {
        new=$(comm -13 <(printf '%s\n' "$before") <(requests))
        [ -n "$new" ]
    }
    wait_for 30 newreq || fail "backup now --wait dropped no request"
    mkdir -p "$BOX/results"
    record "$BOX/results/${new%.bkt}.res" backupres "status=$1" "path=$2" "error=$3" \
        "finished=$(python3 -c 'import time; print(time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()))')"
    wait "$pid"
    RC=$?
    [ ! -e "$BOX/results/${new%.bkt}.res" ] || fail "the result ${new%.bkt}.res was not removed"
}
wait_answer succeeded "$SCRATCH/backups/TST-20260101T000000Z" ""
expect_eq "exit status of a wait for a backup that succeeded" 0 "$RC"
has "$OUT" "backup $SCRATCH/backups/TST-20260101T000000Z succeeded" "a wait that succeeded"
wait_answer failed "" "the destination is full"
expect_eq "exit status of a wait for a backup that failed" 1 "$RC"
has "$ERR" "backup failed: the destination is full" "a wait that failed"
# (The requests stay: sitebkup, not sitectl, takes them.)
rm -f "$BOX"/*.bkt

# ---- 5. a backup made by hand, listed and restored ----
# The layout lib/backup.h describes: files under their root-relative
# paths, and a MANIFEST record "backup" 1 with a file= line each.
DEST=$SCRATCH/backups
BK=$DEST/TST-20260101T000000Z
mkdir -p "$BK/keys"
cp "$ROOT/site.conf" "$BK/site.conf" || fail "cannot copy site.conf"
cp -p "$ROOT"/keys/* "$BK/keys/" || fail "cannot copy the keys"
python3 - "$BK" "$ROOT" <<'EOF' || fail "cannot write the MANIFEST"
import hashlib, os, sys
bk, root = sys.argv[1], sys.argv[2]
files = []
for d, _, names in os.walk(bk):
    for n in sorted(names):
        p = os.path.join(d, n)
        files.append(os.path.relpath(p, bk))
body = "sitesrv backup 1\nsite=TST\ncreated=2026-01-01T00:00:00.000Z\nroot=%s\ntasks=config keys\n" % root
for rel in sorted(files):
    p = os.path.join(bk, rel)
    data = open(p, "rb").read()
    body += "file=%s %d %o %s\n" % (hashlib.sha256(data).hexdigest(), len(data),
                                    os.stat(p).st_mode & 0o7777, rel)
data = body.encode() + b"end " + hashlib.sha256(body.encode()).hexdigest().encode() + b"\n"
open(os.path.join(bk, "MANIFEST"), "wb").write(data)
EOF
nfiles=$(find "$BK" -type f ! -name MANIFEST | wc -l)
nbytes=$(find "$BK" -type f ! -name MANIFEST -printf '%s\n' | awk '{s += $1} END {print s}')
expect_rc 0 config set backup.destination "$DEST"
expect_rc 0 backup list --json
expect_eq "backups listed" 1 "$(py 'len(d)')"
expect_eq "the backup listed" "$BK complete TST-20260101T000000Z TST $nfiles $nbytes" \
    "$(py '" ".join(str(d[0][k]) for k in ("path", "status", "name", "site", "files", "bytes"))')"
expect_eq "its time" "2026-01-01T00:00:00" "$(py 'd[0]["time"][:19]')"
expect_rc 0 backup list
has "$OUT" "TST-20260101T000000Z" "the text listing"

# A restore needs an empty (or new) root.
mkdir -p "$SCRATCH/full" && echo x >"$SCRATCH/full/something"
expect_rc_bare 1 restore "$BK" --root "$SCRATCH/full"
has "$ERR" "not empty" "the refusal of a non-empty root"
[ "$(ls "$SCRATCH/full")" = something ] || fail "a refused restore wrote into $SCRATCH/full"
# A relative backup path, the new root given before the command.
(cd "$DEST" && timeout 120 "$SITECTL" --root "$SCRATCH/restored" restore TST-20260101T000000Z \
    >"$OUT" 2>"$ERR") || fail "restore into a new root exited $?: $(cat "$OUT" "$ERR")"
has "$OUT" "sitectl --root $SCRATCH/restored start" "the next step"
has "$OUT" "site TST, $nfiles files, $nbytes bytes" "what was restored"
[ -f "$SCRATCH/restored/keys/site.pub" ] || fail "the restore brought no keys/site.pub"
timeout 120 "$SITECTL" --root "$SCRATCH/restored" backup list >/dev/null ||
    fail "the restored root does not load as a site"
say "ok: restored into $SCRATCH/restored"

# An altered file: refused, naming the file, nothing written.
echo "# altered" >>"$BK/site.conf"
expect_rc_bare 1 restore "$BK" --root "$SCRATCH/again"
has "$ERR" "site.conf" "the refusal of a damaged backup"
[ ! -e "$SCRATCH/again" ] || [ -z "$(ls -A "$SCRATCH/again")" ] ||
    fail "a refused restore wrote into $SCRATCH/again"

# ---- 6. restore of nothing ----
expect_rc_bare 1 restore "$SCRATCH/no-such-backup" --root "$SCRATCH/new"
has "$ERR" "no such backup" "a restore of a missing path"
[ ! -e "$SCRATCH/new" ] || fail "a refused restore made $SCRATCH/new"
echo x >"$SCRATCH/plainfile"
expect_rc_bare 1 restore "$SCRATCH/plainfile" --root "$SCRATCH/new"

say "PASS"
