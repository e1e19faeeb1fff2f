#!/usr/bin/env bash
# Build benchmark: berth build and docker's builder side by side, on the
# same COPY-heavy Dockerfile over a context of about 1 GB of real files
# (copies of /usr/share and /usr/bin: thousands of files) with a RUN step.
#
#   bench/build.sh             # needs root; builds target/release/berth if needed
#   REPS=3 bench/build.sh
#
# Targets: cold build <= 0.4 x docker build; a rebuild with nothing changed
# under 0.3 s; a rebuild after one file changed <= 0.5 x berth's cold
# build; peak memory under 200 MiB. Not part of .ci/run.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
REPS="${REPS:-3}"
source "$here/lib.sh"

say "berth: $BERTH"
start_dockerd
build_busybox_image busybox:musl
docker save busybox:musl -o "$T/bb.tar"
export BERTH_ROOT="$T/store"
"$BERTH" load -q -i "$T/bb.tar" >/dev/null

ctx="$T/ctx"
mkdir -p "$ctx"
cp -a /usr/share "$ctx/share"
cp -a /usr/bin "$ctx/bin"
cat >"$ctx/Dockerfile" <<'EOF'
FROM busybox:musl
RUN mkdir -p /data && echo prepared > /data/ready
COPY share /data/share
COPY bin /data/bin
CMD ["/bin/sh"]
EOF
say "context: $(du -sh "$ctx" | cut -f1), $(find "$ctx" -type f | wc -l) files"
# Both read the context from the page cache.
find "$ctx" -type f -exec cat {} + >/dev/null

berth_cold=() docker_cold=() berth_rss=()
for _ in $(seq 1 "$REPS"); do
    timed "$BERTH" build -q --no-cache -t bench:berth "$ctx"
    berth_cold+=("$SECS") berth_rss+=("$RSS_MIB")
    timed env DOCKER_BUILDKIT=0 docker build -q --no-cache --network none -t bench:docker "$ctx"
    docker_cold+=("$SECS")
done
# The runs agree on the result.
b_files="$("$BERTH" run --rm bench:berth /bin/sh -c 'find /data | wc -l')"
d_files="$(docker run --rm --network none bench:docker /bin/sh -c 'find /data | wc -l')"
[[ "$b_files" == "$d_files" ]] || fail "the images differ: $b_files vs $d_files paths under /data"

berth_warm=() docker_warm=()
for _ in $(seq 1 "$REPS"); do
    timed "$BERTH" build -q -t bench:berth "$ctx"
    berth_warm+=("$SECS")
    timed env DOCKER_BUILDKIT=0 docker build -q --network none -t bench:docker "$ctx"
    docker_warm+=("$SECS")
done

berth_one=() docker_one=()
for i in $(seq 1 "$REPS"); do
    echo "change $i" >"$ctx/bin/changed-file"
    timed "$BERTH" build -q -t bench:berth "$ctx"
    berth_one+=("$SECS")
    timed env DOCKER_BUILDKIT=0 docker build -q --network none -t bench:docker "$ctx"
    docker_one+=("$SECS")
done

bc="$(median "${berth_cold[@]}")" dc="$(median "${docker_cold[@]}")"
bw="$(median "${berth_warm[@]}")" dw="$(median "${docker_warm[@]}")"
bo="$(median "${berth_one[@]}")" do_="$(median "${docker_one[@]}")"
rss="$(printf '%s\n' "${berth_rss[@]}" | sort -n | tail -1)"
say ""
row "measure (median of $REPS)" "berth" "docker" "ratio" "target" "verdict"
row "cold build vs docker" "${bc} s" "${dc} s" "$(ratio "$bc" "$dc")" "<= 0.4" "$(verdict le "$(ratio "$bc" "$dc")" 0.4)"
row "rebuild, nothing changed" "${bw} s" "${dw} s" "$(ratio "$bw" "$dw")" "< 0.3 s" "$(verdict lt "$bw" 0.3)"
row "rebuild, one file changed" "${bo} s" "${do_} s" "$(ratio "$bo" "$do_")" "<= 0.5 x cold" \
    "$(verdict le "$(ratio "$bo" "$bc")" 0.5) ($(ratio "$bo" "$bc") x cold)"
row "peak memory (cold build)" "${rss} MiB" "" "" "< 200 MiB" "$(verdict lt "$rss" 200)"
