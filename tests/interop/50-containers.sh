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

say "== labels, env files, ps filters and formats"
printf '# settings\nFROM_FILE=1\n  SPACED=a b \nBOTH=file\nHOST_ONE\n' >"$T/app.env"
for tool in docker berth; do
    HOST_ONE=from-host "$tool" run --name l1 --network none -l tier=web -l flag --env-file "$T/app.env" -e BOTH=flag \
        busybox:musl /bin/sh -c 'echo "$FROM_FILE|$SPACED|$BOTH|$HOST_ONE"' >"$O/env.$tool" || fail "$tool run --env-file"
    "$tool" run --name l2 --network none -l tier=db busybox:musl /bin/sh -c 'exit 4' >/dev/null 2>&1 || true
    "$tool" create --name l3 --network none busybox:musl echo >/dev/null || fail "$tool create"
done
check_eq "$(cat "$O/env.berth")" "$(cat "$O/env.docker")" "run --env-file and -e: the same environment"
check_eq "$(berth inspect l1 | jq -cS '.[0].Config.Labels')" "$(docker inspect l1 | jq -cS '.[0].Config.Labels')" \
    "inspect: Config.Labels as docker's"
for f in label=tier label=tier=db label=flag status=exited status=created exited=4 name=l ancestor=busybox:musl; do
    check_eq "$(berth ps -a --filter "$f" --format '{{.Names}}' | sort)" \
        "$(docker ps -a --filter "$f" --format '{{.Names}}' | sort)" "ps --filter $f: the same containers"
done
check_eq "$(berth ps --filter status=exited --format '{{.Names}}' | sort)" \
    "$(docker ps --filter status=exited --format '{{.Names}}' | sort)" "ps --filter status= lists stopped ones without -a"
check_eq "$(berth ps -n 2 --format '{{.Names}}')" "$(docker ps -n 2 --format '{{.Names}}')" "ps -n 2: the newest two"
check_eq "$(berth ps -l --format '{{.Names}}')" "$(docker ps -l --format '{{.Names}}')" "ps -l: the newest"
check_eq "$(berth ps -a --filter name=l2 --format '{{.Names}}|{{.Image}}|{{.Command}}|{{.Labels}}|{{.State}}|{{.Ports}}')" \
    "$(docker ps -a --filter name=l2 --format '{{.Names}}|{{.Image}}|{{.Command}}|{{.Labels}}|{{.State}}|{{.Ports}}')" \
    "ps --format: the same fields"
check_eq "$(berth ps -a --filter name=l3 --format 'table {{.Names}}\t{{.Status}}')" \
    "$(docker ps -a --filter name=l3 --format 'table {{.Names}}\t{{.Status}}')" "ps --format 'table ...': header and row"
check_eq "$(berth ps -a --filter name=l2 --format '{{json .}}' | jq -c 'keys')" \
    "$(docker ps -a --filter name=l2 --format '{{json .}}' | jq -c 'keys')" "ps --format '{{json .}}': docker's keys"
b=0 d=0
berth run --rm -p 8080:80 busybox:musl true >/dev/null 2>"$O/publish.err" || b=$?
check_eq "$b" "125" "run -p: refused (berth has no port publishing yet)"
check_ok "run -p: the refusal says why" grep -q "no port publishing" "$O/publish.err"

say "== restart, top, cp, export, -t"
loop='echo run >> /count; mkdir -p /d/s; echo x > /d/s/f; echo y > /d/top; trap "exit 0" TERM; while true; do sleep 0.1; done'
for tool in docker berth; do
    "$tool" run -d --name r1 --network none busybox:musl /bin/sh -c "$loop" >/dev/null || fail "$tool run -d"
    "$tool" restart -t 5 r1 >/dev/null || fail "$tool restart"
    for _ in $(seq 1 100); do
        [[ "$("$tool" exec r1 cat /count 2>/dev/null | wc -l)" == 2 ]] && break
        sleep 0.1
    done
done
check_eq "$(berth exec r1 cat /count)" "$(docker exec r1 cat /count)" "restart: run again over its own changes"
check_eq "$(berth top r1 | head -1 | tr -s ' ')" "$(docker top r1 | head -1 | tr -s ' ')" "top: ps -ef's columns"
check_ok "top: the container's command is listed" bash -c "\"$BERTH\" top r1 | grep -q 'while true'"
mkdir -p "$O/in/sub" && echo in >"$O/in/sub/f" && echo file >"$O/in.txt"
for tool in docker berth; do
    out="$O/cp.$tool"
    mkdir -p "$out/flat"
    "$tool" cp r1:/d "$out/newdir" && "$tool" cp r1:/d "$out/newdir" && "$tool" cp r1:/d/. "$out/flat" &&
        "$tool" cp r1:/d/top "$out/" && "$tool" cp r1:/d/top "$out/renamed" || fail "$tool cp out"
    "$tool" cp r1:/d - | tar -t | sort >"$O/cp-tar.$tool"
    "$tool" cp "$O/in.txt" r1:/d/ && "$tool" cp "$O/in" r1:/fromhost && "$tool" cp "$O/in/." r1:/d ||
        fail "$tool cp in"
    "$tool" exec r1 /bin/sh -c 'find /d /fromhost | sort; stat -c "%n %u:%g %a" /d/in.txt /fromhost/sub/f' >"$O/cp-in.$tool"
    c=0
    "$tool" cp r1:/d "$out/top" >/dev/null 2>&1 || c=$?
    echo "$c" >"$O/cp-dir-on-file.$tool"
done
check_ok "cp out: the same trees as docker's" diff -r "$O/cp.docker" "$O/cp.berth"
check_eq "$(cat "$O/cp-tar.berth")" "$(cat "$O/cp-tar.docker")" "cp CONTAINER:DIR -: the same tar entries"
check_eq "$(cat "$O/cp-in.berth")" "$(cat "$O/cp-in.docker")" "cp in: the same files, owned by root"
check_eq "$(cat "$O/cp-dir-on-file.berth")" "$(cat "$O/cp-dir-on-file.docker")" "cp of a directory onto a file: refused as docker"
berth stop -t 1 r1 >/dev/null && docker stop -t 1 r1 >/dev/null
check_eq "$(berth cp r1:/d/in.txt -  | tar -xO)" "$(docker cp r1:/d/in.txt - | tar -xO)" "cp out of a stopped container"
keep='^(bin/busybox|d/.*|fromhost/.*|etc/passwd|count)$'
check_eq "$(berth export r1 | tar -t | sed 's,/$,,' | grep -E "$keep" | sort)" \
    "$(docker export r1 | tar -t | sed 's,/$,,' | grep -E "$keep" | sort)" "export: the same files"
check_eq "$(berth run --rm -t busybox:musl /bin/sh -c 'test -t 0 && test -t 1 && echo tty' | od -c)" \
    "$(docker run --rm -t --network none busybox:musl /bin/sh -c 'test -t 0 && test -t 1 && echo tty' | od -c)" \
    "run -t: a terminal, as docker's"
check_ok "rm -f -v (berth)" berth rm -f -v r1 l1 l2 l3
docker rm -f -v r1 l1 l2 l3 >/dev/null

n="$(soft_failures)"
[[ "$n" == 0 ]] || fail "$n check(s) failed"
say "50-containers: all checks passed"
