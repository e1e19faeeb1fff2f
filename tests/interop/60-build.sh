#!/usr/bin/env bash
# berth build against the real Docker engine's (legacy) builder, on the
# same Dockerfiles and contexts: the images' config fields equal, their file
# trees equal (path, type, mode, owner, content, link target; times left
# out), the same number of history entries with the same empty_layer flags.
# Then what docker does not share: berth's cache; a git context; the
# tutorial's flow (a base image pushed to berth's registry, --push); and
# --output to an archive docker loads.
source "$(dirname "$0")/lib.sh"

start_dockerd
build_busybox_image busybox:musl
docker save busybox:musl -o "$T/bb.tar"
berth load -q -i "$T/bb.tar" >/dev/null || fail "berth load"
O="$(new_tmpdir)"
TREE="$REPO_ROOT/tests/interop/tools/image-tree.py"

config_of() { jq -S -c '.[0].Config | {Env, Cmd, Entrypoint, WorkingDir, User, ExposedPorts, Volumes, Labels, StopSignal, Healthcheck, OnBuild, Shell}'; }
history_flags() { tar -xOf "$1" "$(tar -xOf "$1" manifest.json | jq -r '.[0].Config')" | jq -c '[.history[] | .empty_layer // false]'; }

# compare NAME CONTEXT [BUILD ARGS...]: build CONTEXT with both, compare.
compare() {
    local name="$1" ctx="$2"
    shift 2
    DOCKER_BUILDKIT=0 docker build -q --network none "$@" -t "$name:docker" "$ctx" >"$O/$name.docker.log" 2>&1 ||
        { cat "$O/$name.docker.log"; fail "docker build $name"; }
    berth build -q "$@" -t "$name:berth" "$ctx" >"$O/$name.berth.log" 2>&1 ||
        { cat "$O/$name.berth.log"; fail "berth build $name"; }
    check_eq "$(berth inspect "$name:berth" | config_of)" "$(docker inspect "$name:docker" | config_of)" "$name: config fields as docker's"
    docker save "$name:docker" -o "$O/$name.docker.tar"
    berth save -o "$O/$name.berth.tar" "$name:berth"
    python3 "$TREE" "$O/$name.docker.tar" >"$O/$name.docker.tree"
    python3 "$TREE" "$O/$name.berth.tar" >"$O/$name.berth.tree"
    if diff -u "$O/$name.docker.tree" "$O/$name.berth.tree" >"$O/$name.tree.diff"; then
        ok "$name: the same file tree ($(wc -l <"$O/$name.berth.tree") paths)"
    else
        _soft_fail "$name: file trees differ"
        head -30 "$O/$name.tree.diff" | sed 's/^/       | /' >&2
    fi
    check_eq "$(history_flags "$O/$name.berth.tar")" "$(history_flags "$O/$name.docker.tar")" "$name: history entries and empty_layer flags as docker's"
}

say "== a multi-stage build with what docker 20.10's builder supports"
C="$(new_tmpdir)"
mkdir -p "$C/src/lib" "$C/conf"
echo 'print hello' >"$C/src/main.txt"
echo 'util' >"$C/src/lib/util.txt"
echo 'secret' >"$C/src/lib/secret.key"
echo 'noise' >"$C/src/debug.log"
printf 'a=1\n' >"$C/conf/app.conf"
ln -s main.txt "$C/src/current"
printf '%s\n' '**/*.log' '*.key' '!src/lib/secret.key' 'conf/ignored*' >"$C/.dockerignore"
(cd "$C" && mkdir -p pkg/inner && echo packed >pkg/inner/file && tar -czf pkg.tar.gz pkg && rm -r pkg)
cat >"$C/Dockerfile" <<'EOF'
ARG BASE=busybox:musl
FROM ${BASE} AS builder
ARG FLAVOUR=plain
ENV BUILD_DIR=/build
WORKDIR $BUILD_DIR
COPY src/ ./src/
RUN mkdir -p out && cat src/main.txt src/lib/util.txt > out/result && echo "$FLAVOUR" > out/flavour
RUN true

