#!/usr/bin/env python3
"""Concurrent pushers for the scale tests: WORKERS threads each push
IMAGES small images (a base layer every image shares, a layer and a config
of their own, the same bytes on every run) to http://HOST, then every image
whose manifest PUT was acknowledged is read back and verified. A push
refused because garbage collection took a blob between its upload and the
manifest is pushed again (up to five times). Exits non-zero if an
acknowledged image is missing or does not verify, or if an image never got
through.

    push_load.py HOST WORKERS IMAGES seed   # to load/wN, then delete every manifest
    push_load.py HOST WORKERS IMAGES push   # again: even workers to load/wN, odd to fresh/wN

`seed` leaves garbage for a collection to take while `push` sends the same
blobs again: into the repositories that still link them, and into others.
"""
import hashlib
import http.client
import json
import sys
import threading

HOST, WORKERS, IMAGES, MODE = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
BASE = hashlib.sha256(b"shared base").digest() * 4096  # 128 KiB, the same everywhere
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def request(method, path, body=None, headers=None):
    conn = http.client.HTTPConnection(HOST, timeout=120)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        res = conn.getresponse()
        return res.status, dict((k.lower(), v) for k, v in res.getheaders()), res.read()
    finally:
        conn.close()


def push_blob(repo, data):
    d = digest(data)
    status, _, _ = request("HEAD", f"/v2/{repo}/blobs/{d}")
    if status == 200:
        return d
    status, headers, _ = request("POST", f"/v2/{repo}/blobs/uploads/")
    if status != 202:
        raise RuntimeError(f"POST upload: {status}")
    loc = headers["location"]
    if loc.startswith("http"):
        loc = "/" + loc.split("/", 3)[3]
    sep = "&" if "?" in loc else "?"
    status, _, body = request("PUT", f"{loc}{sep}digest={d}", data,
                              {"Content-Type": "application/octet-stream"})
    if status != 201:
        raise RuntimeError(f"PUT blob: {status} {body[:200]!r}")
    return d


acknowledged = []
refused = []
lock = threading.Lock()


def own_layer(n, i):
    seed = hashlib.sha256(f"layer {n}/{i}".encode()).digest()
    return b"".join(hashlib.sha256(seed + bytes([k])).digest() for k in range(64))


def worker(n):
    repo = f"load/w{n}" if MODE == "seed" or n % 2 == 0 else f"fresh/w{n}"
    for i in range(IMAGES):
        own = own_layer(n, i)
        config = json.dumps({"architecture": "amd64", "os": "linux", "worker": n, "image": i,
                             "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        for attempt in range(5):
            try:
                blobs = [(push_blob(repo, b), len(b)) for b in (config, BASE, own)]
            except (RuntimeError, OSError) as e:
                with lock:
                    refused.append(f"{repo} image {i}: {e}")
                continue
            (cd, cs), layers = blobs[0], blobs[1:]
            manifest = json.dumps({
                "schemaVersion": 2, "mediaType": MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": s}
                           for d, s in layers],
            }).encode()
            tag = f"i{i}"
            try:
                status, _, body = request("PUT", f"/v2/{repo}/manifests/{tag}", manifest,
                                          {"Content-Type": MANIFEST})
            except OSError as e:
                status, body = 0, str(e).encode()
            if status == 201:
                with lock:
                    acknowledged.append((repo, tag, digest(manifest), [cd] + [d for d, _ in layers],
                                         [config, BASE, own]))
                break
            # A blob collected between its upload and the manifest: push again.
            with lock:
                refused.append(f"{repo}:{tag} attempt {attempt}: {status} {body[:120]!r}")


threads = [threading.Thread(target=worker, args=(n,)) for n in range(WORKERS)]
assert MODE in ("seed", "push"), MODE
for t in threads:
    t.start()
for t in threads:
    t.join()

bad = []
if MODE == "seed":
    for repo, tag, mdigest, _, _ in acknowledged:
        status, _, _ = request("DELETE", f"/v2/{repo}/manifests/{mdigest}")
        if status != 202:
            bad.append(f"{repo}:{tag}: DELETE answered {status}")
    print(f"seeded and deleted {len(acknowledged)} images, {len(bad)} failures")
    for line in refused[:5] + bad[:5]:
        print("  " + line)
    sys.exit(1 if bad or len(acknowledged) < WORKERS * IMAGES else 0)
for repo, tag, mdigest, blob_digests, contents in acknowledged:
    status, headers, body = request("GET", f"/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST})
    if status != 200 or digest(body) != mdigest:
        bad.append(f"{repo}:{tag}: manifest {status}")
        continue
    for d, content in zip(blob_digests, contents):
        status, _, body = request("GET", f"/v2/{repo}/blobs/{d}")
        if status != 200 or digest(body) != d:
            bad.append(f"{repo}:{tag}: blob {d} {status}")
print(f"{len(acknowledged)} of {WORKERS * IMAGES} images acknowledged, {len(refused)} attempts refused, "
      f"{len(bad)} acknowledged images broken")
for line in (refused[:5] + bad[:20]):
    print("  " + line)
sys.exit(1 if bad or len(acknowledged) < WORKERS * IMAGES else 0)
