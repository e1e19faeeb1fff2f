#!/usr/bin/env bash
# The registry at scale: berth on S3 (a SeaweedFS cluster: 3 masters, 3
# volume servers, 2 filers) + PostgreSQL 15 against distribution 2.8
# (Debian's docker-registry, its s3-aws driver) on the same cluster, each
# with its own bucket and behind the same haproxy (three berth replicas,
# one distribution), side by side in one run.
#
#   bench/scale.sh                     # needs root; builds target/release/berth if needed
#   PUSH_MIB=1024 REPS=3 DURATION=10 BERTH=target/debug/berth bench/scale.sh
#
# Measures, for the same OCI image of PUSH_MIB MiB (four incompressible layers):
#   push with skopeo (oci: -> docker://), wall time and S3 requests
#   pull with skopeo (docker:// -> dir:), wall time and S3 requests
#   manifest GET by tag, requests/s (wrk, 64 connections, DURATION seconds),
#   through haproxy, and directly from one berth replica and distribution
# S3 requests are SeaweedFS's own per-bucket counters (its Prometheus
# metrics). Targets from the issue: push and pull <= 0.7x distribution's
# time, S3 requests per push <= 0.5x. Not part of .ci/run.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

PUSH_MIB="${PUSH_MIB:-1024}"
REPS="${REPS:-3}"
DURATION="${DURATION:-10}"

source "$here/lib.sh"
source "$bench_repo/tests/interop/engines.sh"
trap _engines_cleanup EXIT
install_engines
say "berth: $BERTH"

start_postgres
start_seaweedfs_cluster
make_bucket dist || fail "cannot create bucket dist"
export AWS_ACCESS_KEY_ID="$S3_KEY" AWS_SECRET_ACCESS_KEY="$S3_SECRET"
write_scale_config "$T/berth.toml"

# start_berth: one more replica on the shared config (its port in BP).
start_berth() {
    BP="$(free_port)"
    mkdir -p "$T/berth-root-$BP"
    BERTH_REGISTRY_ROOT="$T/berth-root-$BP" spawn "$BERTH" registry serve --config "$T/berth.toml" \
        --addr "127.0.0.1:$BP" --log-level error
    BERTH_PID="${_PIDS[-1]}"
    wait_until 30 _http_answers "http://127.0.0.1:$BP/v2/" || fail "berth registry did not start"
}
start_dist() {
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
    DIST_PID="$!"
    wait_until 30 _http_answers "http://127.0.0.1:$DP/v2/" || { head -5 "$T/dist/log" >&2; fail "distribution did not start"; }
}

