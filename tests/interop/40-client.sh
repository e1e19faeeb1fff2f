#!/usr/bin/env bash
# berth's registry client against the reference registry (distribution 2.8),
# open and with htpasswd Basic auth, and the real Docker engine: images pushed
# by docker are pulled by berth with the same IMAGE ID; images pushed by berth
# are pulled by docker and copied by skopeo, which verify every digest;
# login/logout share docker's config.json both ways; errors carry the
# registry's own message. Then berth's own registry with --auth: the token
# flow, namespaces (`denied`), private repositories and search.
source "$(dirname "$0")/lib.sh"

start_dockerd
P="$(free_port)"
start_distribution "$P"
R="127.0.0.1:$P"
A_PORT="$(free_port)"
htpasswd -Bbn alice s3cret >"$T/htpasswd"
start_distribution "$A_PORT" "$T/htpasswd"
A="127.0.0.1:$A_PORT"
O="$(new_tmpdir)"

say "== docker pushes, berth pulls"
build_busybox_image busybox:musl
build_app_image app:1
docker tag app:1 "$R/team/app:1"
docker push -q "$R/team/app:1" >/dev/null || fail "docker push"
docker_id="$(docker inspect -f '{{.Id}}' app:1)"
docker_digest="$(docker inspect -f '{{index .RepoDigests 0}}' "$R/team/app:1")"

berth pull "$R/team/app:1" >"$O/pull1" 2>&1 || { cat "$O/pull1"; fail "berth pull"; }
check_eq "$(head -1 "$O/pull1")" "1: Pulling from team/app" "pull: first line as docker's"
check_eq "$(grep -c ': Pull complete$' "$O/pull1")" "$(docker inspect -f '{{len .RootFS.Layers}}' app:1)" \
    "pull: one 'Pull complete' per layer"
check_eq "$(grep '^Digest:' "$O/pull1")" "Digest: ${docker_digest#*@}" "pull: Digest line is the manifest digest"
check_eq "$(grep '^Status:' "$O/pull1")" "Status: Downloaded newer image for $R/team/app:1" "pull: Status line"
check_eq "$(tail -1 "$O/pull1")" "$R/team/app:1" "pull: full reference last"
check_eq "$(berth inspect "$R/team/app:1" | jq -r '.[0].Id')" "$docker_id" "pulled image has docker's IMAGE ID"
check_eq "$(berth inspect "$R/team/app:1" | jq -r '.[0].RepoDigests[0]')" "$docker_digest" "RepoDigests recorded"
# The pull only checked digests; the first read proved the diff IDs and
# measured the layers: the sizes must be docker's.
check_eq "$(berth inspect "$R/team/app:1" | jq -r '.[0].Size')" "$(docker inspect -f '{{.Size}}' app:1)" \
    "pulled image: docker's Size once its diff IDs are proven"
check_eq "$(berth history --format '{{.Size}}' "$R/team/app:1")" "$(docker history --format '{{.Size}}' app:1)" \
    "pulled image: docker's layer sizes in history"

