#!/usr/bin/env bash
# berth's offline image commands against the real Docker engine: images built
# by docker, moved with `docker save`, loaded by berth and by docker; then
# `images`, `history`, `inspect` compared field by field, and the tag/rmi
# workflow of the tutorials run on both sides with their outputs compared.
source "$(dirname "$0")/lib.sh"

O="$(new_tmpdir)" # outputs, NAME.docker / NAME.berth

# on_both NAME ARGS...: runs `docker ARGS` and `berth ARGS`, stdout to
# $O/NAME.docker and $O/NAME.berth. A failing command leaves its exit status
# and stderr in the file instead, so the comparison that follows shows it.
on_both() {
    local name="$1" tool rc
    shift
    for tool in docker berth; do
        if "$tool" "$@" >"$O/$name.$tool" 2>"$O/$name.$tool.err"; then :; else
            rc=$?
            printf '%s exited %s: %s\n' "$tool" "$rc" "$(cat "$O/$name.$tool.err")" >"$O/$name.$tool"
        fi
    done
}
same_table() { # same_table NAME [RELATIVE_COLUMN...]
    local name="$1"
    shift
    check_ok "$name: same table as docker" compare_tables "$O/$name.docker" "$O/$name.berth" "$@"
}
same_text() {
    check_eq "$(cat "$O/$1.berth")" "$(cat "$O/$1.docker")" "$1: same output as docker"
}
same_json() { # same_json NAME: equal JSON documents, key order aside
    check_eq "$(jq -S . "$O/$1.berth" 2>&1)" "$(jq -S . "$O/$1.docker")" "$1: same JSON as docker"
}

# Bytes of every file in the store except SQLite's own files and lock files.
store_data_bytes() {
    { find "$BERTH_ROOT" -type f ! -name '*.db*' ! -name '*.sqlite*' ! -name '*-wal' \
        ! -name '*-shm' ! -name '*.lock' ! -name 'lock' -printf '%s\n' 2>/dev/null || true; } |
        awk '{ s += $1 } END { print s + 0 }'
}

say "== images built by docker"
start_dockerd
build_busybox_image busybox:musl

build_app_image app:v1
docker save -o "$T/images.tar" busybox:musl app:v1 || fail "docker save"
# Another image under the name app:v1: loading it later leaves the first
# app:v1 dangling (<none>), for the prune checks.
# Docker orders images by creation time in whole seconds, ties at random:
# keep the two app:v1 images a second apart.
sleep 1.1
ctx="$(new_tmpdir)"
printf 'FROM busybox:musl\nLABEL variant=two\nRUN echo two > /two\n' >"$ctx/Dockerfile"
DOCKER_BUILDKIT=0 docker build -q --network none -t app:v1 "$ctx" >/dev/null || fail "docker build (app:v1 again)"
docker save -o "$T/retag.tar" app:v1 || fail "docker save"
# Docker's view of a LOADED image (no build parents, <missing> history
# rows) is what berth must reproduce, so docker loads the archive too.
docker rmi -f $(docker images -a -q) >/dev/null 2>&1 || true
check_eq "$(docker images -a -q)" "" "docker starts from an empty image list"
docker load -i "$T/images.tar" >/dev/null || fail "docker load"
bb_id="$(docker inspect --format '{{.Id}}' busybox:musl)"
app_id="$(docker inspect --format '{{.Id}}' app:v1)"
ok "docker built busybox:musl ${bb_id:7:12} and app:v1 ${app_id:7:12}"

say "== berth load"
check_show "berth load -i (docker save archive)" berth load -i "$T/images.tar"
check_eq "$(berth images -q --no-trunc 2>&1 | sort)" "$(printf '%s\n' "$app_id" "$bb_id" | sort)" \
    "berth has the images under docker's IDs"

say "== images"
on_both images images
same_table images CREATED
on_both image-ls image ls
same_table image-ls CREATED
on_both images-a images -a
same_table images-a CREATED
on_both images-no-trunc images --no-trunc
same_table images-no-trunc CREATED
on_both images-digests images --digests
same_table images-digests CREATED
on_both images-q images -q
same_text images-q
on_both images-q-no-trunc images -q --no-trunc
same_text images-q-no-trunc
on_both images-repo images busybox
same_table images-repo CREATED
on_both images-repo-tag image ls app:v1
same_table images-repo-tag CREATED
on_both images-reference images --filter 'reference=busy*'
same_table images-reference CREATED
on_both images-label images --filter label=com.example.team=images
same_table images-label CREATED
on_both images-label-key images --filter label=org.opencontainers.image.title
same_table images-label-key CREATED
on_both images-dangling images --filter dangling=true
same_table images-dangling
on_both images-before images --filter before=app:v1
same_table images-before CREATED
on_both images-since images --filter since=busybox:musl
same_table images-since CREATED
on_both images-format images --format '{{.Repository}}:{{.Tag}}|{{.ID}}|{{.Size}}|{{.CreatedAt}}'
same_text images-format
on_both images-format-table images --format 'table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.Size}}'
same_table images-format-table

say "== history"
for img in app:v1 busybox:musl; do
    on_both "history-$img" history "$img"
    same_table "history-$img" CREATED
    on_both "history-no-trunc-$img" history --no-trunc "$img"
    same_table "history-no-trunc-$img" CREATED
    on_both "history-q-$img" history -q "$img"
    same_text "history-q-$img"
    on_both "history-format-$img" history --no-trunc \
        --format '{{.ID}}|{{.CreatedAt}}|{{.CreatedBy}}|{{.Size}}|{{.Comment}}' "$img"
    same_text "history-format-$img"
