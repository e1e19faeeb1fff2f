#!/usr/bin/env bash
# Registry client benchmark: berth pull/push against docker and skopeo, side
# by side, on the same ~1 GiB image (LAYERS layers of real system files on
# top of busybox) served by a local distribution 2.8.
#
#   bench/client.sh            # needs root; builds target/release/berth if needed
#   REPS=3 LAYERS=8 LAYER_MIB=128 bench/client.sh
#
# Measures, REPS times each:
#   docker pull        (rmi first; docker also unpacks)
#   skopeo copy docker://... oci:DIR   (no decompression, no unpacking)
#   berth pull         (fresh store; verifies every blob digest while it
#                       streams; the diff IDs are proven at the store's first
#                       read, so the script also times the first `berth
#                       images` after the pull: decompressing every layer)
#   docker push / berth push of the pulled image to an empty registry
#   berth image copy / skopeo copy docker://... docker://... (registry to an
#                       empty registry; berth keeps the manifest digest)
#   berth image copy berth:X oci-archive:F / berth save --format oci -o F
# and berth's peak RSS. Targets: pull <= 0.5 x docker and <= 1.0 x skopeo,
# pull + first read <= 1.2 x skopeo, push <= 0.5 x docker, registry copy
# <= 0.7 x skopeo, copy to oci-archive <= 1.1 x save, peak RSS < 150 MiB.
# Not part of .ci/run.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"

REPS="${REPS:-3}"
LAYERS="${LAYERS:-8}"
LAYER_MIB="${LAYER_MIB:-128}"

source "$here/lib.sh"

say "berth: $BERTH"
start_dockerd
P="$(free_port)"
start_distribution "$P"
R="127.0.0.1:$P"

# ---------------------------------------------------------------- the image
build_busybox_image busybox:musl
build_big_image "$R/bench:big" "$LAYERS" "$LAYER_MIB"
big_id="$(docker inspect --format '{{.Id}}' "$R/bench:big")"
docker push -q "$R/bench:big" >/dev/null
compressed_mib="$(du -sm "$T/distribution-$P/data" | cut -f1)"
if [[ -n "${KEEP_REGISTRY_DATA:-}" ]]; then
    rm -rf "$KEEP_REGISTRY_DATA" && cp -a "$T/distribution-$P/data" "$KEEP_REGISTRY_DATA"
fi
say "image: $(docker inspect --format '{{.Size}}' "$R/bench:big" | awk '{ printf "%d", $1 / 1048576 }') MiB," \
    "$compressed_mib MiB compressed in the registry, ID ${big_id:7:12}"

declare -a dp sk bp brss bv dpu bpu bprss bc skc bs bca
for rep in $(seq 1 "$REPS"); do
    # ----------------------------------------------------------------- pull
    docker rmi -f "$R/bench:big" >/dev/null
    timed docker pull "$R/bench:big"
    dp+=("$SECS")

    rm -rf "$T/oci"
    timed skopeo copy -q --src-tls-verify=false "docker://$R/bench:big" "oci:$T/oci:big"
    sk+=("$SECS")

    export BERTH_ROOT="$T/store"
    rm -rf "$BERTH_ROOT"
    timed "$BERTH" pull "$R/bench:big"
    bp+=("$SECS") brss+=("$RSS_MIB")
    timed "$BERTH" images
    bv+=("$SECS") brss+=("$RSS_MIB")
    say "pull  rep $rep: berth ${bp[-1]}s + first read ${bv[-1]}s (peak ${brss[-1]} MiB)  docker ${dp[-1]}s  skopeo ${sk[-1]}s"

    # ----------------------------------------------------------------- push
    # Each push goes to an empty registry: everything is uploaded.
    P2="$(free_port)"
    start_distribution "$P2" >/dev/null
    docker tag "$R/bench:big" "127.0.0.1:$P2/bench:big"
    timed docker push "127.0.0.1:$P2/bench:big"
    dpu+=("$SECS")
    P3="$(free_port)"
    start_distribution "$P3" >/dev/null
    if "$BERTH" tag "$R/bench:big" "127.0.0.1:$P3/bench:big" 2>/dev/null; then
        timed "$BERTH" push "127.0.0.1:$P3/bench:big"
        bpu+=("$SECS") bprss+=("$RSS_MIB")
    else
        bpu+=(0) bprss+=(0)
        say "berth tag is not available: berth push not measured"
    fi
    say "push  rep $rep: berth ${bpu[-1]}s (peak ${bprss[-1]} MiB)  docker ${dpu[-1]}s"
    # Untag the copy docker pushed, or the next rep's `docker rmi` would only
    # untag and its pull would find the image still there.
    docker rmi "127.0.0.1:$P2/bench:big" >/dev/null
    rm -rf "$T/distribution-$P2/data" "$T/distribution-$P3/data"

    # ----------------------------------------------------------------- copy
    # Registry to an empty registry, berth then skopeo.
    P4="$(free_port)"
    start_distribution "$P4" >/dev/null
    timed "$BERTH" image copy -q "docker://$R/bench:big" "docker://127.0.0.1:$P4/bench:big"
    bc+=("$SECS")
    P5="$(free_port)"
    start_distribution "$P5" >/dev/null
    timed skopeo copy -q --src-tls-verify=false --dest-tls-verify=false \
        "docker://$R/bench:big" "docker://127.0.0.1:$P5/bench:big"
    skc+=("$SECS")
    copied="$(skopeo inspect --raw --tls-verify=false "docker://127.0.0.1:$P4/bench:big" | sha256sum | cut -d' ' -f1)"
    source_raw="$(skopeo inspect --raw --tls-verify=false "docker://$R/bench:big" | sha256sum | cut -d' ' -f1)"
    [[ "$copied" == "$source_raw" ]] || say "WARNING: berth's copy changed the manifest digest"
    rm -rf "$T/distribution-$P4/data" "$T/distribution-$P5/data"
    # The store to an OCI archive: the copy engine against `save`.
    rm -f "$T/save.tar" "$T/copy.tar"
    timed "$BERTH" save --format oci -o "$T/save.tar" "$R/bench:big"
    bs+=("$SECS")
    timed "$BERTH" image copy -q "berth:$R/bench:big" "oci-archive:$T/copy.tar:$R/bench:big"
    bca+=("$SECS")
    rm -f "$T/save.tar" "$T/copy.tar"
    say "copy  rep $rep: berth ${bc[-1]}s  skopeo ${skc[-1]}s; to oci-archive ${bca[-1]}s  save ${bs[-1]}s"