# ------------------------------------------------------------------ the data
# make_image DIR: an OCI layout of PUSH_MIB MiB in four incompressible
# layers, new bytes every time (skopeo remembers where it pushed a blob and
# would mount it from there instead of pushing it again).
make_image() {
    rm -rf "$1"
    python3 - "$1" "$PUSH_MIB" <<'PY'
import hashlib, json, os, sys
root, total = sys.argv[1], int(sys.argv[2])
os.makedirs(f"{root}/blobs/sha256", exist_ok=True)
def put(data):
    d = hashlib.sha256(data).hexdigest()
    with open(f"{root}/blobs/sha256/{d}", "wb") as f:
        f.write(data)
    return {"digest": f"sha256:{d}", "size": len(data)}
layers = []
for i in range(4):
    layer = put(os.urandom(total * 1024 * 1024 // 4))
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer})
config = put(json.dumps({"architecture": "amd64", "os": "linux",
    "rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in layers]}}).encode())
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
    "layers": layers}).encode()
m = put(manifest)
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
    **m, "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}, open(f"{root}/index.json", "w"))
json.dump({"imageLayoutVersion": "1.0.0"}, open(f"{root}/oci-layout", "w"))
PY
}
oci="$T/oci"

# ---------------------------------------------------------- push and pull
# New image bytes per repetition, pushed to both (the order alternates).
b_push=() d_push=() b_pull=() d_pull=() b_push_req=() d_push_req=() b_pull_req=() d_pull_req=()
replicas=()
for _ in 1 2 3; do
    start_berth
    replicas+=("$BP")
done
start_dist
# haproxy keeps its backend connections open (the tests' setting balances
# each request on a new one).
HAPROXY_OPTION=http-keep-alive start_haproxy "${replicas[@]}"
b_lb="$LB_PORT"
HAPROXY_OPTION=http-keep-alive start_haproxy "$DP"
d_lb="$LB_PORT"
# measure NAME PORT BUCKET REPO: one push then one pull; appends to the arrays.
measure() {
    local name="$1" port="$2" bucket="$3" repo="$4" before
    sync
    before="$(s3_requests "$bucket")"
    timed skopeo copy -q --dest-tls-verify=false "oci:$oci:latest" "docker://127.0.0.1:$port/$repo:latest"
    eval "${name}_push+=(\"$SECS\")"
    eval "${name}_push_req+=(\"$(($(s3_requests "$bucket") - before))\")"
    rm -rf "$T/pulled"
    sync
    before="$(s3_requests "$bucket")"
    timed skopeo copy -q --src-tls-verify=false "docker://127.0.0.1:$port/$repo:latest" "dir:$T/pulled"
    eval "${name}_pull+=(\"$SECS\")"
    eval "${name}_pull_req+=(\"$(($(s3_requests "$bucket") - before))\")"
    rm -rf "$T/pulled"
}
for i in $(seq 1 "$REPS"); do
    make_image "$oci"
    if ((i % 2)); then
        measure d "$d_lb" dist "bench/img$i"
        measure b "$b_lb" berth "bench/img$i"
    else
        measure b "$b_lb" berth "bench/img$i"
        measure d "$d_lb" dist "bench/img$i"
    fi
done

# ------------------------------------------------ manifest GET under load
rps() {
    wrk -t2 -c64 -d"${DURATION}s" -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        "http://$1/v2/bench/img1/manifests/latest" | awk '/Requests\/sec/ { printf "%.0f\n", $2 }'
}
curl -sSf -o /dev/null -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://127.0.0.1:$DP/v2/bench/img1/manifests/latest"
curl -sSf -o /dev/null "http://127.0.0.1:$BP/v2/bench/img1/manifests/latest"
d_rps="$(rps "127.0.0.1:$DP")"
b_rps="$(rps "127.0.0.1:$BP")"
d_lb_rps="$(rps "127.0.0.1:$d_lb")"
b_lb_rps="$(rps "127.0.0.1:$b_lb")"

# ------------------------------------------------------------------ summary
bp="$(median "${b_push[@]}")" dp="$(median "${d_push[@]}")"
bl="$(median "${b_pull[@]}")" dl="$(median "${d_pull[@]}")"
bpr="$(median "${b_push_req[@]}")" dpr="$(median "${d_push_req[@]}")"
blr="$(median "${b_pull_req[@]}")" dlr="$(median "${d_pull_req[@]}")"
echo
say "berth: $BERTH; both on a SeaweedFS $("$(find_weed)" version 2>/dev/null | head -1 | awk '{print $3}') cluster behind haproxy, berth's metadata in PostgreSQL 15; medians of $REPS"
row "measure" "berth" "distribution" "ratio" "target" "verdict"
row "push ${PUSH_MIB} MiB (s, skopeo)" "$bp" "$dp" "$(ratio "$bp" "$dp")" "<= 0.7" "$(verdict le "$(ratio "$bp" "$dp")" 0.7)"
row "S3 requests per push" "$bpr" "$dpr" "$(ratio "$bpr" "$dpr")" "<= 0.5" "$(verdict le "$(ratio "$bpr" "$dpr")" 0.5)"
row "pull ${PUSH_MIB} MiB (s, skopeo)" "$bl" "$dl" "$(ratio "$bl" "$dl")" "<= 0.7" "$(verdict le "$(ratio "$bl" "$dl")" 0.7)"
row "S3 requests per pull" "$blr" "$dlr" "$(ratio "$blr" "$dlr")" "-" "-"
row "manifest GET by tag (req/s)" "$b_lb_rps" "$d_lb_rps" "$(ratio "$b_lb_rps" "$d_lb_rps")" ">= 10" "$(verdict le 10 "$(ratio "$b_lb_rps" "$d_lb_rps")")"
row "  the same, one replica, no haproxy" "$b_rps" "$d_rps" "$(ratio "$b_rps" "$d_rps")" "-" "-"
