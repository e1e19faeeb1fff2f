#!/usr/bin/env bash
# berth's registry server against the real clients: the Docker engine
# (push, pull by tag and digest, login with refresh tokens, logout, the
# workshop's denied push, search with owner descriptions),
# skopeo (copy both ways, inspect, list-tags, delete) and podman (push,
# pull), on an open registry and one with --auth.
source "$(dirname "$0")/lib.sh"

# start_berth_registry PORT ROOT [ARGS...]: berth registry serve in the background.
start_berth_registry() {
    local port="$1" root="$2"
    shift 2
    BERTH_REGISTRY_ROOT="$root" spawn "$BERTH" registry serve --addr "127.0.0.1:$port" \
        --log-level error "$@"
    wait_until 30 _http_answers "http://127.0.0.1:$port/v2/" ||
        fail "berth registry did not start on 127.0.0.1:$port"
    say "berth registry up on 127.0.0.1:$port $*"
}

start_dockerd
build_busybox_image busybox:musl
build_app_image app:1

say "== open registry (anonymous pull and push, like registry:2)"
P="$(free_port)"
R="127.0.0.1:$P"
start_berth_registry "$P" "$T/reg-open"
check_fails "a second server on the same port fails" "$BERTH" registry serve --addr "$R"
check_eq "$(BERTH_REGISTRY_ROOT="$T/x" "$BERTH" registry serve --addr "$R" 2>&1 | tail -1)" \
    "Error: listen tcp $R: bind: address already in use" "port taken: docker's wording"

docker tag app:1 "$R/team/app:1"
docker tag busybox:musl "$R/busybox:musl"
check_ok "docker push (multi-layer image)" docker push "$R/team/app:1"
check_ok "docker push (one-component name)" docker push "$R/busybox:musl"
digest="$(docker inspect -f '{{index .RepoDigests 0}}' "$R/team/app:1")"
digest="${digest#*@}"
app_id="$(docker inspect -f '{{.Id}}' app:1)"
check_eq "$(curl -s "http://$R/v2/team/app/tags/list")" '{"name":"team/app","tags":["1"]}' "tags list"
check_eq "$(curl -sI "http://$R/v2/team/app/manifests/1" | tr -d '\r' | sed -n 's/^docker-content-digest: //Ip')" \
    "$digest" "HEAD manifest: Docker-Content-Digest is the pushed digest"
docker rmi "$R/team/app:1" app:1 >/dev/null
check_ok "docker pull by tag" docker pull "$R/team/app:1"
check_eq "$(docker inspect -f '{{.Id}}' "$R/team/app:1")" "$app_id" "pulled image has the same ID"
docker rmi "$R/team/app:1" >/dev/null
check_ok "docker pull by digest" docker pull "$R/team/app@$digest"
check_eq "$(docker inspect -f '{{.Id}}' "$R/team/app@$digest")" "$app_id" "pulled by digest: same ID"
check_ok "docker run from a pulled image" docker run --rm --network none "$R/busybox:musl" true

say "== docker search"
BERTH_REGISTRY_ROOT="$T/reg-open" berth registry repo describe team/app "berth interop app" >/dev/null
out="$(docker search "$R/app" 2>&1)" || fail "docker search: $out"
check_eq "$(head -1 <<<"$out" | tr -s ' ')" "NAME DESCRIPTION STARS OFFICIAL AUTOMATED" "docker search: header"
check_ok "docker search: team/app with its description" grep -Eq "team/app +berth interop app +0" <<<"$out"
check_eq "$(docker search --limit 1 "$R/app" | tail -n +2 | wc -l)" "1" "docker search --limit"
check_ok "docker search: official images marked" grep -Eq "^busybox .*\[OK\]" <<<"$(docker search "$R/busybox")"

say "== skopeo"
check_ok "skopeo copy registry -> oci" skopeo copy -q --src-tls-verify=false "docker://$R/team/app:1" "oci:$T/oci:app"
check_ok "skopeo copy oci -> registry" skopeo copy -q --dest-tls-verify=false "oci:$T/oci:app" "docker://$R/copies/app:v2"
# skopeo turns Docker schema 2 into OCI on the way into an oci: layout, so
# the digest to keep is the layout's.
check_eq "$(skopeo inspect --tls-verify=false "docker://$R/copies/app:v2" | jq -r .Digest)" \
    "$(skopeo inspect "oci:$T/oci:app" | jq -r .Digest)" "copied image keeps its digest"