done

m_dp="$(median "${dp[@]}")" m_sk="$(median "${sk[@]}")" m_bp="$(median "${bp[@]}")"
m_dpu="$(median "${dpu[@]}")" m_bpu="$(median "${bpu[@]}")"
m_bv="$(median "${bv[@]}")"
m_bc="$(median "${bc[@]}")" m_skc="$(median "${skc[@]}")" m_bs="$(median "${bs[@]}")" m_bca="$(median "${bca[@]}")"
m_bpv="$(awk -v a="$m_bp" -v b="$m_bv" 'BEGIN { printf "%.2f\n", a + b }')"
rss="$(printf '%s\n' "${brss[@]}" "${bprss[@]}" | sort -g | tail -1)"
say ""
row "measure (median of $REPS)" "berth" "peer" "ratio" "target" "verdict"
row "pull vs docker pull" "${m_bp}s" "${m_dp}s" "$(ratio "$m_bp" "$m_dp")" "<= 0.5" \
    "$(verdict le "$(ratio "$m_bp" "$m_dp")" 0.5)"
row "pull vs skopeo copy to oci:" "${m_bp}s" "${m_sk}s" "$(ratio "$m_bp" "$m_sk")" "<= 1.0" \
    "$(verdict le "$(ratio "$m_bp" "$m_sk")" 1.0)"
row "pull + first read vs docker pull" "${m_bpv}s" "${m_dp}s" "$(ratio "$m_bpv" "$m_dp")" "<= 0.5" \
    "$(verdict le "$(ratio "$m_bpv" "$m_dp")" 0.5)"
row "pull + first read vs skopeo" "${m_bpv}s" "${m_sk}s" "$(ratio "$m_bpv" "$m_sk")" "<= 1.2" \
    "$(verdict le "$(ratio "$m_bpv" "$m_sk")" 1.2)"
row "copy registry->registry vs skopeo" "${m_bc}s" "${m_skc}s" "$(ratio "$m_bc" "$m_skc")" "<= 0.7" \
    "$(verdict le "$(ratio "$m_bc" "$m_skc")" 0.7)"
row "copy to oci-archive vs save" "${m_bca}s" "${m_bs}s" "$(ratio "$m_bca" "$m_bs")" "<= 1.1" \
    "$(verdict le "$(ratio "$m_bca" "$m_bs")" 1.1)"
if [[ "$m_bpu" == 0 ]]; then
    row "push vs docker push" "n/a" "${m_dpu}s" "n/a" "<= 0.5" "not measured"
else
    row "push vs docker push" "${m_bpu}s" "${m_dpu}s" "$(ratio "$m_bpu" "$m_dpu")" "<= 0.5" \
        "$(verdict le "$(ratio "$m_bpu" "$m_dpu")" 0.5)"
fi
row "peak RSS of pull and push" "${rss} MiB" "" "" "< 150 MiB" "$(verdict lt "$rss" 150)"
