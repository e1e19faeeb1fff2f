#!/usr/bin/env bash
# Local benchmark: berth against the real Docker engine, side by side, on the
# same ~1 GiB image (8 layers of real system files on top of busybox).
#
#   bench/local.sh            # needs root; builds target/release/berth if needed
#   REPS=5 TAGS=10000 bench/local.sh
#
# Measures, REPS times each, interleaving berth and docker:
#   berth load vs docker load (docker rmi first, so docker really loads)
#   berth save vs docker save, and berth's peak RSS for both
#   `images` with TAGS tags in the store, `tag` latency (hyperfine)
# Targets: load and save ratio <= 0.5, peak RSS < 100 MiB, images < 100 ms,
# tag < 20 ms. Not part of .ci/run. Env: BERTH, REPS, TAGS, LAYERS, LAYER_MIB.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"

REPS="${REPS:-3}"
TAGS="${TAGS:-10000}"
LAYERS="${LAYERS:-8}"
LAYER_MIB="${LAYER_MIB:-128}"

source "$here/lib.sh"

say "berth: $BERTH ($("$BERTH" --version 2>&1 | head -1))"
start_dockerd

# ---------------------------------------------------------------- the image
# Real files (libraries, binaries, docs, python), hard-linked into the build
# context: LAYERS layers of about LAYER_MIB MiB each.
ctx="$(new_tmpdir)"
python3 - "$ctx" "$LAYERS" "$LAYER_MIB" <<'EOF'
import glob, os, shutil, sys

ctx, layers, layer_mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
budget = layer_mib << 20
sources = ["/usr/lib/x86_64-linux-gnu", "/usr/share", "/usr/bin", *sorted(glob.glob("/usr/lib/python3*")),
           "/usr/lib/gcc", "/usr/include", "/usr/libexec", "/usr/lib/jvm", "/usr/lib", "/usr/sbin"]
seen, layer, used = set(), 1, 0
def place(path):
    global layer, used
    st = os.lstat(path)
    if st.st_ino in seen or not (os.path.isfile(path) or os.path.islink(path)):
        return
    seen.add(st.st_ino)
    if st.st_size > budget // 2:  # keep the layers of similar size
        return
    if used and used + st.st_size > budget:
        layer, used = layer + 1, 0
        if layer > layers:
            return
    dst = os.path.join(ctx, f"layer{layer}", path.lstrip("/"))
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if os.path.islink(path):
        os.symlink(os.readlink(path), dst)
    else:
        try:
            os.link(path, dst)
        except OSError:  # another filesystem: copy instead
            shutil.copy2(path, dst)
        used += st.st_size
    if used >= budget:
        layer, used = layer + 1, 0
for src in sources:
    for root, dirs, files in os.walk(src):
        dirs.sort()
        for f in sorted(files):
            if layer > layers:
                sys.exit(0)
            place(os.path.join(root, f))
sys.exit(f"only {layer - 1} full layers of real files found")
EOF
{
    echo "FROM busybox:musl"
    for i in $(seq 1 "$LAYERS"); do echo "COPY layer$i/ /"; done
    echo 'CMD ["/bin/sh"]'
} >"$ctx/Dockerfile"
build_busybox_image busybox:musl
say "building bench:big ($LAYERS layers of ~$LAYER_MIB MiB of system files)"
DOCKER_BUILDKIT=0 docker build -q --network none -t bench:big "$ctx" >/dev/null
rm -rf "$ctx"
docker save -o "$T/big.tar" bench:big
big_id="$(docker inspect --format '{{.Id}}' bench:big)"
say "docker save: $(du -m "$T/big.tar" | cut -f1) MiB, $(docker inspect --format '{{len .RootFS.Layers}}' bench:big) layers, ID ${big_id:7:12}"
cat "$T/big.tar" >/dev/null # same warm page cache for both

# ------------------------------------------------------------ load and save
declare -a bl dl bs ds brl brs
for rep in $(seq 1 "$REPS"); do
    export BERTH_ROOT="$T/store"
    rm -rf "$BERTH_ROOT"
    timed "$BERTH" load -i "$T/big.tar"
    bl+=("$SECS") brl+=("$RSS_MIB")
    if ids="$("$BERTH" images -q --no-trunc 2>&1)"; then
        [[ "$ids" == "$big_id" ]] || fail "berth load gave another image ID: $ids"
    fi

    docker rmi -f bench:big >/dev/null
    timed docker load -i "$T/big.tar"
    dl+=("$SECS")
    say "load  rep $rep: berth ${bl[-1]}s (peak ${brl[-1]} MiB)  docker ${dl[-1]}s  ratio $(ratio "${bl[-1]}" "${dl[-1]}")"

    rm -f "$T/out.tar"
    timed "$BERTH" save -o "$T/out.tar" bench:big
    bs+=("$SECS") brs+=("$RSS_MIB")
    rm -f "$T/out.tar"
    timed docker save -o "$T/out.tar" bench:big
    ds+=("$SECS")
    rm -f "$T/out.tar"
    say "save  rep $rep: berth ${bs[-1]}s (peak ${brs[-1]} MiB)  docker ${ds[-1]}s  ratio $(ratio "${bs[-1]}" "${ds[-1]}")"
