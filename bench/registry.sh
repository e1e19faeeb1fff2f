#!/usr/bin/env bash
# Registry benchmark: berth's registry server against distribution 2.8
# (Debian's docker-registry), side by side on the same machine and data.
#
#   bench/registry.sh                 # needs root; builds target/release/berth if needed
#   PUSH_MIB=1024 BLOB_MIB=237 DURATION=10 REPS=3 bench/registry.sh
#
# Measures:
#   push of an OCI image of PUSH_MIB MiB (skopeo copy oci: -> docker://), wall time
#   manifest GET by tag, requests/s (wrk, 64 connections, DURATION seconds)
#   peak RSS of each server during the manifest load test (fresh processes)
#   blob GET throughput of a BLOB_MIB MiB blob (curl, page cache warm)
# Targets: push <= 0.8x distribution's time, manifest GET >= 10x its req/s,
# peak RSS <= 0.5x, blob GET >= 1x. Not part of .ci/run.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"

PUSH_MIB="${PUSH_MIB:-1024}"
BLOB_MIB="${BLOB_MIB:-237}"
DURATION="${DURATION:-10}"
REPS="${REPS:-3}"

source "$here/lib.sh"

say "berth: $BERTH"
start_berth() {
    BERTH_REGISTRY_ROOT="$BROOT" spawn "$BERTH" registry serve --addr "127.0.0.1:$BP" --log-level error
    BERTH_PID="${_PIDS[-1]}"
    wait_until 30 _http_answers "http://127.0.0.1:$BP/v2/" || fail "berth registry did not start"
}
start_dist() {
    start_distribution "$DP" >/dev/null
    DIST_PID="${_PIDS[-1]}"
}
peak_rss_mib() { awk '/VmHWM/ { printf "%d\n", $2 / 1024 }' "/proc/$1/status"; }

# ------------------------------------------------------------------ the data
# An OCI layout of PUSH_MIB MiB in four incompressible layers, and one blob
# of BLOB_MIB MiB.
oci="$T/oci"
python3 - "$oci" "$PUSH_MIB" <<'PY'
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
head -c "$((BLOB_MIB * 1024 * 1024))" /dev/urandom >"$T/big.blob"
big_digest="sha256:$(sha256sum "$T/big.blob" | cut -d' ' -f1)"

# --------------------------------------------------------------------- push
# Fresh servers on fresh ports for every repetition: skopeo remembers where
# it has seen a blob (per registry host) and would mount instead of pushing.
b_push=() d_push=()
for i in $(seq 1 "$REPS"); do
    if ((i > 1)); then
        _stop_pid "$DIST_PID"
        _stop_pid "$BERTH_PID"
    fi
    DP="$(free_port)"
    BP="$(free_port)"
    BROOT="$T/berth-registry-$i"
    start_dist
    start_berth
    # Each push starts with no dirty data queued for the disk (berth syncs
    # what it stores, distribution does not: neither should wait for the
    # other's writeback), and the order alternates between repetitions.
    push_dist() {
        sync
        timed skopeo copy -q --dest-tls-verify=false "oci:$oci:latest" "docker://127.0.0.1:$DP/bench/img:latest"
        d_push+=("$SECS")
    }
    push_berth() {
        sync
        timed skopeo copy -q --dest-tls-verify=false "oci:$oci:latest" "docker://127.0.0.1:$BP/bench/img:latest"
        b_push+=("$SECS")
    }
    if ((i % 2)); then
        push_dist
        push_berth
    else
        push_berth
        push_dist
    fi
done

# ---------------------------------------------------------------- big blob
upload_blob() {
    local base="http://$1" loc
    loc="$(curl -sSf -X POST -D - -o /dev/null "$base/v2/bench/big/blobs/uploads/" |
        tr -d '\r' | sed -n 's/^[Ll]ocation: //p')"
    [[ "$loc" == http* ]] || loc="$base$loc"
    [[ "$loc" == *\?* ]] && sep='&' || sep='?'
    curl -sSf -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$T/big.blob" \
        "$loc${sep}digest=$big_digest" -o /dev/null
}
upload_blob "127.0.0.1:$DP"
upload_blob "127.0.0.1:$BP"
blob_speed() {
    local url="http://$1/v2/bench/big/blobs/$big_digest" s=()
    curl -sS -o /dev/null "$url" # warm the page cache
    for _ in 1 2 3; do s+=("$(curl -sS -o /dev/null -w '%{speed_download}' "$url")"); done
    awk -v b="$(median "${s[@]}")" 'BEGIN { printf "%.0f\n", b / 1048576 }'
}
d_blob="$(blob_speed "127.0.0.1:$DP")"
b_blob="$(blob_speed "127.0.0.1:$BP")"

# ------------------------------------------------ manifest GET under load
# Fresh server processes, so peak RSS is that of the load test alone.
_stop_pid "$DIST_PID"
_stop_pid "$BERTH_PID"
start_dist
start_berth
rps() {
    wrk -t2 -c64 -d"${DURATION}s" -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        "http://$1/v2/bench/img/manifests/latest" | awk '/Requests\/sec/ { printf "%.0f\n", $2 }'
}
curl -sSf -o /dev/null "http://127.0.0.1:$DP/v2/bench/img/manifests/latest" -H 'Accept: application/vnd.oci.image.manifest.v1+json'
curl -sSf -o /dev/null "http://127.0.0.1:$BP/v2/bench/img/manifests/latest"
d_rps="$(rps "127.0.0.1:$DP")"
b_rps="$(rps "127.0.0.1:$BP")"
d_rss="$(peak_rss_mib "$DIST_PID")"
b_rss="$(peak_rss_mib "$BERTH_PID")"

# ------------------------------------------------------------------ summary
b_p="$(median "${b_push[@]}")"
d_p="$(median "${d_push[@]}")"
echo
row "measure" "berth" "distribution" "ratio" "target" "verdict"
row "push ${PUSH_MIB} MiB (s, skopeo)" "$b_p" "$d_p" "$(ratio "$b_p" "$d_p")" "<= 0.8" \
    "$(verdict le "$(ratio "$b_p" "$d_p")" 0.8)"
row "manifest GET by tag (req/s)" "$b_rps" "$d_rps" "$(ratio "$b_rps" "$d_rps")" ">= 10" \
    "$(verdict le 10 "$(ratio "$b_rps" "$d_rps")")"
row "peak RSS under load (MiB)" "$b_rss" "$d_rss" "$(ratio "$b_rss" "$d_rss")" "<= 0.5" \
    "$(verdict le "$(ratio "$b_rss" "$d_rss")" 0.5)"
row "blob GET ${BLOB_MIB} MiB (MiB/s)" "$b_blob" "$d_blob" "$(ratio "$b_blob" "$d_blob")" ">= 1" \
    "$(verdict le 1 "$(ratio "$b_blob" "$d_blob")")"
