#!/usr/bin/env bash
# Garbage collection at scale: berth on S3 (SeaweedFS) + PostgreSQL 15
# against distribution 2.8 (Debian's docker-registry, its s3-aws driver) on
# the same SeaweedFS, each with its own bucket, on the same data shape.
#
#   bench/gc.sh                       # needs root; builds target/release/berth if needed
#   REPOS=100 BERTH=target/debug/berth bench/gc.sh    # a smaller shape
#
# The shape: REPOS repositories (1,000), each with two images of a config
# and LAYERS (4) layers of BLOB_KIB (1) KiB, so REPOS x 10 blobs (10,000);
# then one image of each repository is deleted by digest, leaving half the
# blobs unreferenced. Measured: the wall time of one collection
# (`berth registry gc --grace-minutes 0`; `docker-registry garbage-collect`)
# and the S3 requests it sends (SeaweedFS's per-bucket counters). Then berth
# collects again while pushes go on (distribution's must run read-only),
# and every image pushed meanwhile is checked. Target from the issue: berth
# <= 0.1x distribution's time. Not part of .ci/run.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

REPOS="${REPOS:-1000}"
LAYERS="${LAYERS:-4}"
BLOB_KIB="${BLOB_KIB:-1}"

source "$here/lib.sh"
source "$bench_repo/tests/interop/engines.sh"
trap _engines_cleanup EXIT
install_engines
say "berth: $BERTH"

start_seaweedfs
start_postgres
make_bucket dist || fail "cannot create bucket dist"
export AWS_ACCESS_KEY_ID="$S3_KEY" AWS_SECRET_ACCESS_KEY="$S3_SECRET"
write_scale_config "$T/berth.toml"

BP="$(free_port)"
mkdir -p "$T/berth-root"
BERTH_REGISTRY_ROOT="$T/berth-root" spawn "$BERTH" registry serve --config "$T/berth.toml" \
    --addr "127.0.0.1:$BP" --log-level error
wait_until 30 _http_answers "http://127.0.0.1:$BP/v2/" || fail "berth registry did not start"

DP="$(free_port)"
mkdir -p "$T/dist"
cat >"$T/dist/config.yml" <<EOF
version: 0.1
log: {level: warn}
storage:
  s3:
    accesskey: $S3_KEY
    secretkey: $S3_SECRET
    region: us-east-1
    regionendpoint: $S3_ENDPOINT
    bucket: dist
    secure: false
    v4auth: true
  delete: {enabled: true}
  redirect: {disable: true}
  cache: {blobdescriptor: inmemory}
http: {addr: 127.0.0.1:$DP}
EOF
# A CA bundle in the environment (for real AWS) breaks its plain-HTTP client.
env -u REGISTRY_AUTH_FILE -u AWS_CA_BUNDLE /usr/bin/docker-registry serve "$T/dist/config.yml" >"$T/dist/log" 2>&1 &
_PIDS+=("$!")
wait_until 30 _http_answers "http://127.0.0.1:$DP/v2/" || { head -5 "$T/dist/log" >&2; fail "distribution did not start"; }

# ------------------------------------------------------------------ the data
# load PORT PREFIX FIRST COUNT MODE: pushes two images to each of COUNT
# repositories PREFIX/rNNNN from FIRST (8 connections, keep-alive, a POST
# and a PUT per blob, as docker does). MODE "shape" then deletes the first
# image of each by digest; MODE "verify" reads every image back instead.
cat >"$T/load.py" <<'PY'
import hashlib, http.client, json, os, sys, threading
port, prefix, first, count, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
layers, kib = int(os.environ["LAYERS"]), int(os.environ["BLOB_KIB"])
MT = "application/vnd.oci.image.manifest.v1+json"
errors = []

def req(c, method, path, body=None, headers={}):
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    return r, data

def blob(c, repo, data):
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    r, _ = req(c, "POST", f"/v2/{repo}/blobs/uploads/", b"", {"Content-Length": "0"})
    assert r.status == 202, (r.status, repo)
    loc = r.getheader("Location")
    if loc.startswith("http"):
        loc = "/" + loc.split("/", 3)[3]
    sep = "&" if "?" in loc else "?"
    r, _ = req(c, "PUT", f"{loc}{sep}digest={d}", data,
               {"Content-Type": "application/octet-stream", "Content-Length": str(len(data))})
    assert r.status == 201, (r.status, repo)
    return {"digest": d, "size": len(data)}

def image(c, repo, tag):
    cfg = blob(c, repo, json.dumps({"architecture": "amd64", "os": "linux", "seed": os.urandom(8).hex()}).encode())
    ls = [dict(mediaType="application/vnd.oci.image.layer.v1.tar+gzip", **blob(c, repo, os.urandom(kib * 1024)))
          for _ in range(layers)]
    m = json.dumps({"schemaVersion": 2, "mediaType": MT,
                    "config": dict(mediaType="application/vnd.oci.image.config.v1+json", **cfg),
                    "layers": ls}).encode()
    r, _ = req(c, "PUT", f"/v2/{repo}/manifests/{tag}", m, {"Content-Type": MT})
    assert r.status == 201, (r.status, repo, tag)
    return "sha256:" + hashlib.sha256(m).hexdigest(), m