done
load_b="$(median "${bl[@]}")" load_d="$(median "${dl[@]}")"
save_b="$(median "${bs[@]}")" save_d="$(median "${ds[@]}")"
rss_load="$(printf '%s\n' "${brl[@]}" | sort -n | tail -1)"
rss_save="$(printf '%s\n' "${brs[@]}" | sort -n | tail -1)"

# ------------------------------------------------------- many tags, tag latency
images_b=n/a images_d=n/a tag_b=n/a tag_d=n/a tag_loop_s=n/a
if ! "$BERTH" tag bench:big many/tags:probe >/dev/null 2>&1 || ! "$BERTH" images >/dev/null 2>&1; then
    say "berth tag or berth images does not work yet: no images/tag figures"
    TAGS=0
fi
if ((TAGS > 0)); then
say "creating $TAGS tags with berth tag"
start=$SECONDS
for i in $(seq -w 1 "$TAGS"); do
    "$BERTH" tag bench:big "many/tags:t$i" || fail "berth tag #$i"
done
tag_loop_s=$((SECONDS - start))
say "  $TAGS berth tag processes took ${tag_loop_s}s"

# docker tag costs ~40 ms a process; the API call it makes, sent from one
# process, creates the same tags in a fraction of the time.
say "creating $TAGS tags in docker (POST /images/{id}/tag)"
python3 - "${DOCKER_HOST#unix://}" "$big_id" "$TAGS" <<'EOF'
import http.client, socket, sys

class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost")
        self.path = path
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self.path)

path, image, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
conn = UnixConnection(path)
width = len(str(count))
for i in range(1, count + 1):
    conn.request("POST", f"/images/{image}/tag?repo=many/tags&tag=t{i:0{width}d}")
    r = conn.getresponse()
    r.read()
    if r.status != 201:
        sys.exit(f"tag {i}: HTTP {r.status}")
EOF
berth_rows=$("$BERTH" images | wc -l)
docker_rows=$(docker images | wc -l)
say "  images rows: berth $berth_rows, docker $docker_rows"
images_b="$(mean_ms "$BERTH images")"
images_d="$(mean_ms "/usr/bin/docker images")"
say "images ($TAGS tags): berth ${images_b} ms  docker ${images_d} ms  ratio $(ratio "$images_b" "$images_d")"

tag_b="$(mean_ms "$BERTH tag bench:big latency/tag:x")"
tag_d="$(mean_ms "/usr/bin/docker tag bench:big latency/tag:x")"
say "tag: berth ${tag_b} ms  docker ${tag_d} ms  ratio $(ratio "$tag_b" "$tag_d")"
fi

# ------------------------------------------------------------------ summary
echo
echo "Summary (median of $REPS; image $(du -m "$T/big.tar" | cut -f1) MiB, $LAYERS+2 layers; $(nproc) cores)"
row "metric" "berth" "docker" "ratio" "target" "verdict"
row "load (s)" "$load_b" "$load_d" "$(ratio "$load_b" "$load_d")" "ratio<=0.5" "$(verdict le "$(ratio "$load_b" "$load_d")" 0.5)"
row "save (s)" "$save_b" "$save_d" "$(ratio "$save_b" "$save_d")" "ratio<=0.5" "$(verdict le "$(ratio "$save_b" "$save_d")" 0.5)"
row "peak RSS load (MiB)" "$rss_load" "-" "-" "<100" "$(verdict lt "$rss_load" 100)"
row "peak RSS save (MiB)" "$rss_save" "-" "-" "<100" "$(verdict lt "$rss_save" 100)"
row "images, $TAGS tags (ms)" "$images_b" "$images_d" "$(ratio "$images_b" "$images_d")" "<100" "$(verdict lt "$images_b" 100)"
row "tag (ms)" "$tag_b" "$tag_d" "$(ratio "$tag_b" "$tag_d")" "<20" "$(verdict lt "$tag_b" 20)"
row "$TAGS x berth tag, total (s)" "$tag_loop_s" "-" "-" "-" "-"
