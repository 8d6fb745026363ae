#!/bin/sh
# deps.sh - install the Debian packages sitesrv needs to build, test and
# benchmark, when they are missing.  As root it runs apt-get; otherwise it
# prints the command to run and fails.
PKGS="gcc make pkg-config libuv1-dev libsqlite3-dev libssl-dev libcmocka-dev \
libzstd-dev sqlite3 faketime rsync util-linux procps"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
        missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
    echo "deps: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq $missing >/dev/null || {
        echo "deps: apt-get install failed" >&2; exit 1; }
else
    echo "deps: missing Debian packages:$missing" >&2
    echo "deps: run as root:  apt-get install -y$missing" >&2
    exit 1
fi