check_ok "skopeo copy registry -> registry (mount across repositories)" \
    skopeo copy -q --src-tls-verify=false --dest-tls-verify=false "docker://$R/team/app:1" "docker://$R/team/app2:1"
check_eq "$(skopeo list-tags --tls-verify=false "docker://$R/copies/app" | jq -c .Tags)" '["v2"]' "skopeo list-tags"
check_ok "skopeo delete" skopeo delete --tls-verify=false "docker://$R/copies/app:v2"
check_eq "$(curl -s -o /dev/null -w '%{http_code}' "http://$R/v2/copies/app/manifests/v2")" "404" "deleted manifest is gone"
check_eq "$(curl -s "http://$R/v2/_catalog" | jq -c .repositories)" '["busybox","copies/app","team/app","team/app2"]' "catalog"

say "== repository deletion and garbage collection"
check_eq "$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "http://$R/v1/repositories/team/app2/")" "202" \
    "delete a whole repository"
check_eq "$(curl -s -o /dev/null -w '%{http_code}' "http://$R/v2/team/app2/tags/list")" "404" "deleted repository is gone"
gc_out="$(BERTH_REGISTRY_ROOT="$T/reg-open" berth registry gc --grace-minutes 0 2>&1)" || fail "gc: $gc_out"
check_ok "gc reports what it reclaimed" grep -q '^Total reclaimed space: [0-9]* bytes$' <<<"$gc_out"
docker rmi "$R/team/app@$digest" >/dev/null 2>&1 || true
docker rmi "$R/team/app:1" >/dev/null 2>&1 || true
check_ok "layers shared with the deleted repository survive gc" docker pull -q "$R/team/app:1"
check_ok "skopeo copy still verifies every blob after gc" \
    skopeo copy -q --src-tls-verify=false "docker://$R/team/app:1" "oci:$T/oci-after-gc:app"

say "== podman"
# podman refuses an auth file that does not exist.
[[ -e "$REGISTRY_AUTH_FILE" ]] || echo '{}' >"$REGISTRY_AUTH_FILE"
check_ok "podman pull" podman pull -q --tls-verify=false "$R/team/app:1"
check_ok "podman push" podman push -q --tls-verify=false "$R/team/app:1" "$R/podman/app:1"
check_eq "$(skopeo inspect --tls-verify=false "docker://$R/podman/app:1" | jq -r '.Layers | length')" \
    "$(docker inspect -f '{{len .RootFS.Layers}}' "$R/team/app@$digest")" "podman-pushed image has every layer"

say "== registry with --auth (Docker Hub rules)"
AP="$(free_port)"
A="127.0.0.1:$AP"
AR="$T/reg-auth"
echo "alice-pw" | BERTH_REGISTRY_ROOT="$AR" berth registry user add alice --password-stdin >/dev/null
echo "admin-pw" | BERTH_REGISTRY_ROOT="$AR" berth registry user add boss --admin --password-stdin >/dev/null
start_berth_registry "$AP" "$AR" --auth
check_eq "$(curl -s -o /dev/null -w '%{http_code}' "http://$A/v2/")" "401" "anonymous /v2/ is challenged"

docker tag busybox:musl "$A/mynanoserver:dev"
out="$(docker push "$A/mynanoserver:dev" 2>&1)" && fail "anonymous push to an official name succeeded"
check_eq "$(tail -1 <<<"$out")" "denied: requested access to the resource is denied" "anonymous push: denied"
check_eq "$(echo alice-wrong | docker login -u alice --password-stdin "$A" 2>&1 >/dev/null | grep -c unauthorized)" "1" \
    "docker login with a wrong password fails"
