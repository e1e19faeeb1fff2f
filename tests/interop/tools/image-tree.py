#!/usr/bin/env python3
"""Prints an image's file tree from a docker-archive (docker save, berth
save): its layers applied in order (whiteouts and opaque directories
honoured), one line per path: type, mode, owner, size, sha256 of content
or link target. Times are left out: they differ between any two builds."""
import hashlib
import json
import sys
import tarfile

def main(path):
    tree = {}
    with tarfile.open(path) as archive:
        manifest = json.load(archive.extractfile("manifest.json"))
        for layer in manifest[0]["Layers"]:
            with tarfile.open(fileobj=archive.extractfile(layer)) as tar:
                for m in tar.getmembers():
                    name = m.name.lstrip("./").rstrip("/")
                    if not name:
                        continue
                    parent, _, base = name.rpartition("/")
                    if base == ".wh..wh..opq":
                        prefix = parent + "/"
                        for p in [p for p in tree if p.startswith(prefix)]:
                            del tree[p]
                        continue
                    if base.startswith(".wh."):
                        gone = (parent + "/" if parent else "") + base[4:]
                        for p in [p for p in tree if p == gone or p.startswith(gone + "/")]:
                            del tree[p]
                        continue
                    if m.isdir():
                        kind, detail = "d", ""
                    elif m.issym():
                        kind, detail = "l", m.linkname
                    elif m.islnk():
                        kind, detail = "h", m.linkname.lstrip("./")
                    elif m.isfile():
                        data = tar.extractfile(m).read()
                        kind, detail = "f", "%d %s" % (len(data), hashlib.sha256(data).hexdigest()[:16])
                    else:
                        kind, detail = "o", ""
                    tree[name] = (kind, m.mode & 0o7777, m.uid, m.gid, detail)
    for name in sorted(tree):
        kind, mode, uid, gid, detail = tree[name]
        if kind == "h":
            # A hard link is the file it names.
            target = tree.get(detail)
            if target:
                kind, mode, uid, gid, detail = target
        print("%s %s %o %d:%d %s" % (name, kind, mode, uid, gid, detail))

main(sys.argv[1])
