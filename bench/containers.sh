#!/usr/bin/env bash
# Container benchmark: `run --rm IMAGE true` with berth and with the Docker
# engine (and podman with runc when it is installed), side by side on the
# same busybox image, `diff` / `commit` of a small change, and the first
# `run` of the ~1 GiB benchmark image (bench/client.sh's) straight after
# its `pull` from a local distribution registry, unpacking included.
#
#   bench/containers.sh        # needs root; builds target/release/berth if needed
#   RUNS=20 BIG_REPS=3 LAYERS=8 LAYER_MIB=128 bench/containers.sh
#   BIG=0 bench/containers.sh  # without the 1 GiB image
#
# Targets: run <= 0.3 x docker and <= 0.5 x podman (under 60 ms each);
# pull + first run of the 1 GiB image <= 0.5 x docker's pull + run.
# Not part of .ci/run.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
RUNS="${RUNS:-20}"
BIG="${BIG:-1}"
BIG_REPS="${BIG_REPS:-1}"
LAYERS="${LAYERS:-8}"
LAYER_MIB="${LAYER_MIB:-128}"
source "$here/lib.sh"

say "berth: $BERTH"
start_dockerd
build_busybox_image busybox:musl
docker save busybox:musl -o "$T/bb.tar"
export BERTH_ROOT="$T/store"
"$BERTH" load -q -i "$T/bb.tar" >/dev/null
"$BERTH" run --rm busybox:musl true # the first run unpacks the layer

runs() { # CMD...: the mean wall time of RUNS runs, in ms
    local start end
    start="$(date +%s%N)"
    for _ in $(seq 1 "$RUNS"); do "$@" >/dev/null || return 1; done
    end="$(date +%s%N)"
    echo $(((end - start) / 1000000 / RUNS))
}

b_ms="$(runs "$BERTH" run --rm busybox:musl true)"
d_ms="$(runs docker run --rm --network none busybox:musl true)"
p_ms=""
if command -v podman >/dev/null; then
    echo '{}' >"$T/podman-auth.json"
    export REGISTRY_AUTH_FILE="$T/podman-auth.json"
    pod=(podman --root "$T/podman" --runroot "$T/podman-run" --runtime runc --cgroup-manager cgroupfs)
    # podman asks for more open files and processes than this machine's hard
    # limits allow (berth never does): give it exactly those.
    limits=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit "nproc=$(ulimit -Hu):$(ulimit -Hu)")
    if "${pod[@]}" load -q -i "$T/bb.tar" >/dev/null 2>&1 &&
        "${pod[@]}" run --rm --network none "${limits[@]}" busybox:musl true >/dev/null 2>"$T/podman.err"; then
        p_ms="$(runs "${pod[@]}" run --rm --network none "${limits[@]}" busybox:musl true)" || p_ms=""
        "${pod[@]}" system reset -f >/dev/null 2>&1 || true
    else
        say "podman cannot run containers here ($(tail -1 "$T/podman.err")): not measured"
    fi
fi

"$BERTH" run --name bench busybox:musl /bin/sh -c 'head -c 1024 /dev/urandom > /changed' >/dev/null
diff_ms="$(runs "$BERTH" diff bench)"
start="$(date +%s%N)"
"$BERTH" commit bench bench:1 >/dev/null
commit_ms=$((($(date +%s%N) - start) / 1000000))
"$BERTH" rm bench >/dev/null
docker run --name bench --network none busybox:musl /bin/sh -c 'head -c 1024 /dev/urandom > /changed' >/dev/null
start="$(date +%s%N)"
docker commit bench bench:1 >/dev/null
docker_commit_ms=$((($(date +%s%N) - start) / 1000000))
docker rm bench >/dev/null

big_b="" big_d=""
if [[ "$BIG" != 0 ]]; then
    P="$(free_port)"
    start_distribution "$P"
    R="127.0.0.1:$P"
    build_big_image "$R/bench:big" "$LAYERS" "$LAYER_MIB"
    docker push -q "$R/bench:big" >/dev/null
    declare -a bigb bigd
    for rep in $(seq 1 "$BIG_REPS"); do
        # docker keeps busybox:musl's layer (the image's base): it pulls the rest.
        docker rmi -f "$R/bench:big" >/dev/null
        start="$(date +%s%N)"
        docker pull -q "$R/bench:big" >/dev/null
        docker run --rm --network none "$R/bench:big" true
        bigd+=("$((($(date +%s%N) - start) / 1000000))")
        # berth from an empty store: every layer pulled, proven and unpacked.
        rm -rf "$T/big-store"
        start="$(date +%s%N)"
        BERTH_ROOT="$T/big-store" "$BERTH" pull -q "$R/bench:big" >/dev/null
        BERTH_ROOT="$T/big-store" "$BERTH" run --rm "$R/bench:big" true
        bigb+=("$((($(date +%s%N) - start) / 1000000))")
        say "1 GiB pull + first run, rep $rep: berth ${bigb[-1]} ms  docker ${bigd[-1]} ms"
    done
    big_b="$(median "${bigb[@]}")" big_d="$(median "${bigd[@]}")"
    rm -rf "$T/big-store"
    docker rmi -f "$R/bench:big" >/dev/null
fi

say ""
row "measure (mean of $RUNS)" "berth" "peer" "ratio" "target" "verdict"
row "run --rm true vs docker" "${b_ms} ms" "${d_ms} ms" "$(ratio "$b_ms" "$d_ms")" "<= 0.3" \
    "$(verdict le "$(ratio "$b_ms" "$d_ms")" 0.3)"
if [[ -n "$p_ms" ]]; then
    row "run --rm true vs podman (runc)" "${b_ms} ms" "${p_ms} ms" "$(ratio "$b_ms" "$p_ms")" "<= 0.5" \
        "$(verdict le "$(ratio "$b_ms" "$p_ms")" 0.5)"
else
    row "run --rm true vs podman (runc)" "${b_ms} ms" "n/a" "n/a" "<= 0.5" "not measured"
fi
row "commit of a 1 KiB change vs docker" "${commit_ms} ms" "${docker_commit_ms} ms" \
    "$(ratio "$commit_ms" "$docker_commit_ms")" "<= 0.2" "$(verdict le "$(ratio "$commit_ms" "$docker_commit_ms")" 0.2)"
row "diff of that change" "${diff_ms} ms" "" "" "< 50 ms" "$(verdict lt "$diff_ms" 50)"
if [[ -n "$big_b" ]]; then
    row "1 GiB pull + first run vs docker" "${big_b} ms" "${big_d} ms" "$(ratio "$big_b" "$big_d")" "<= 0.5" \
        "$(verdict le "$(ratio "$big_b" "$big_d")" 0.5)"
else
    row "1 GiB pull + first run vs docker" "n/a" "n/a" "n/a" "<= 0.5" "not measured (BIG=0)"
fi
