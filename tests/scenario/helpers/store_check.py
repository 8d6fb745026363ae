#!/usr/bin/env python3
"""store_check.py - look into a site's content store the way the daemons
lay it out (lib/manifest.h): objects under 64 KiB are rows of
store/small.db, larger ones are files store/objects/<aa>/<sha256>.

  store_check.py ROOT check HASH...   one line per hash: "ok HASH",
                                      "missing HASH" or "bad HASH" (content
                                      does not hash to its name); exit 0
  store_check.py ROOT count           objects in the store (rows + files)
"""
import hashlib
import os
import sqlite3
import sys


def small_db(root):
    path = os.path.join(root, "store", "small.db")
    if not os.path.exists(path):
        return None
    return sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=10)


def content(root, db, h):
    if db is not None:
        row = db.execute("SELECT data FROM object WHERE sha = ?", (bytes.fromhex(h),)).fetchone()
        if row is not None:
            return row[0]
    path = os.path.join(root, "store", "objects", h[:2], h)
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def main():
    root, cmd = sys.argv[1], sys.argv[2]
    db = small_db(root)
    if cmd == "check":
        for h in sys.argv[3:]:
            data = content(root, db, h)
            if data is None:
                print("missing", h)
            elif hashlib.sha256(data).hexdigest() != h:
                print("bad", h)
            else:
                print("ok", h)
    elif cmd == "count":
        n = db.execute("SELECT count(*) FROM object").fetchone()[0] if db is not None else 0
        for _, _, files in os.walk(os.path.join(root, "store", "objects")):
            n += len(files)
        print(n)
    else:
        sys.exit("unknown command " + cmd)


main()