berth pull "$R/team/app:1" >"$O/pull2" 2>&1 || fail "second berth pull"
check_eq "$(grep '^Status:' "$O/pull2")" "Status: Image is up to date for $R/team/app:1" "second pull: up to date"
check_eq "$(grep -c 'Already exists' "$O/pull2")" "$(grep -c 'Pull complete' "$O/pull1")" "second pull: no layer downloaded"
check_eq "$(berth pull -q "$R/team/app@${docker_digest#*@}")" "$R/team/app@${docker_digest#*@}" "pull -q by digest"

docker tag busybox:musl "$R/team/app:musl"
docker push -q "$R/team/app:musl" >/dev/null
check_ok "pull --all-tags" berth pull -a -q "$R/team/app"
check_eq "$(berth inspect "$R/team/app:musl" | jq -r '.[0].Id')" "$(docker inspect -f '{{.Id}}' busybox:musl)" \
    "pull -a fetched the other tag"

say "== berth pushes, docker and skopeo pull"
berth tag "$R/team/app:1" "$R/other/app:2"
berth push "$R/other/app:2" >"$O/push1" 2>&1 || { cat "$O/push1"; fail "berth push"; }
check_eq "$(head -1 "$O/push1")" "The push refers to repository [$R/other/app]" "push: first line as docker's"
check_ok "push: layers mounted from team/app" grep -q ': Mounted from team/app$' "$O/push1"
pushed_digest="$(sed -n 's/^2: digest: \(sha256:[0-9a-f]*\) size: [0-9]*$/\1/p' "$O/push1")"
[[ -n "$pushed_digest" ]] || { cat "$O/push1"; fail "push: no '2: digest: ... size: N' line"; }
ok "push: digest line"
check_eq "$(skopeo inspect --tls-verify=false "docker://$R/other/app:2" | jq -r .Digest)" "$pushed_digest" \
    "skopeo sees the pushed digest"
check_ok "skopeo copy verifies every blob" skopeo copy -q --src-tls-verify=false "docker://$R/other/app:2" "oci:$T/oci:x"
docker rmi -f app:1 "$R/team/app:1" >/dev/null
check_ok "docker pull of berth's push" docker pull -q "$R/other/app:2"
check_eq "$(docker inspect -f '{{.Id}}' "$R/other/app:2")" "$docker_id" "docker pulls the same IMAGE ID"
check_ok "docker runs it" docker run --rm --network none --entrypoint /bin/cat "$R/other/app:2" /etc/app.conf

say "== push of a loaded image (layers stored uncompressed: compressed once)"
docker save busybox:musl -o "$T/bb.tar"
BERTH_ROOT="$T/berth2" berth load -i "$T/bb.tar" >/dev/null || fail "berth load"
BERTH_ROOT="$T/berth2" berth tag busybox:musl "$R/loaded/bb:1"
BERTH_ROOT="$T/berth2" berth push "$R/loaded/bb:1" >"$O/push2" 2>&1 || { cat "$O/push2"; fail "push of a loaded image"; }
check_ok "loaded image: layer pushed" grep -q ': Pushed$' "$O/push2"
BERTH_ROOT="$T/berth2" berth push "$R/loaded/bb:1" >"$O/push3" 2>&1 || fail "second push"
check_ok "second push: Layer already exists" grep -q ': Layer already exists$' "$O/push3"
check_eq "$(grep -o 'digest: sha256:[0-9a-f]*' "$O/push3")" "$(grep -o 'digest: sha256:[0-9a-f]*' "$O/push2")" \
    "second push: same manifest (the gzip was kept, not redone)"
docker pull -q "$R/loaded/bb:1" >/dev/null || fail "docker pull loaded/bb"
check_eq "$(docker inspect -f '{{.Id}}' "$R/loaded/bb:1")" "$(docker inspect -f '{{.Id}}' busybox:musl)" \
    "loaded+pushed image keeps its IMAGE ID"

say "== manifests kept byte for byte: the digests skopeo and distribution see"
raw_digest() { echo "sha256:$(skopeo inspect --raw --tls-verify=false "$1" | sha256sum | cut -d' ' -f1)"; }
served_digest() {
    curl -sfI -H "Accept: $2" "http://$R/v2/$1" | tr -d '\r' | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: //p'
}
SCHEMA2=application/vnd.docker.distribution.manifest.v2+json
OCI_MANIFEST=application/vnd.oci.image.manifest.v1+json
OCI_INDEX=application/vnd.oci.image.index.v1+json
schema2="$(raw_digest "docker://$R/team/app:1")"
check_eq "$schema2" "${docker_digest#*@}" "docker's push: skopeo sees docker's digest"
check_eq "$(skopeo inspect --raw --tls-verify=false "docker://$R/team/app:1" | jq -r .mediaType)" "$SCHEMA2" \
    "docker pushed a schema 2 manifest"
berth image copy "docker://$R/team/app:1" "docker://$R/kept/schema2:1" >"$O/copy-kept" 2>&1 ||
    { cat "$O/copy-kept"; fail "copy registry -> registry"; }
check_eq "$(raw_digest "docker://$R/kept/schema2:1")" "$schema2" "copy registry -> registry keeps docker's digest"
check_eq "$(served_digest kept/schema2/manifests/1 "$SCHEMA2")" "$schema2" "distribution's Docker-Content-Digest agrees"
check_eq "$(tail -1 "$O/copy-kept")" "Copied to $R/kept/schema2:1@$schema2" "copy prints the kept digest"
berth tag "$R/team/app:1" "$R/kept/retagged:1"
berth push "$R/kept/retagged:1" >"$O/push-kept" 2>&1 || { cat "$O/push-kept"; fail "push of a pulled image"; }
check_eq "$(raw_digest "docker://$R/kept/retagged:1")" "$schema2" "pull, tag, push keeps docker's digest"
check_eq "$(sed -n 's/^1: digest: \(sha256:[0-9a-f]*\) size: .*/\1/p' "$O/push-kept")" "$schema2" \
    "push prints the kept digest"

# An OCI image (skopeo converts docker's), through a registry and an oci: layout.
skopeo copy -q --format oci --src-tls-verify=false --dest-tls-verify=false \
    "docker://$R/team/app:1" "docker://$R/oci/app:1" || fail "skopeo copy --format oci"
check_eq "$(skopeo inspect --raw --tls-verify=false "docker://$R/oci/app:1" | jq -r .mediaType)" "$OCI_MANIFEST" \
    "skopeo wrote an OCI manifest"
oci_digest="$(raw_digest "docker://$R/oci/app:1")"
check_ok "copy of the OCI image" berth image copy -q "docker://$R/oci/app:1" "docker://$R/kept/oci:1"
check_eq "$(raw_digest "docker://$R/kept/oci:1")" "$oci_digest" "copy keeps the OCI manifest digest"
check_ok "copy registry -> oci:" berth image copy -q "docker://$R/oci/app:1" "oci:$T/kept-layout:v1"
check_eq "sha256:$(skopeo inspect --raw "oci:$T/kept-layout:v1" | sha256sum | cut -d' ' -f1)" "$oci_digest" \
    "the oci: layout holds the registry's manifest"
check_ok "copy oci: -> registry" berth image copy -q "oci:$T/kept-layout:v1" "docker://$R/kept/oci-back:1"
check_eq "$(raw_digest "docker://$R/kept/oci-back:1")" "$oci_digest" "registry -> oci: -> registry keeps the digest"
check_ok "copy into the existing layout" berth image copy -q "docker://$R/team/app:musl" "oci:$T/kept-layout:musl"
check_eq "$(jq -r '[.manifests[].annotations["org.opencontainers.image.ref.name"]] | join(",")' "$T/kept-layout/index.json")" \
    "v1,musl" "oci:DIR:TAG adds to index.json"
check_ok "skopeo still reads the layout's first image" skopeo inspect "oci:$T/kept-layout:v1"
check_ok "skopeo reads the added image" skopeo inspect "oci:$T/kept-layout:musl"

# A two-platform index, built by hand from two single-platform images.
for arch in amd64 arm64; do
    mkdir -p "$T/rootfs-$arch/etc"
    echo "$arch" >"$T/rootfs-$arch/etc/arch"
    tar -C "$T/rootfs-$arch" -cf "$T/rootfs-$arch.tar" .
    BERTH_ROOT="$T/berth-multi" berth import --platform "linux/$arch" "$T/rootfs-$arch.tar" "$R/multi/app:$arch" >/dev/null ||
        fail "import linux/$arch"
    BERTH_ROOT="$T/berth-multi" berth push -q "$R/multi/app:$arch" >/dev/null || fail "push linux/$arch"
done
amd_digest="$(raw_digest "docker://$R/multi/app:amd64")"
arm_digest="$(raw_digest "docker://$R/multi/app:arm64")"
entry() {
    local raw
    raw="$(skopeo inspect --raw --tls-verify=false "docker://$R/multi/app:$1")"
    jq -n --arg mt "$(jq -r .mediaType <<<"$raw")" --arg d "$(raw_digest "docker://$R/multi/app:$1")" \
        --argjson size "$(printf '%s' "$raw" | wc -c)" --arg arch "$1" \
        '{mediaType: $mt, digest: $d, size: $size, platform: {architecture: $arch, os: "linux"}}'
}
jq -n --arg mt "$OCI_INDEX" --argjson a "$(entry amd64)" --argjson b "$(entry arm64)" \
    '{schemaVersion: 2, mediaType: $mt, manifests: [$a, $b]}' >"$T/index.json"
curl -sf -X PUT -H "Content-Type: $OCI_INDEX" --data-binary "@$T/index.json" \
    "http://$R/v2/multi/app/manifests/1" >/dev/null || fail "PUT of the index"
index_digest="sha256:$(sha256sum <"$T/index.json" | cut -d' ' -f1)"
check_eq "$(raw_digest "docker://$R/multi/app:1")" "$index_digest" "distribution serves the index as put"
check_ok "copy --all" berth image copy -q --all "docker://$R/multi/app:1" "docker://$R/kept/multi:1"
check_eq "$(raw_digest "docker://$R/kept/multi:1")" "$index_digest" "--all keeps the index digest"
check_eq "$(served_digest kept/multi/manifests/1 "$OCI_INDEX")" "$index_digest" "distribution's digest of the copied index"
check_ok "skopeo copies every platform of the copy (verifying every blob)" \
    skopeo copy -q --all --src-tls-verify=false "docker://$R/kept/multi:1" "oci:$T/multi-oci:x"
check_ok "copy --platform linux/arm64" \
    berth image copy -q --platform linux/arm64 "docker://$R/multi/app:1" "docker://$R/kept/arm:1"
check_eq "$(raw_digest "docker://$R/kept/arm:1")" "$arm_digest" "--platform picks the arm64 child, digest kept"
check_ok "copy of an index without --platform" berth image copy -q "docker://$R/multi/app:1" "docker://$R/kept/host:1"
check_eq "$(raw_digest "docker://$R/kept/host:1")" "$amd_digest" "the host's platform by default"
check_fails "--all to a place that holds one platform" berth image copy --all "docker://$R/multi/app:1" "oci:$T/never-multi"
[[ ! -e "$T/never-multi" ]] || fail "a refused copy left $T/never-multi"

say "== berth image copy: skopeo and docker read what it writes, berth reads skopeo's"
berth image copy -q "docker://$R/other/app:2" "oci:$T/copy-oci:v2" || fail "copy registry -> oci:"
check_eq "$(skopeo inspect --raw --config "oci:$T/copy-oci:v2" | sha256sum | cut -d' ' -f1)" "${docker_id#sha256:}" \
    "skopeo finds oci:DIR:REF and its config is docker's IMAGE ID"
check_ok "skopeo copies berth's oci: layout (verifying every blob)" \
    skopeo copy -q "oci:$T/copy-oci:v2" "oci:$T/skopeo-from-oci:x"
berth image copy -q "oci:$T/copy-oci:v2" "docker-archive:$T/copy.tar:copied/app:v2" || fail "copy oci: -> docker-archive:"
check_eq "$(skopeo inspect --raw --config "docker-archive:$T/copy.tar" | sha256sum | cut -d' ' -f1)" "${docker_id#sha256:}" \
    "skopeo reads berth's docker-archive:"
check_ok "skopeo copies berth's docker-archive: (verifying every layer)" \
    skopeo copy -q "docker-archive:$T/copy.tar" "oci:$T/skopeo-from-archive:x"
docker load -q -i "$T/copy.tar" >/dev/null || fail "docker load of berth's docker-archive:"
check_eq "$(docker inspect -f '{{.Id}}' copied/app:v2)" "$docker_id" "docker loads it with the same IMAGE ID"
berth image copy -q "docker://$R/other/app:2" "oci-archive:$T/copy-oci.tar:copied/app:v3" || fail "copy -> oci-archive:"
check_eq "$(skopeo inspect --raw --config "oci-archive:$T/copy-oci.tar:docker.io/copied/app:v3" | sha256sum | cut -d' ' -f1)" \
    "${docker_id#sha256:}" "skopeo reads berth's oci-archive:"
berth image copy -q "oci:$T/oci:x" "berth:from-skopeo:1" || fail "copy skopeo's oci: -> store"
# (skopeo rewrote the config as an OCI config for its layout: a new ID.)
check_eq "$(berth inspect from-skopeo:1 | jq -r '.[0].Id')" \
    "sha256:$(skopeo inspect --raw --config "oci:$T/oci:x" | sha256sum | cut -d' ' -f1)" \
    "berth reads skopeo's oci:DIR:REF with skopeo's image ID"
check_fails "copy from an unknown transport" berth image copy "dir:$T/nope" "oci:$T/never"
[[ ! -e "$T/never" ]] || fail "a failed copy left $T/never"

say "== a large layer pushed in chunks (Content-Range) to distribution"
mkdir -p "$T/big"
head -c 40M /dev/urandom >"$T/big/random.bin"
tar -C "$T/big" -cf "$T/big.tar" random.bin
BERTH_ROOT="$T/berth-big" berth import "$T/big.tar" "$R/big/app:1" >/dev/null || fail "berth import"
printf 'upload-chunk-size = "4MiB"\n' >"$T/chunks.toml"
BERTH_CONFIG="$T/chunks.toml" BERTH_ROOT="$T/berth-big" berth push "$R/big/app:1" >"$O/push-big" 2>&1 \
    || { cat "$O/push-big"; fail "chunked push"; }
check_ok "chunked push: layer pushed" grep -q ': Pushed$' "$O/push-big"
check_ok "skopeo copies the chunk-pushed image (verifying every blob)" \
    skopeo copy -q --src-tls-verify=false "docker://$R/big/app:1" "oci:$T/big-oci:x"
check_ok "docker pulls the chunk-pushed image" docker pull -q "$R/big/app:1"
check_eq "$(docker inspect -f '{{.Id}}' "$R/big/app:1")" \
    "$(BERTH_ROOT="$T/berth-big" berth inspect "$R/big/app:1" | jq -r '.[0].Id')" "chunk-pushed image keeps its ID"

say "== errors carry the registry's message"
check_fails "pull of a missing tag fails" berth pull "$R/team/app:nope"
check_eq "$(berth pull "$R/team/app:nope" 2>&1 | tail -1)" "Error: manifest unknown: manifest unknown" \
    "missing tag: registry's message"
check_fails "push of a missing image fails" berth push "$R/none/such:1"

say "== Basic auth, login and logout"
berth tag "$R/other/app:2" "$A/alice/app:1"
check_eq "$(berth push "$A/alice/app:1" 2>&1 | tail -1)" "Error: unauthorized: authentication required" \
    "push without login: unauthorized"
check_fails "login with a wrong password" berth login -u alice -p wrong "$A"
check_eq "$(berth login -u alice -p wrong "$A" 2>&1 | tail -1)" "Error: unauthorized: authentication required" \
    "wrong password: registry's message"
check_eq "$(echo s3cret | berth login -u alice --password-stdin "$A" 2>/dev/null)" "Login Succeeded" "login"
check_eq "$(stat -c %a "$DOCKER_CONFIG/config.json")" "600" "config.json mode 0600"
check_ok "push after login" berth push -q "$A/alice/app:1"
check_ok "docker uses berth's login" docker pull -q "$A/alice/app:1"
check_eq "$(berth logout "$A")" "Removing login credentials for $A" "logout"
check_fails "pull after logout" berth pull -q "$A/alice/app:1"
docker login -u alice -p s3cret "$A" >/dev/null 2>&1 || fail "docker login"
check_ok "berth uses docker's login" berth pull -q "$A/alice/app:1"
check_eq "$(berth logout "$A")" "Removing login credentials for $A" "logout of docker's login"

say "== search"
check_fails "search against a registry without /v1/search fails" berth search "$R/app"

say "== berth's own registry with --auth: token flow, namespaces, search (the seeds' workflow)"
BP="$(free_port)"
B="127.0.0.1:$BP"
BR="$T/reg-berth"
echo alice-pw | BERTH_REGISTRY_ROOT="$BR" berth registry user add alice --password-stdin >/dev/null
BERTH_REGISTRY_ROOT="$BR" spawn "$BERTH" registry serve --addr "$B" --log-level error --auth
wait_until 30 _http_answers "http://$B/v2/" || fail "berth registry did not start on $B"
berth tag "$R/other/app:2" "$B/mynanoserver:dev"
check_eq "$(berth push "$B/mynanoserver:dev" 2>&1 | tail -1)" \
    "Error: denied: requested access to the resource is denied" "anonymous push: denied"
check_eq "$(echo alice-pw | berth login -u alice --password-stdin "$B" 2>/dev/null)" "Login Succeeded" \
    "login through the token service"
check_eq "$(berth push "$B/mynanoserver:dev" 2>&1 | tail -1)" \
    "Error: denied: requested access to the resource is denied" "logged in, official name: still denied"
berth tag "$R/other/app:2" "$B/alice/mynanoserver:dev"
berth push "$B/alice/mynanoserver:dev" >"$O/push-b" 2>&1 || { cat "$O/push-b"; fail "push to alice/"; }
check_ok "push USER/repo" grep -q '^dev: digest: sha256:' "$O/push-b"
check_eq "$(berth search "$B/mynanoserver" | awk 'NR == 2 { print $1 }')" "alice/mynanoserver" "search finds it"
check_eq "$(berth search "$B/mynanoserver" | head -1 | tr -s ' ')" "NAME DESCRIPTION STARS OFFICIAL AUTOMATED" \
    "search: docker's columns"
BERTH_REGISTRY_ROOT="$BR" berth registry repo private alice/mynanoserver >/dev/null
berth logout "$B" >/dev/null
out="$(BERTH_ROOT="$T/berth3" berth pull "$B/alice/mynanoserver:dev" 2>&1)" && fail "anonymous pull of a private repository succeeded"
check_ok "anonymous pull of a private repository fails with the registry's message" \
    grep -Eq 'denied|unauthorized' <<<"$out"
echo alice-pw | berth login -u alice --password-stdin "$B" >/dev/null 2>&1
check_ok "the owner pulls the private repository (anonymous token first, then the login)" \
    env BERTH_ROOT="$T/berth3" "$BERTH" pull -q "$B/alice/mynanoserver:dev"
check_eq "$(BERTH_ROOT="$T/berth3" berth inspect "$B/alice/mynanoserver:dev" | jq -r '.[0].Id')" "$docker_id" \
    "same IMAGE ID through berth's registry"

n="$(soft_failures)"
[[ "$n" == 0 ]] || fail "$n check(s) failed"
say "40-client: all checks passed"
