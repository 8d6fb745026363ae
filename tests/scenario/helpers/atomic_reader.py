#!/usr/bin/env python3
"""atomic_reader.py - the two halves of 102-atomic-visibility.

  atomic_reader.py gen SRC K
      Make SRC the source tree of version K: every file says K (each line
      of it is "vK", and the number of lines grows with K, so that every
      version changes every file's size), and the set of names depends on
      K (only-even / only-odd, sub/k-K, d3/ when K % 3 == 0).

  atomic_reader.py read PKGDIR STOPFILE PROGRESS SUMMARY
      Walk PKGDIR again and again, the way a client reading a DP does it:
      open the package directory once as a descriptor, then everything
      below it relative to descriptors (os.open with dir_fd, os.listdir
      of an fd), reading every file.  Each walk is judged:
        ok       every file says the same K and the names are exactly
                 version K's
        mixed    anything else (two versions, a torn file, names of one
                 version with content of another)
        enoent   a file or directory vanished during the walk (the tree
                 this walk held was removed under it): counted apart
        absent   PKGDIR does not exist (before the first install)
      After each ok walk PROGRESS holds the highest K seen (written with a
      rename, so a reader of it never sees half a number).  When STOPFILE
      exists, SUMMARY gets a JSON object of the counts and the reader
      exits 0.
"""
import json
import os
import shutil
import sys
import time

NFILES = 20
NSUB = 5


def content(k, lines):
    return ("v%d\n" % k) * lines


def expected(k):
    """Every path (directories with a trailing '/') of version k."""
    names = {"f%02d" % i for i in range(NFILES)}
    names.add("big")
    names.add("only-even" if k % 2 == 0 else "only-odd")
    names.add("sub/")
    names |= {"sub/s%d" % i for i in range(NSUB)}
    names.add("sub/deep/")
    names |= {"sub/deep/t%d" % i for i in range(3)}
    names.add("sub/k-%d" % k)
    if k % 3 == 0:
        names |= {"d3/", "d3/x"}
    return names


def gen(src, k):
    os.makedirs(os.path.join(src, "sub", "deep"), exist_ok=True)
    for name in os.listdir(os.path.join(src, "sub")):
        if name.startswith("k-"):
            os.unlink(os.path.join(src, "sub", name))
    for name in ("only-even", "only-odd"):
        try:
            os.unlink(os.path.join(src, name))
        except FileNotFoundError:
            pass
    if k % 3 != 0:
        shutil.rmtree(os.path.join(src, "d3"), ignore_errors=True)
    for path in sorted(expected(k)):
        full = os.path.join(src, path)
        if path.endswith("/"):
            os.makedirs(full, exist_ok=True)
            continue
        lines = 40000 + k if path == "big" else k + 1
        with open(full, "w") as f:
            f.write(content(k, lines))


class Vanished(Exception):
    pass


def walk_fd(dfd, prefix, names, versions):
    for name in os.listdir(dfd):
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            if (st.st_mode & 0o170000) == 0o040000:
                names.add(prefix + name + "/")
                sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=dfd)
                try:
                    walk_fd(sub, prefix + name + "/", names, versions)
                finally:
                    os.close(sub)
                continue
            names.add(prefix + name)
            fd = os.open(name, os.O_RDONLY, dir_fd=dfd)
            try:
                chunks = []
                while True:
                    b = os.read(fd, 1 << 20)
                    if not b:
                        break
                    chunks.append(b)
            finally:
                os.close(fd)
        except FileNotFoundError:
            raise Vanished(prefix + name)
        data = b"".join(chunks).decode("ascii", "replace")
        lines = set(data.split("\n")[:-1]) if data.endswith("\n") else {"torn:" + data[-20:]}
        if len(lines) == 1:
            line = lines.pop()
            versions.add(int(line[1:]) if line.startswith("v") and line[1:].isdigit() else line)
        else:
            versions.add("torn %s: %d distinct lines" % (prefix + name, len(lines)))


def read(pkgdir, stopfile, progress, summary):
    counts = {"walks": 0, "ok": 0, "mixed": 0, "enoent": 0, "absent": 0, "backwards": 0}
    seen = set()
    examples = []
    high = 0
    while not os.path.exists(stopfile):
        try:
            root = os.open(pkgdir, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            counts["absent"] += 1
            time.sleep(0.001)
            continue
        names, versions = set(), set()
        try:
            walk_fd(root, "", names, versions)
        except Vanished as e:
            counts["walks"] += 1
            counts["enoent"] += 1
            if len(examples) < 10:
                examples.append("vanished during a walk: %s" % e)
            continue
        finally:
            os.close(root)
        counts["walks"] += 1
        k = next(iter(versions)) if len(versions) == 1 else None
        if isinstance(k, int) and names == expected(k):
            counts["ok"] += 1
            seen.add(k)
            if k < high:
                counts["backwards"] += 1
                if len(examples) < 10:
                    examples.append("version %d seen after %d" % (k, high))
            if k > high:
                high = k
                tmp = progress + ".tmp"
                with open(tmp, "w") as f:
                    f.write("%d\n" % k)
                os.rename(tmp, progress)
        else:
            counts["mixed"] += 1
            if len(examples) < 10:
                vs = sorted(str(v) for v in versions)
                extra = sorted(names - expected(k)) if isinstance(k, int) else []
                missing = sorted(expected(k) - names) if isinstance(k, int) else []
                examples.append("mixed walk: versions %s, extra names %s, missing %s"
                                % (vs, extra[:5], missing[:5]))
    counts["versions_seen"] = sorted(seen)
    counts["examples"] = examples
    with open(summary + ".tmp", "w") as f:
        json.dump(counts, f)
    os.rename(summary + ".tmp", summary)


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "gen":
        gen(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) == 6 and sys.argv[1] == "read":
        read(*sys.argv[2:6])
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
