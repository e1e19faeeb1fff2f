# shellcheck shell=bash
# Shared by the benchmarks: builds the release binary unless BERTH names one,
# loads tests/interop/lib.sh (peers, cleanup), and the timing helpers below.
#
#   timed CMD...          runs CMD (stdout discarded) under /usr/bin/time;
#                         sets SECS (wall seconds) and RSS_MIB (peak RSS)
#   median N...           the median of the numbers
#   ratio A B             A / B with two decimals ("n/a" if B is 0)
#   mean_ms CMD...        mean wall time of CMD in ms (hyperfine when there
#                         is one, else 10 timed runs); CMD is a shell string
#   row NAME BERTH DOCKER RATIO TARGET VERDICT   one line of the summary
#   verdict OK?           "ok" or "MISSED"

bench_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# The peers and tools every benchmark uses, installed with apt when missing
# (a fresh machine has none of them; benchmarks run as root anyway).
bench_packages=(docker.io docker-registry skopeo wrk curl jq python3 time busybox-static)
bench_missing=()
for p in "${bench_packages[@]}"; do
    [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" == "install ok installed" ]] ||
        bench_missing+=("$p")
done
if ((${#bench_missing[@]})); then
    echo "installing: ${bench_missing[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${bench_missing[@]}" </dev/null >/dev/null
fi
if [[ -z "${BERTH:-}" ]]; then
    echo "building target/release/berth"
    (cd "$bench_repo" && cargo build --release -q -p berth-cli)
    BERTH="$bench_repo/target/release/berth"
fi
export BERTH
# shellcheck source=../tests/interop/lib.sh
source "$bench_repo/tests/interop/lib.sh"

timed() {
    local tf rss_kib
    tf="$(mktemp "$T/time.XXXXXX")"
    if ! /usr/bin/time -f '%e %M' -o "$tf" "$@" >/dev/null 2>"$tf.err"; then
        echo "command failed: $*" >&2
        cat "$tf.err" >&2
        return 1
    fi
    read -r SECS rss_kib < <(tail -1 "$tf")
    RSS_MIB=$((rss_kib / 1024))
}

median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
        if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a !~ /^[0-9.]+$/ || b + 0 == 0) print "n/a"; else printf "%.2f\n", a / b }'; }

lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 < b + 0) }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 <= b + 0) }'; }

mean_ms() {
    local json i start
    if command -v hyperfine >/dev/null; then
        json="$(mktemp "$T/hf.XXXXXX")"
        hyperfine -N --warmup 2 --runs "${HYPERFINE_RUNS:-20}" --export-json "$json" \
            --style none "$1" >/dev/null 2>&1 || {
            echo "hyperfine failed: $1" >&2
            return 1
        }
        jq '.results[0].mean * 1000 | . * 10 | round / 10' "$json"
    else
        sh -c "$1" >/dev/null 2>&1
        start=$(date +%s%N)
        for i in $(seq 1 10); do sh -c "$1" >/dev/null 2>&1; done
        echo $((($(date +%s%N) - start) / 10000000))
    fi
}

verdict() {
    if [[ "$2" == n/a ]]; then echo n/a; elif "$@"; then echo ok; else echo MISSED; fi
}

row() { printf '%-34s %12s %12s %8s %-14s %s\n' "$@"; }

# build_big_image REF LAYERS LAYER_MIB: the ~1 GiB benchmark image (LAYERS
# layers of ~LAYER_MIB MiB of this machine's real files: libraries,
# binaries, docs) FROM busybox:musl (build that first), built by docker as
# REF. Shared by bench/client.sh and bench/containers.sh.
build_big_image() {
    local ref="$1" layers="$2" layer_mib="$3" ctx
    # Real files, hard-linked into the build context.
    ctx="$(new_tmpdir)"
    python3 - "$ctx" "$layers" "$layer_mib" <<'PY'
import os, shutil, sys
ctx, layers, budget = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) << 20
sources = ["/usr/lib/x86_64-linux-gnu", "/usr/share", "/usr/bin", "/usr/lib", "/usr/include", "/usr/sbin"]
seen, layer, used = set(), 1, 0
for src in sources:
    for root, dirs, files in os.walk(src):
        dirs.sort()
        for f in sorted(files):
            path = os.path.join(root, f)
            st = os.lstat(path)
            if st.st_ino in seen or not os.path.isfile(path) or os.path.islink(path) or st.st_size > budget // 2:
                continue
            seen.add(st.st_ino)
            dst = os.path.join(ctx, f"layer{layer}", path.lstrip("/"))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            try:
                os.link(path, dst)
            except OSError:
                shutil.copy2(path, dst)
            used += st.st_size
            if used >= budget:
                layer, used = layer + 1, 0
                if layer > layers:
                    sys.exit(0)
sys.exit(f"only {layer - 1} full layers of real files found")
PY
    {
        echo "FROM busybox:musl"
        for i in $(seq 1 "$layers"); do echo "COPY layer$i/ /"; done
        echo 'CMD ["/bin/sh"]'
    } >"$ctx/Dockerfile"
    say "building $ref ($layers layers of ~$layer_mib MiB of system files)"
    DOCKER_BUILDKIT=0 docker build -q --network none -t "$ref" "$ctx" >/dev/null || fail "docker build $ref"
    rm -rf "$ctx"
}
