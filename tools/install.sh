#!/bin/sh
# install.sh - `make install`: put a built tree (B, e.g. build) under
# DESTDIR with the FHS layout of SPEC 8.
#
#   tools/install.sh B DESTDIR PREFIX
#
#   $PREFIX/bin/sitectl                  the administrator command
#   $PREFIX/libexec/sitesrv/<daemon>     the daemons (sitectl finds them
#                                        at ../libexec/sitesrv beside itself)
#   /etc/sitesrv/site.conf.example       every key with its default
#   $PREFIX/share/doc/sitesrv/           the documentation
#   $PREFIX/lib/systemd/system/          units, when systemd/ exists
#
# The installed site root is /var/lib/sitesrv (sitectl's default root).
# Its parts live at the FHS places, joined by symlinks in the root:
#
#   /var/lib/sitesrv/site.conf -> /etc/sitesrv/site.conf
#   /var/lib/sitesrv/keys      -> /etc/sitesrv/keys
#   /var/lib/sitesrv/inboxes   -> /var/spool/sitesrv
#   /var/lib/sitesrv/logs      -> /var/log/sitesrv
#   /var/lib/sitesrv/run       -> /run/sitesrv
#   /var/lib/sitesrv/db, store, backup: real directories
#
# `sitectl init --site CODE` then creates site.conf, keys/ and run/
# through the links (a dangling link is created through, never replaced).
# Nothing that exists is overwritten except the programs, the example and
# the units; site.conf and keys are never touched.
set -eu

B=${1:?usage: install.sh B DESTDIR PREFIX}
DESTDIR=${2-}
PREFIX=${3:-/usr/local}
D=$DESTDIR

install -D -m 0755 "$B/bin/sitectl" "$D$PREFIX/bin/sitectl"
for f in "$B"/libexec/sitesrv/*; do
    [ -f "$f" ] || continue
    install -D -m 0755 "$f" "$D$PREFIX/libexec/sitesrv/$(basename "$f")"
done

install -D -m 0644 config/site.conf "$D/etc/sitesrv/site.conf.example"
for f in README.md docs/*.md config/site.conf; do
    [ -f "$f" ] && install -D -m 0644 "$f" "$D$PREFIX/share/doc/sitesrv/$(basename "$f")"
done

install -d -m 0755 "$D/var/lib/sitesrv" "$D/var/spool/sitesrv" "$D/var/log/sitesrv"
link() {   # link TARGET NAME: create the symlink unless NAME already exists
    [ -e "$D/var/lib/sitesrv/$2" ] || [ -L "$D/var/lib/sitesrv/$2" ] ||
        ln -s "$1" "$D/var/lib/sitesrv/$2"
}
link /etc/sitesrv/site.conf site.conf
link /etc/sitesrv/keys      keys
link /var/spool/sitesrv     inboxes
link /var/log/sitesrv       logs
link /run/sitesrv           run

if [ -f systemd/sitesrv.tmpfiles ]; then
    install -D -m 0644 systemd/sitesrv.tmpfiles "$D$PREFIX/lib/tmpfiles.d/sitesrv.conf"
fi
if [ -d systemd ]; then
    for f in systemd/*.service systemd/*.target; do
        [ -f "$f" ] || continue
        out="$D$PREFIX/lib/systemd/system/$(basename "$f")"
        install -d -m 0755 "$(dirname "$out")"
        sed "s|@PREFIX@|$PREFIX|g" "$f" > "$out"
        chmod 0644 "$out"
    done
fi

# The units run the daemons as the system user sitesrv.  Create it only
# when installing for real (no DESTDIR) as root; a package's maintainer
# scripts do it otherwise.
if [ -z "$D" ] && [ "$(id -u)" = 0 ]; then
    getent passwd sitesrv >/dev/null ||
        useradd --system --user-group --home-dir /var/lib/sitesrv \
                --shell /usr/sbin/nologin sitesrv
    # The site is the daemons' to write: its configuration and keys too
    # (`sitectl config set` replaces site.conf beside itself).
    install -d -m 0750 -o sitesrv -g sitesrv /etc/sitesrv/keys
    # run/ now, as the tmpfiles.d entry will at every boot.
    install -d -m 0755 -o sitesrv -g sitesrv /run/sitesrv
    chown sitesrv:sitesrv /etc/sitesrv /var/lib/sitesrv /var/spool/sitesrv /var/log/sitesrv
fi

echo "installed sitesrv under ${D:-/} (PREFIX=$PREFIX)"
echo "next: sudo -u sitesrv sitectl init --site CODE; systemctl enable --now sitesrv.target"