check_eq "$(echo alice-pw | docker login -u alice --password-stdin "$A" 2>/dev/null)" "Login Succeeded" "docker login"
# docker keeps the refresh token berth issued instead of the password, and
# trades it for access tokens from then on.
check_eq "$(jq -r --arg h "$A" '.auths[$h].identitytoken // "" | length > 0' "$DOCKER_CONFIG/config.json")" "true" \
    "docker login stores berth's refresh token as its identitytoken"
out="$(docker push "$A/mynanoserver:dev" 2>&1)" && fail "push outside alice's namespace succeeded"
check_eq "$(tail -1 <<<"$out")" "denied: requested access to the resource is denied" "logged in, official name: still denied"
docker tag busybox:musl "$A/alice/mynanoserver:dev"
check_ok "docker push USER/repo" docker push "$A/alice/mynanoserver:dev"
docker tag app:1 "$A/alice/secret:1" 2>/dev/null || docker tag "$R/team/app@$digest" "$A/alice/secret:1"
check_ok "docker push a repository to make private" docker push "$A/alice/secret:1"
BERTH_REGISTRY_ROOT="$AR" berth registry repo private alice/secret >/dev/null
# A password change revokes the stored refresh token: docker must log in again.
echo alice-new | BERTH_REGISTRY_ROOT="$AR" berth registry user passwd alice --password-stdin >/dev/null
# (A pull, not a push: docker retries failed pushes for a minute.)
check_fails "a password change revokes docker's stored login" docker pull -q "$A/alice/secret:1"
echo alice-pw | BERTH_REGISTRY_ROOT="$AR" berth registry user passwd alice --password-stdin >/dev/null
check_fails "the old refresh token stays revoked" docker pull -q "$A/alice/secret:1"
echo alice-pw | docker login -u alice --password-stdin "$A" >/dev/null 2>&1
check_ok "docker pull after logging in again" docker pull -q "$A/alice/secret:1"

say "== personal access tokens"
tok="$(BERTH_REGISTRY_ROOT="$AR" berth registry token create alice --scope write --description ci 2>/dev/null)"
check_ok "berth registry token create prints the token once" grep -q '^berth_pat_' <<<"$tok"
check_eq "$(echo "$tok" | docker login -u alice --password-stdin "$A" 2>/dev/null)" "Login Succeeded" \
    "docker login with an access token"
docker tag busybox:musl "$A/alice/bytoken:1"
check_ok "docker push with an access token" docker push "$A/alice/bytoken:1"
check_ok "berth login with an access token" bash -c "echo '$tok' | '$BERTH' login -u alice --password-stdin '$A'"
check_ok "berth pull with an access token" berth pull -q "$A/alice/secret:1"
check_ok "the token's last use is recorded" \
    grep -Eq ' write +[^ ]+ +[0-9]{4}-' <<<"$(BERTH_REGISTRY_ROOT="$AR" berth registry token ls alice)"
tok_id="${tok#berth_pat_}"
tok_id="${tok_id:0:16}"
check_ok "berth registry token rm" env BERTH_REGISTRY_ROOT="$AR" "$BERTH" registry token rm alice "$tok_id"
docker rmi "$A/alice/bytoken:1" >/dev/null
check_fails "a revoked token no longer pulls a private repository" docker pull -q "$A/alice/secret:1"
docker logout "$A" >/dev/null
berth logout "$A" >/dev/null 2>&1 || true
echo alice-pw | docker login -u alice --password-stdin "$A" >/dev/null 2>&1

say "== owner descriptions (Docker Hub's PATCH /v2/repositories/NAMESPACE/NAME/)"
desc='{"description":"alice describes her server"}'
check_eq "$(curl -s -o /dev/null -w '%{http_code}' -X PATCH -d "$desc" "http://$A/v2/repositories/alice/mynanoserver/")" \
    "401" "anonymous description change: 401"
check_eq "$(curl -s -u alice:alice-pw -X PATCH -H 'content-type: application/json' -d "$desc" \
    "http://$A/v2/repositories/alice/mynanoserver/" | jq -r .description)" "alice describes her server" \
    "the owner sets the description"
check_ok "docker search shows the owner's description" \
    grep -Eq "alice/mynanoserver +alice describes her server" <<<"$(docker search "$A/mynanoserver")"