FROM busybox:musl
LABEL org.example.name="demo app" org.example.tier=web
RUN printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n' >> /etc/passwd && printf 'root:x:0:\napp:x:1000:\n' >> /etc/group && mkdir -p /home/app && chown app:app /home/app
ENV APP_HOME=/srv/app PATH=/srv/app/bin:$PATH
WORKDIR $APP_HOME
COPY --from=builder /build/out/ ./data/
COPY --chown=app:app conf/*.conf src/current ./conf/
ADD pkg.tar.gz /opt/
EXPOSE 8080 53/udp
VOLUME ["/var/lib/app"]
USER app
HEALTHCHECK --interval=30s --timeout=3s --retries=2 CMD ["/bin/true"]
STOPSIGNAL SIGTERM
ONBUILD RUN echo child > /home/app/child
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /srv/app/data/result"]
EOF
compare multi "$C" --build-arg FLAVOUR=spicy
check_eq "$(berth run --rm multi:berth)" "$(docker run --rm --network none multi:docker)" "multi: the image runs the same"

say "== a child image: the parent's ONBUILD trigger runs first"
K="$(new_tmpdir)"
printf 'FROM multi:%s\nUSER root\nRUN cat /home/app/child\n' docker >"$K/Dockerfile.docker"
printf 'FROM multi:%s\nUSER root\nRUN cat /home/app/child\n' berth >"$K/Dockerfile.berth"
DOCKER_BUILDKIT=0 docker build -q --network none -f "$K/Dockerfile.docker" -t child:docker "$K" >/dev/null || fail "docker build child"
berth build -q -f "$K/Dockerfile.berth" -t child:berth "$K" >/dev/null || fail "berth build child"
check_eq "$(berth inspect child:berth | config_of)" "$(docker inspect child:docker | config_of)" "child: config fields as docker's (OnBuild consumed)"
docker save child:docker -o "$O/child.docker.tar"
berth save -o "$O/child.berth.tar" child:berth
check_eq "$(history_flags "$O/child.berth.tar")" "$(history_flags "$O/child.docker.tar")" "child: history as docker's"
check_eq "$(python3 "$TREE" "$O/child.berth.tar" | grep '^home/app/child ')" "$(python3 "$TREE" "$O/child.docker.tar" | grep '^home/app/child ')" "child: the trigger's file"

say "== from scratch, with SHELL and shell-form ENTRYPOINT"
S="$(new_tmpdir)"
cp /bin/busybox "$S/busybox"
cat >"$S/Dockerfile" <<'EOF'
FROM scratch
COPY busybox /bin/
SHELL ["/bin/busybox", "sh", "-c"]
RUN /bin/busybox mkdir -p /usr/bin && /bin/busybox --install -s /usr/bin
MAINTAINER someone@example.com
ENTRYPOINT exec echo from-shell-form
EOF
compare scratch "$S"
check_eq "$(berth inspect scratch:berth | jq -r '.[0].Author')" "$(docker inspect scratch:docker | jq -r '.[0].Author')" "scratch: MAINTAINER as Author"

say "== the cache"
out="$(berth build -t multi:berth --build-arg FLAVOUR=spicy "$C" 2>&1)"
check_eq "$(grep -c CACHED <<<"$out")" "9" "a rebuild with nothing changed is all CACHED"
check_eq "$(berth inspect -f '{{.Id}}' multi:berth)" "$(grep -o 'writing image sha256:[0-9a-f]*' <<<"$out" | cut -d' ' -f3)" "and gives the same image"
echo 'print changed' >"$C/src/main.txt"
out="$(berth build -t multi:berth --build-arg FLAVOUR=spicy "$C" 2>&1)"
check_eq "$(grep -c CACHED <<<"$out")" "3" "a changed source rebuilds from its COPY on (the WORKDIRs and the RUN before the COPY --from stay cached)"

say "== a git context: a branch and a folder of it, over git daemon"
G="$(new_tmpdir)"
git init -q -b main "$G/src"
mkdir -p "$G/src/app"
printf 'FROM busybox:musl\nCOPY . /app/\nCMD ["cat", "/app/message"]\n' >"$G/src/app/Dockerfile"
echo "from main" >"$G/src/app/message"
git -C "$G/src" add -A && git -C "$G/src" -c user.email=t@e -c user.name=t commit -qm main
git -C "$G/src" checkout -q -b feature
echo "from feature" >"$G/src/app/message"
git -C "$G/src" -c user.email=t@e -c user.name=t commit -qam feature
git clone -q --bare "$G/src" "$G/repo.git"
port="$(free_port)"
spawn git daemon --listen=127.0.0.1 --port="$port" --base-path="$G" --export-all --reuseaddr "$G"
wait_until 10 bash -c "git ls-remote git://127.0.0.1:$port/repo.git >/dev/null 2>&1" || fail "git daemon"
url="git://127.0.0.1:$port/repo.git#feature:app"
DOCKER_BUILDKIT=0 docker build -q --network none -t gitctx:docker "$url" >/dev/null || fail "docker build $url"
berth build -q -t gitctx:berth "$url" >/dev/null || fail "berth build $url"
check_eq "$(berth run --rm gitctx:berth)" "from feature" "the branch's folder was the context"
check_eq "$(berth inspect gitctx:berth | config_of)" "$(docker inspect gitctx:docker | config_of)" "git: config fields as docker's"
docker save gitctx:docker -o "$O/git.docker.tar"
berth save -o "$O/git.berth.tar" gitctx:berth
# docker 20.10 keeps nothing of .git in a folder context either; compare the trees.
check_eq "$(python3 "$TREE" "$O/git.berth.tar" | grep '^app')" "$(python3 "$TREE" "$O/git.docker.tar" | grep '^app')" "git: the same files as docker's"
check_fails "a ref that does not exist is refused" berth build -t gitctx:bad "git://127.0.0.1:$port/repo.git#no-such-branch"
check_fails "a folder that climbs out is refused" berth build -t gitctx:bad "git://127.0.0.1:$port/repo.git#feature:../.."
A="$(new_tmpdir)"
printf 'FROM busybox:musl\nADD git://127.0.0.1:%s/repo.git#feature:app /src/\nCOPY --parents nested/dir/file /kept/\n' "$port" >"$A/Dockerfile"
mkdir -p "$A/nested/dir" && echo deep >"$A/nested/dir/file"
berth build -q -t addgit:1 "$A" >/dev/null || fail "berth build with ADD <git URL>"
check_eq "$(berth run --rm addgit:1 cat /src/message /kept/nested/dir/file)" "from feature
deep" "ADD of a git URL copies the checkout's folder; COPY --parents keeps the source's path"

say "== the tutorial's flow: a base image that is the user's own, on berth's registry; --push"
RP="$(free_port)"
R="127.0.0.1:$RP"
BERTH_REGISTRY_ROOT="$T/registry" spawn "$BERTH" registry serve --addr "$R" --log-level error
wait_until 30 _http_answers "http://$R/v2/" || fail "berth registry did not start on $R"
berth tag busybox:musl "$R/someone/mynanoserver:1.0"
berth push -q "$R/someone/mynanoserver:1.0" >/dev/null || fail "berth push the base"
N="$(new_tmpdir)"
printf 'FROM %s/someone/mynanoserver:1.0\nCMD ["echo", "Hello from the built image"]\n' "$R" >"$N/Dockerfile"
fresh="$T/fresh-store"
check_ok "a build in a fresh store pulls the base from berth's registry and pushes the result" \
    env BERTH_ROOT="$fresh" "$BERTH" build --push -t "$R/someone/mynanoserver:dev" "$N"
check_eq "$(curl -s "http://$R/v2/someone/mynanoserver/tags/list" | jq -c '.tags | sort')" '["1.0","dev"]' "the :dev tag is on the registry"
docker pull -q "$R/someone/mynanoserver:dev" >/dev/null || fail "docker pull"
check_eq "$(docker run --rm --network none "$R/someone/mynanoserver:dev")" "Hello from the built image" "docker pulls and runs what berth built"

say "== --output straight to an archive docker loads"
berth build -q --output "type=docker,dest=$O/out.tar" -t built:out "$N" >/dev/null || fail "berth build --output"
check_ok "docker load takes it" docker load -i "$O/out.tar"

n="$(soft_failures)"
[[ "$n" == 0 ]] || fail "$n check(s) failed"
say "60-build: all checks passed"
