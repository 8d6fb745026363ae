#!/bin/bash
# 90-client-queue.sh - `sitectl client send-status` with a local client
# queue that holds more unreadable files than one page of its listing (70
# files of another user, mode 0600, beside 5 good ones): the call ends,
# delivers the 5 and the new message, leaves the 70 queued, and says so.
# Once they are readable, the next call delivers all 70, across pages.
# Then the options: a --component, --machine, --attr name or --istr that
# sm_parse would refuse is a usage error (exit 2) naming the rule, and
# nothing is sent.
#
# Unreadable for whom: as root, sitectl runs as nobody (setpriv) and the
# files belong to root; as any other user, the files are mode 0000.
# shellcheck disable=SC2016  # check() evaluates its single-quoted condition
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

site_init TST
CAP=$ROOT/inboxes/cap
BOX=$CAP/statmsgs.box
QUEUE=$SCRATCH/queue
mkdir -p "$QUEUE/.tmp" || fail "cannot make $QUEUE"

out=$("$TOOLS/smgen" --box "$QUEUE" --count 70 --istr-prefix unreadable --nosync) ||
    fail "smgen (70 into the queue) exited $?: $out"
mapfile -t BAD < <(find "$QUEUE" -maxdepth 1 -type f -name '*.svf')
expect_eq "files queued to be unreadable" 70 "${#BAD[@]}"
out=$("$TOOLS/smgen" --box "$QUEUE" --count 5 --istr-prefix readable --nosync) ||
    fail "smgen (5 into the queue) exited $?: $out"

if [ "$(id -u)" -eq 0 ]; then
    command -v setpriv >/dev/null || fail "running as root needs setpriv to drop to nobody"
    # nobody must reach and write the queue and the box, and own no file
    # it is meant not to read.
    chmod 755 "$SCN_DIR" "$SCRATCH" "$ROOT" "$ROOT/inboxes" || fail "chmod for nobody"
    chown -R 65534:65534 "$QUEUE" "$CAP" || fail "chown for nobody"
    chown 0:0 "${BAD[@]}" || fail "cannot give the 70 to root"
    chmod 600 "${BAD[@]}" || fail "cannot make the 70 unreadable"
    as_client() { setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"; }
else
    chmod 000 "${BAD[@]}" || fail "cannot make the 70 unreadable"
    as_client() { "$@"; }
fi

send() {   # send ISTR: one message by the client, its queue, 60 s at most
    as_client timeout 60 "$SITECTL" client send-status --cap "$CAP" --queue "$QUEUE" \
        --id 8600 --istr "$1"
}

say "send-status with 70 unreadable and 5 good files queued"
out=$(send new-one 2>&1)
rc=$?
[ "$rc" -eq 124 ] && fail "send-status did not end within 60 s (a flush that loops): $(printf '%s' "$out" | tail -n 3)"
expect_eq "exit status of send-status" 0 "$rc"
printf '%s\n' "$out" | grep -q "delivered 5 queued messages" ||
    fail "no 'delivered 5 queued messages' in: $(printf '%s' "$out" | tail -n 5)"
printf '%s\n' "$out" | grep -q "delivered status message 8600" ||
    fail "the new message was not delivered: $(printf '%s' "$out" | tail -n 5)"
printf '%s\n' "$out" | grep -q "70 queued messages could not be delivered" ||
    fail "no warning that 70 stay queued: $(printf '%s' "$out" | tail -n 5)"
expect_eq "files in the box" 6 "$(inbox_files "$BOX")"
expect_eq "files still queued" 70 "$(inbox_files "$QUEUE")"
expect_eq "files left claimed in the queue's work/" 0 "$(inbox_files "$QUEUE/work")"
expect_eq "files quarantined from the queue" 0 "$(corrupt_files "$QUEUE")"
say "ok: ended, delivered 5 + the new one, 70 stay queued"

# Readable again: the next call delivers all 70 although a page is 64.
chmod 644 "${BAD[@]}" || fail "chmod 644"
out=$(send second 2>&1) || fail "second send-status exited $?: $out"
printf '%s\n' "$out" | grep -q "delivered 70 queued messages" ||
    fail "no 'delivered 70 queued messages' in: $(printf '%s' "$out" | tail -n 5)"
expect_eq "files still queued" 0 "$(inbox_files "$QUEUE")"
expect_eq "files in the box" 77 "$(inbox_files "$BOX")"
say "ok: all 70 delivered once readable"

# Options that sm_parse would refuse: usage errors that spell the rule.
usage_case() {   # usage_case WANT-IN-STDERR ARGS...
    local want=$1 err
    shift
    err=$(sc client send-status --cap "$CAP" --queue "$QUEUE" --id 8600 "$@" 2>&1 >/dev/null)
    local rc=$?
    expect_eq "exit status of send-status $*" 2 "$rc"
    printf '%s\n' "$err" | grep -qF -- "$want" || fail "send-status $*: no '$want' in: $err"
}
usage_case "letter, digit, space" --component 'a/b'
usage_case "letter, digit, space" --component 'café'
usage_case "printable ASCII" --machine 'hôte'
usage_case "printable ASCII" --machine "$(printf 'pc\t17')"
usage_case "name 1 to 31 characters" --attr 'a b=c'
usage_case "name 1 to 31 characters" --attr '=c'
usage_case "not valid UTF-8" --attr "Path=$(printf '/srv/\xff')"
usage_case "not valid UTF-8" --istr ok --istr "$(printf 'caf\xe9')"
expect_eq "files in the box after the refused calls" 77 "$(inbox_files "$BOX")"
expect_eq "files queued after the refused calls" 0 "$(inbox_files "$QUEUE")"
say "ok: bad --component, --machine, --attr and --istr are usage errors naming the rule"