done
on_both history-by-id history "${app_id:7:12}"
same_table history-by-id CREATED
on_both image-history image history app:v1
same_table image-history CREATED

say "== inspect"
# Docker 25+ no longer prints Container, ContainerConfig and VirtualSize, so
# berth may leave them out; when it prints them they must agree.
required="Id,RepoTags,RepoDigests,Parent,Comment,Created,DockerVersion,Author,Config,Architecture,Os,Size,RootFS"
optional="Container,ContainerConfig,VirtualSize,Variant,OsVersion"
on_both inspect inspect busybox:musl app:v1
check_show "inspect: fields agree with docker" \
    compare_json_fields "$O/inspect.docker" "$O/inspect.berth" "$required" "$optional"
check_ok "inspect: Metadata.LastTagTime is present" \
    jq -e '.[0].Metadata | has("LastTagTime")' "$O/inspect.berth"
on_both image-inspect image inspect app:v1
check_ok "image inspect: fields agree with docker" \
    compare_json_fields "$O/image-inspect.docker" "$O/image-inspect.berth" "$required" ""
on_both inspect-short-id inspect "${app_id:7:12}"
check_ok "inspect by short ID: fields agree with docker" \
    compare_json_fields "$O/inspect-short-id.docker" "$O/inspect-short-id.berth" "$required" ""
on_both inspect-full-id inspect "$bb_id"
check_ok "inspect by full ID: fields agree with docker" \
    compare_json_fields "$O/inspect-full-id.docker" "$O/inspect-full-id.berth" "$required" ""
on_both inspect-format inspect --format '{{.Id}} {{.Os}}/{{.Architecture}} {{.Size}} {{.Config.User}} {{.Config.WorkingDir}}' app:v1
same_text inspect-format
on_both inspect-format-json inspect --format '{{json .Config}}' app:v1
same_json inspect-format-json
on_both inspect-missing image inspect nosuch:img
check_eq "$(grep -o 'No such image: .*' "$O/inspect-missing.berth")" \
    "$(grep -o 'No such image: .*' "$O/inspect-missing.docker.err")" \
    "inspect of a missing image: docker's error"

say "== tag and rmi (the tutorial's workflow), on both sides"
before_bytes="$(store_data_bytes)"
on_both tag tag busybox:musl busybox:local
same_text tag
check_eq "$(berth images --format '{{.ID}}' busybox:local 2>&1)" "${bb_id:7:12}" \
    "berth tag: busybox:local has the IMAGE ID of busybox:musl"
if ((before_bytes > 0)); then
    check_eq "$(store_data_bytes)" "$before_bytes" "berth tag wrote no blob"
else
    check_eq "$before_bytes" "(some bytes)" "the store holds the loaded blobs"
fi
on_both tag-other-repo image tag busybox:musl mybox:v1
same_text tag-other-repo
on_both images-after-tag images
same_table images-after-tag CREATED
on_both inspect-after-tag inspect --format '{{json .RepoTags}}' busybox:musl
same_json inspect-after-tag

on_both rmi-by-id-conflict rmi "${bb_id:7:12}"
check_eq "$(grep -o 'conflict: .*' "$O/rmi-by-id-conflict.berth")" \
    "$(grep -o 'conflict: .*' "$O/rmi-by-id-conflict.docker.err")" \
    "rmi by ID of an image in several repositories: docker's conflict error"
on_both rmi-one-tag rmi busybox:musl
same_text rmi-one-tag
on_both rmi-image-rm image rm mybox:v1
same_text rmi-image-rm
on_both images-after-untag images -a
same_table images-after-untag CREATED
on_both rmi-last-tag rmi busybox:local
same_text rmi-last-tag
on_both rmi-app rmi app:v1
same_text rmi-app
on_both images-empty images -a
same_table images-empty
on_both rmi-missing rmi nosuch:img
check_eq "$(grep -o 'No such image: .*' "$O/rmi-missing.berth")" \
    "$(grep -o 'No such image: .*' "$O/rmi-missing.docker.err")" \
    "rmi of a missing image: docker's error"
check_ok "berth system check: store consistent after the removals" berth system check

say "== dangling images, prune and system df"
# The Images row of `system df`, spaces squeezed.
df_images_row() { grep '^Images ' "$O/$1.$2" | tr -s ' '; }
on_both reload load -i "$T/images.tar"
same_text reload
on_both load-retag load -i "$T/retag.tar"
same_text load-retag
on_both images-with-dangling images
same_table images-with-dangling CREATED
on_both images-dangling-only images --filter dangling=true
same_table images-dangling-only CREATED
on_both system-df system df
check_eq "$(df_images_row system-df berth)" "$(df_images_row system-df docker)" "system df: the Images row"
on_both prune image prune -f
same_text prune
on_both system-df-after-prune system df
check_eq "$(df_images_row system-df-after-prune berth)" "$(df_images_row system-df-after-prune docker)" \
    "system df after prune: the Images row"
# Docker removes the images in no fixed order, so a layer's `deleted:` line
# can follow either image: compare the lines as a set.
on_both prune-all image prune -a -f
check_eq "$(sort "$O/prune-all.berth")" "$(sort "$O/prune-all.docker")" "image prune -a: same lines as docker"
check_eq "$(tail -1 "$O/prune-all.berth")" "$(tail -1 "$O/prune-all.docker")" "image prune -a: same total"
on_both images-after-prune images -a
same_table images-after-prune
check_ok "berth system check: store consistent after the prunes" berth system check