check_ok "docker logout" docker logout "$A"
docker rmi "$A/alice/mynanoserver:dev" "$A/alice/secret:1" >/dev/null
check_ok "anonymous pull of a public repository" docker pull -q "$A/alice/mynanoserver:dev"
out="$(docker pull "$A/alice/secret:1" 2>&1)" && fail "anonymous pull of a private repository succeeded"
check_ok "anonymous pull of a private repository: access denied" grep -q "pull access denied" <<<"$out"
check_eq "$(docker search "$A/alice" | grep -c secret)" "0" "anonymous search: private repository hidden"
echo alice-pw | docker login -u alice --password-stdin "$A" >/dev/null 2>&1
check_ok "the owner pulls the private repository" docker pull -q "$A/alice/secret:1"
check_eq "$(docker search "$A/alice" | grep -c alice/secret)" "1" "the owner's search shows the private repository"
docker logout "$A" >/dev/null
echo admin-pw | docker login -u boss --password-stdin "$A" >/dev/null 2>&1
check_ok "an administrator pushes an official image" docker push "$A/mynanoserver:dev"
docker logout "$A" >/dev/null
# With --auth a bare name is library/NAME, as on Docker Hub.
docker rmi "$A/mynanoserver:dev" >/dev/null
check_ok "the official image pulls by its library/ name" docker pull -q "$A/library/mynanoserver:dev"
check_ok "and again by its bare name" docker pull -q "$A/mynanoserver:dev"
check_eq "$(docker inspect -f '{{.Id}}' "$A/library/mynanoserver:dev")" \
    "$(docker inspect -f '{{.Id}}' "$A/mynanoserver:dev")" "both names are one image"
check_eq "$(docker search "$A/mynanoserver" | grep -c '^mynanoserver ')" "1" \
    "docker search lists the official image once"

check_ok "skopeo with credentials" skopeo copy -q --src-tls-verify=false --dest-tls-verify=false \
    --dest-creds alice:alice-pw "docker://$R/team/app:1" "docker://$A/alice/app:1"
check_fails "skopeo into someone else's namespace" skopeo copy -q --src-tls-verify=false \
    --dest-tls-verify=false --dest-creds alice:alice-pw "docker://$R/team/app:1" "docker://$A/boss/app:1"
check_eq "$(skopeo inspect --tls-verify=false "docker://$A/alice/app:1" | jq -r .Digest)" "$digest" \
    "anonymous skopeo inspect of a public repository"
check_ok "podman login" podman login --tls-verify=false -u alice -p alice-pw "$A"
check_ok "podman push with login" podman push -q --tls-verify=false "$R/team/app:1" "$A/alice/podman:1"

say "== TLS"
TP="$(free_port)"
certs="$REPO_ROOT/crates/registry/tests/fixtures"
start_tls() {
    BERTH_REGISTRY_ROOT="$T/reg-tls" spawn "$BERTH" registry serve --addr "127.0.0.1:$TP" \
        --log-level error --tls-cert "$certs/tls.crt" --tls-key "$certs/tls.key"
    wait_until 30 curl -sf --cacert "$certs/tls.crt" "https://localhost:$TP/healthz" ||
        fail "berth registry with TLS did not start"
}
start_tls
check_eq "$(curl -s --cacert "$certs/tls.crt" -o /dev/null -w '%{http_code} %{http_version}' "https://localhost:$TP/v2/")" \
    "200 2" "HTTPS with HTTP/2"
mkdir -p "$T/certs.d"
cp "$certs/tls.crt" "$T/certs.d/ca.crt"
check_ok "skopeo pushes over verified TLS" skopeo copy -q --src-tls-verify=false \
    --dest-cert-dir "$T/certs.d" "docker://$R/team/app:1" "docker://localhost:$TP/tls/app:1"
check_eq "$(skopeo inspect --cert-dir "$T/certs.d" "docker://localhost:$TP/tls/app:1" | jq -r .Digest)" "$digest" \
    "skopeo inspects over verified TLS"

if (($(soft_failures) > 0)); then exit 1; fi
