#!/usr/bin/env bash
# berth's containers against the real Docker engine, on the same busybox
# image: the same changes made in a container on each side, then `diff`
# compared line by line (sorted: docker's order among siblings is random),
# `commit` compared field by field (author, comment, Cmd, history), the
# committed images' files compared, exit codes compared, and the image a
# container uses protected on both sides.
source "$(dirname "$0")/lib.sh"

start_dockerd
O="$(new_tmpdir)"
build_busybox_image busybox:musl
docker save busybox:musl -o "$T/bb.tar"
berth load -q -i "$T/bb.tar" >/dev/null || fail "berth load"

# Added, changed, deleted, renamed, deleted-and-re-created files and trees.
change='set -e
echo changed > /etc/motd
mkdir -p /data/sub && echo new > /data/sub/f
rm /bin/ls
mv /bin/cat /bin/kat
rm -rf /var && mkdir -p /var/spool && echo again > /var/spool/x
mkdir -p /tmp && touch /tmp/gone && rm /tmp/gone
chmod 700 /bin/busybox'

say "== the same changes, diffed and committed by both"
docker run --name c1 --network none busybox:musl /bin/sh -c "$change" >/dev/null || fail "docker run"
berth run --name c1 busybox:musl /bin/sh -c "$change" >/dev/null || fail "berth run"
docker diff c1 | sort >"$O/diff.docker"
berth diff c1 | sort >"$O/diff.berth"
check_eq "$(cat "$O/diff.berth")" "$(cat "$O/diff.docker")" "diff: the same lines as docker"

docker commit -a "Ann <ann@example.com>" -m "a change" -c 'CMD ["/bin/head", "-1", "/etc/motd"]' c1 done:docker >/dev/null ||
    fail "docker commit"
berth commit -a "Ann <ann@example.com>" -m "a change" -c 'CMD ["/bin/head", "-1", "/etc/motd"]' c1 done:berth >/dev/null ||
    fail "berth commit"
for field in .Author .Comment .Config.Cmd .Config.Env .RootFS.Layers; do
    d="$(docker inspect done:docker | jq -c ".[0]$field")"
    b="$(berth inspect done:berth | jq -c ".[0]$field")"
    if [[ "$field" == .RootFS.Layers ]]; then
        d="$(jq length <<<"$d")" b="$(jq length <<<"$b")"
    fi
    check_eq "$b" "$d" "commit: $field as docker's"
done
check_eq "$(berth history --format '{{.CreatedBy}}|{{.Comment}}' done:berth | head -1)" \
    "$(docker history --no-trunc --format '{{.CreatedBy}}|{{.Comment}}' done:docker | head -1 | sed 's/^\/bin\/sh -c #(nop) //')" \
    "commit: the history entry as docker's"

# The committed images hold the same files: both runs of the new image agree.
check_eq "$(berth run --rm done:berth)" "$(docker run --rm --network none done:docker)" "the committed CMD runs the same"
check_eq "$(berth run --rm done:berth /bin/sh -c 'ls /data/sub /var/spool; test ! -e /bin/ls && echo no-ls')" \
    "$(docker run --rm --network none done:docker /bin/sh -c 'ls /data/sub /var/spool; test ! -e /bin/ls && echo no-ls')" \
    "the committed trees hold the same files"

say "== exit codes"
for cmd in "exit 0" "exit 3" "kill -9 \$\$"; do
    b=0 d=0
    berth run --rm busybox:musl /bin/sh -c "$cmd" >/dev/null 2>&1 || b=$?
    docker run --rm --network none busybox:musl /bin/sh -c "$cmd" >/dev/null 2>&1 || d=$?
    check_eq "$b" "$d" "run: exit code of '$cmd' as docker's"
done
if command -v crun >/dev/null; then
    c=0
    berth run --rm --runtime crun busybox:musl /bin/sh -c 'exit 3' >/dev/null 2>&1 || c=$?
    check_eq "$c" "3" "run --runtime crun: the container's exit code"
fi
missing=0
berth run --rm busybox:musl nope >/dev/null 2>&1 || missing=$?
check_eq "$missing" "127" "run: a missing command exits 127 (docker: 127)"

say "== an image in use is protected"
check_fails "rmi of an image a container uses" berth rmi busybox:musl
check_ok "rm the container" berth rm c1
check_ok "rmi once it is gone" berth rmi done:berth
docker rm c1 >/dev/null

n="$(soft_failures)"
[[ "$n" == 0 ]] || fail "$n check(s) failed"
say "50-containers: all checks passed"