def verify(c, repo, tag, m):
    r, data = req(c, "GET", f"/v2/{repo}/manifests/{tag}", headers={"Accept": MT})
    assert r.status == 200 and data == m, (r.status, repo, tag)
    doc = json.loads(m)
    for d in [doc["config"]] + doc["layers"]:
        r, data = req(c, "GET", f"/v2/{repo}/blobs/{d['digest']}")
        assert r.status == 200 and "sha256:" + hashlib.sha256(data).hexdigest() == d["digest"], (repo, d)

def work(ids):
    try:
        c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=120)
        for i in ids:
            repo = f"{prefix}/r{i:04d}"
            old, _ = image(c, repo, "old")
            _, m = image(c, repo, "new")
            if mode == "shape":
                r, _ = req(c, "DELETE", f"/v2/{repo}/manifests/{old}")
                assert r.status == 202, (r.status, repo)
            else:
                verify(c, repo, "new", m)
    except Exception as e:
        errors.append(repr(e))

ids = list(range(first, first + count))
threads = [threading.Thread(target=work, args=(ids[k::8],)) for k in range(8)]
for t in threads: t.start()
for t in threads: t.join()
if errors:
    sys.exit(f"{len(errors)} workers failed, first: {errors[0]}")
PY
export LAYERS BLOB_KIB
say "pushing $REPOS repositories x 2 images x $((LAYERS + 1)) blobs to each registry"
python3 "$T/load.py" "$DP" bench 0 "$REPOS" shape || fail "loading distribution"
python3 "$T/load.py" "$BP" bench 0 "$REPOS" shape || fail "loading berth"
# Links made in the last second are young even with a grace period of zero.
sleep 2

# ------------------------------------------------------------------ collect
sync
before="$(s3_requests dist)"
timed env -u REGISTRY_AUTH_FILE -u AWS_CA_BUNDLE /usr/bin/docker-registry garbage-collect "$T/dist/config.yml"
d_secs="$SECS" d_req="$(($(s3_requests dist) - before))"
found="$(BERTH_REGISTRY_CONFIG="$T/berth.toml" BERTH_REGISTRY_ROOT="$T/berth-root" \
    "$BERTH" registry gc --grace-minutes 0 --dry-run | tail -2 | head -1)"
sync
before="$(s3_requests berth)"
BERTH_REGISTRY_CONFIG="$T/berth.toml" BERTH_REGISTRY_ROOT="$T/berth-root" \
    timed "$BERTH" registry gc --grace-minutes 0
b_secs="$SECS" b_req="$(($(s3_requests berth) - before))"
left="$(BERTH_REGISTRY_CONFIG="$T/berth.toml" BERTH_REGISTRY_ROOT="$T/berth-root" \
    "$BERTH" registry gc --grace-minutes 0 --dry-run | tail -2 | head -1)"

# ------------------------------------------- collecting while pushes go on
during=$((REPOS / 10 > 0 ? REPOS / 10 : 1))
python3 "$T/load.py" "$BP" during 0 "$during" verify >"$T/during.log" 2>&1 &
pusher=$!
runs=0
while kill -0 "$pusher" 2>/dev/null; do
    BERTH_REGISTRY_CONFIG="$T/berth.toml" BERTH_REGISTRY_ROOT="$T/berth-root" \
        "$BERTH" registry gc --grace-minutes 1 >/dev/null || fail "gc during pushes"
    runs=$((runs + 1))
done
wait "$pusher" || { cat "$T/during.log" >&2; fail "a push during collection failed"; }
# Every image pushed meanwhile still reads back whole after one more run.
BERTH_REGISTRY_CONFIG="$T/berth.toml" BERTH_REGISTRY_ROOT="$T/berth-root" \
    "$BERTH" registry gc --grace-minutes 1 >/dev/null
python3 - "$BP" "$during" <<'PY' || fail "an image pushed during collection is broken"
import http.client, json, hashlib, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
c = http.client.HTTPConnection("127.0.0.1", port)
MT = "application/vnd.oci.image.manifest.v1+json"
for i in range(n):
    repo = f"during/r{i:04d}"
    c.request("GET", f"/v2/{repo}/manifests/new", headers={"Accept": MT})
    r = c.getresponse(); m = json.loads(r.read()); assert r.status == 200, repo
    for d in [m["config"]] + m["layers"]:
        c.request("GET", f"/v2/{repo}/blobs/{d['digest']}")
        r = c.getresponse(); data = r.read()
        assert r.status == 200 and "sha256:" + hashlib.sha256(data).hexdigest() == d["digest"], repo
PY

# ------------------------------------------------------------------ summary
echo
say "berth: $BERTH; both on SeaweedFS, berth's metadata in PostgreSQL 15"
say "shape: $REPOS repositories, $((REPOS * 2 * (LAYERS + 1))) blobs, half of them unreferenced"
say "before berth's run, a dry run finds: $found"
say "after it: $left"
say "berth collected $runs time(s) while $during repositories were pushed and verified"
row "measure" "berth" "distribution" "ratio" "target" "verdict"
row "gc wall time (s)" "$b_secs" "$d_secs" "$(ratio "$b_secs" "$d_secs")" "<= 0.1" "$(verdict le "$(ratio "$b_secs" "$d_secs")" 0.1)"
row "S3 requests per gc" "$b_req" "$d_req" "$(ratio "$b_req" "$d_req")" "-" "-"
