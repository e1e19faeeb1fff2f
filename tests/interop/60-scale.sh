#!/usr/bin/env bash
# berth's registry on real shared back ends: a SeaweedFS cluster (3 masters,
# 3 volume servers, 2 filers, an S3 gateway on each) and PostgreSQL 15, each
# started once, with three replicas of `berth registry serve --config` on
# them (separate roots, nothing shared on disk; the replicas use both
# gateways). docker and skopeo push through one replica and pull through
# another, and through haproxy (round robin, no stickiness); a chunked
# upload's PATCHes go to all three; a tag moved on one is seen on another at
# once; a replica killed mid-upload leaves what it acknowledged, and the
# upload goes on elsewhere; a volume server killed loses nothing; fifty
# pushers with gc collecting in a loop lose no acknowledged image; blob GETs
# redirect to presigned URLs when configured (HEAD never does); the admin
# commands and gc act on the same registry through BERTH_REGISTRY_CONFIG.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/engines.sh"
trap _engines_cleanup EXIT

start_postgres
start_seaweedfs_cluster
# Credentials from the environment, as AWS tools take them.
export AWS_ACCESS_KEY_ID="$S3_KEY" AWS_SECRET_ACCESS_KEY="$S3_SECRET"
CONF="$T/scale.toml"
write_scale_config "$CONF"
CONF_2="$T/scale-2.toml"
write_scale_config "$CONF_2" false "$S3_ENDPOINT_2"

# start_replica NAME CONFIG: sets PORT_<NAME>.
start_replica() {
    local name="$1" conf="$2" port
    port="$(free_port)"
    mkdir -p "$T/root-$name"
    BERTH_REGISTRY_ROOT="$T/root-$name" spawn "$BERTH" registry serve --config "$conf" \
        --addr "127.0.0.1:$port" --log-level info 2>"$T/log-$name"
    wait_until 30 _http_answers "http://127.0.0.1:$port/v2/" ||
        { cat "$T/log-$name" >&2; fail "replica $name did not start"; }
    printf -v "PORT_$name" '%s' "$port"
    say "replica $name on 127.0.0.1:$port"
}

start_replica a "$CONF"
start_replica b "$CONF_2"
start_replica c "$CONF"
A="127.0.0.1:$PORT_a"
B="127.0.0.1:$PORT_b"
C="127.0.0.1:$PORT_c"
check_ok "the secret key is not in the log" bash -c "! grep -q '$S3_SECRET' '$T/log-a'"
check_ok "the log says where the data lives" grep -q 'storage="s3" metadata="postgres"\|storage=s3 metadata=postgres' "$T/log-a"

say "== docker push to one replica, pull from the other"
start_dockerd
build_busybox_image busybox:musl
build_app_image app:1
docker tag app:1 "$A/team/app:1"
check_ok "docker push to replica a" docker push "$A/team/app:1"
app_id="$(docker inspect -f '{{.Id}}' app:1)"
docker rmi "$A/team/app:1" app:1 >/dev/null
check_ok "docker pull from replica b" docker pull "$B/team/app:1"
check_eq "$(docker inspect -f '{{.Id}}' "$B/team/app:1")" "$app_id" "pulled through b: same image ID"
check_eq "$(curl -s "http://$B/v2/team/app/tags/list")" '{"name":"team/app","tags":["1"]}' "tags list on b"
n="$(s3_count blobs/)"
check_ok "blobs are in the bucket ($n)" test "${n:-0}" -gt 2

say "== skopeo"
check_ok "skopeo copy from replica a to replica b" skopeo copy -q --src-tls-verify=false \
    --dest-tls-verify=false "docker://$A/team/app:1" "docker://$B/copies/app:1"
check_ok "skopeo inspect through replica a" skopeo inspect --tls-verify=false "docker://$A/copies/app:1"
check_ok "skopeo copy out through replica a" skopeo copy -q --src-tls-verify=false \
    "docker://$A/copies/app:1" "oci:$T/oci:app"

say "== a tag moved on one replica is seen on the other at once"
docker tag busybox:musl "$A/team/app:1"
check_ok "push another image under the same tag through a" docker push "$A/team/app:1"
moved="$(docker inspect -f '{{index .RepoDigests 0}}' "$A/team/app:1")"
moved="${moved#*@}"
seen="$(curl -sI -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$B/v2/team/app/manifests/1" | tr -d '\r' | sed -n 's/^docker-content-digest: //Ip')"
check_eq "$seen" "$moved" "replica b answers the moved tag"

say "== a chunked upload whose PATCHes land on three replicas"
head -c $((13 * 1024 * 1024 + 123)) /dev/urandom >"$T/blob"
digest="sha256:$(sha256sum "$T/blob" | cut -d' ' -f1)"
split -b $((6 * 1024 * 1024)) -d "$T/blob" "$T/chunk."
loc="$(curl -s -o /dev/null -D - -X POST "http://$A/v2/team/chunked/blobs/uploads/" |
    tr -d '\r' | sed -n 's/^location: //Ip')"
[[ "$loc" == /* ]] && loc="http://$A$loc"
path="${loc#http://*/}"
off=0
i=0
for c in "$T"/chunk.*; do
    size="$(stat -c %s "$c")"
    hosts=("$A" "$B" "$C")
    host="${hosts[i % 3]}"
    code="$(curl -s -o /dev/null -w '%{http_code}' -X PATCH --data-binary "@$c" \
        -H 'Content-Type: application/octet-stream' \
        -H "Content-Range: $off-$((off + size - 1))" "http://$host/$path")"
    check_eq "$code" 202 "PATCH chunk $i through $host"
    off=$((off + size))
    i=$((i + 1))
done
range="$(curl -s -o /dev/null -D - "http://$B/$path" | tr -d '\r' | sed -n 's/^range: //Ip')"
check_eq "$i" 3 "three PATCHes"
check_eq "$range" "0-$((off - 1))" "upload status through another replica"
sep='?'
[[ "$path" == *'?'* ]] && sep='&'
code="$(curl -s -o /dev/null -w '%{http_code}' -X PUT "http://$A/$path${sep}digest=$digest")"
check_eq "$code" 201 "PUT completes the upload"
check_eq "$(curl -s "http://$B/v2/team/chunked/blobs/$digest" | sha256sum | cut -d' ' -f1)" \
    "${digest#sha256:}" "the blob reads back whole through b"
check_eq "$(curl -s -H 'Range: bytes=100-199' "http://$B/v2/team/chunked/blobs/$digest" | wc -c)" \
    100 "ranged GET"
check_eq "$(s3_count uploads/)" 0 "nothing of the upload is left in the bucket"

say "== through haproxy, round robin over three replicas"
start_haproxy "$PORT_a" "$PORT_b" "$PORT_c"
LB="127.0.0.1:$LB_PORT"
build_app_image lb:1
docker tag lb:1 "$LB/team/lb:1"
lb_id="$(docker inspect -f '{{.Id}}' lb:1)"
check_ok "docker push through haproxy" docker push "$LB/team/lb:1"
for r in a b c; do
    check_ok "replica $r took part of the push" grep -q 'path=/v2/team/lb/' "$T/log-$r"
done
docker rmi "$LB/team/lb:1" lb:1 >/dev/null
check_ok "docker pull through haproxy" docker pull "$LB/team/lb:1"
check_eq "$(docker inspect -f '{{.Id}}' "$LB/team/lb:1")" "$lb_id" "pulled through haproxy: same image ID"
check_ok "skopeo copy through haproxy" skopeo copy -q --src-tls-verify=false --dest-tls-verify=false \
    "docker://$LB/team/lb:1" "docker://$LB/team/lb-copy:1"

say "== replicas keep nothing on disk"
check_eq "$(find "$T/root-a" "$T/root-b" "$T/root-c" -type f | wc -l)" 0 "no files under any root"

say "== a replica killed in the middle of an upload"
start_replica k "$CONF_2"
K="127.0.0.1:$PORT_k"
KILL_PID="${_PIDS[-1]}"
head -c $((24 * 1024 * 1024)) /dev/urandom >"$T/big"
big_digest="sha256:$(sha256sum "$T/big" | cut -d' ' -f1)"
loc="$(curl -s -o /dev/null -D - -X POST "http://$K/v2/team/killed/blobs/uploads/" |
    tr -d '\r' | sed -n 's/^location: //Ip')"
[[ "$loc" == /* ]] && loc="http://$K$loc"
path="${loc#http://*/}"
first=$((6 * 1024 * 1024))
code="$(head -c "$first" "$T/big" | curl -s -o /dev/null -w '%{http_code}' -X PATCH --data-binary @- \
    -H 'Content-Type: application/octet-stream' -H "Content-Range: 0-$((first - 1))" "http://$K/$path")"
check_eq "$code" 202 "the first chunk is acknowledged by the doomed replica"
# The next chunk trickles in; the replica dies while it arrives.
dd if="$T/big" of="$T/big.second" bs=1M skip=6 count=8 status=none
curl -s -o /dev/null --limit-rate 2M -X PATCH --data-binary "@$T/big.second" \
    -H 'Content-Type: application/octet-stream' \
    -H "Content-Range: $first-$((first + 8 * 1024 * 1024 - 1))" "http://$K/$path" &
trickle=$!
sleep 1.5
kill -KILL "$KILL_PID"
wait "$KILL_PID" 2>/dev/null || true
wait "$trickle" 2>/dev/null || true
range="$(curl -s -o /dev/null -D - "http://$A/$path" | tr -d '\r' | sed -n 's/^range: //Ip')"
check_eq "$range" "0-$((first - 1))" "another replica resumes from what was acknowledged"
rest="$(($(stat -c %s "$T/big") - first))"
tail -c +$((first + 1)) "$T/big" >"$T/big.rest"
# The dead replica's lease on the upload runs out first (416 until then).
_patch_rest() {
    [[ "$(curl -s -o /dev/null -w '%{http_code}' -X PATCH --data-binary "@$T/big.rest" \
        -H 'Content-Type: application/octet-stream' \
        -H "Content-Range: $first-$((first + rest - 1))" "http://$A/$path")" == 202 ]]
}
check_ok "the rest goes to replica a once the dead one's lease lapses" wait_until 45 _patch_rest
sep='?'
[[ "$path" == *'?'* ]] && sep='&'
check_eq "$(curl -s -o /dev/null -w '%{http_code}' -X PUT "http://$B/$path${sep}digest=$big_digest")" 201 \
    "replica b completes it"
check_eq "$(curl -s "http://$C/v2/team/killed/blobs/$big_digest" | sha256sum | cut -d' ' -f1)" \
    "${big_digest#sha256:}" "the blob reads back whole"

say "== a SeaweedFS volume server killed"
kill -KILL "${VOLUME_PIDS[0]}"
wait "${VOLUME_PIDS[0]}" 2>/dev/null || true
docker rmi "$LB/team/lb:1" >/dev/null
check_ok "docker pull through haproxy still works" docker pull "$LB/team/lb:1"
check_eq "$(docker inspect -f '{{.Id}}' "$LB/team/lb:1")" "$lb_id" "the same image"
check_eq "$(curl -s "http://$B/v2/team/chunked/blobs/$digest" | sha256sum | cut -d' ' -f1)" \
    "${digest#sha256:}" "an acknowledged blob is still whole"
# New writes go to volumes on the two servers left (the master notices the
# loss within seconds; a push may be refused until then).
_push_lb2() { docker push -q "$LB/team/lb:2" >/dev/null 2>&1; }
docker tag busybox:musl "$LB/team/lb:2"
check_ok "pushes go on" wait_until 60 _push_lb2

say "== presigned redirects for GET, never for HEAD"
write_scale_config "$T/redirect.toml" true
start_replica r "$T/redirect.toml"
R="127.0.0.1:$PORT_r"
hdrs="$(curl -s -o /dev/null -D - "http://$R/v2/team/chunked/blobs/$digest" | tr -d '\r')"
check_ok "GET answers 307" grep -q '^HTTP/1.1 307' <<<"$hdrs"
check_ok "to the object store" grep -qiE "^location: $S3_ENDPOINT/$S3_BUCKET/(blobs/sha256|objects)/" <<<"$hdrs"
check_eq "$(curl -sL "http://$R/v2/team/chunked/blobs/$digest" | sha256sum | cut -d' ' -f1)" \
    "${digest#sha256:}" "the presigned URL serves the blob"
check_eq "$(curl -s -o /dev/null -w '%{http_code}' -I "http://$R/v2/team/chunked/blobs/$digest")" 200 \
    "HEAD is answered by the registry"
docker rmi "$B/team/app:1" >/dev/null 2>&1 || true
check_ok "docker pull follows the redirects" docker pull "$R/team/app:1"

say "== admin commands and gc on the shared database"
export BERTH_REGISTRY_CONFIG="$CONF"
check_ok "repo describe" "$BERTH" registry repo describe team/app "scale test app"
check_ok "search through replica b sees it" grep -q 'scale test app' \
    <<<"$(curl -s "http://$B/v1/search?q=team")"
check_ok "gc runs against S3 + PostgreSQL" "$BERTH" registry gc --dry-run
unset BERTH_REGISTRY_CONFIG

say "== with --auth: accounts and the token key are shared through the database"
echo alice-pw | BERTH_REGISTRY_CONFIG="$CONF" "$BERTH" registry user add alice --password-stdin >/dev/null ||
    fail "user add"
start_auth_replica() {
    local name="$1" port
    port="$(free_port)"
    mkdir -p "$T/root-$name"
    BERTH_REGISTRY_ROOT="$T/root-$name" spawn "$BERTH" registry serve --config "$CONF" --auth \
        --addr "127.0.0.1:$port" --log-level warn 2>"$T/log-$name"
    wait_until 30 _http_answers "http://127.0.0.1:$port/v2/" ||
        { cat "$T/log-$name" >&2; fail "replica $name did not start"; }
    printf -v "PORT_$name" '%s' "$port"
}
start_auth_replica d
start_auth_replica e
D="127.0.0.1:$PORT_d"
E="127.0.0.1:$PORT_e"
token="$(curl -s -u alice:alice-pw "http://$D/token?service=berth-registry&scope=repository:alice/app:pull,push" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')"
check_eq "$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $token" \
    "http://$E/v2/alice/app/blobs/uploads/")" 202 "a token from replica d opens an upload on replica e"
check_eq "$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer x$token" \
    "http://$E/v2/alice/app/blobs/uploads/")" 401 "a forged token is refused"
check_eq "$(find "$T/root-d" "$T/root-e" -type f | wc -l)" 0 "no token.key on disk"
docker tag busybox:musl "$D/alice/app:1"
check_ok "docker login to replica d" docker login -u alice --password-stdin "$D" <<<"alice-pw"
check_ok "docker push through replica d with a login" docker push "$D/alice/app:1"

say "== bad configuration"
printf '[storage]\nkind = "s3"\n' >"$T/bad.toml"
out="$("$BERTH" registry serve --config "$T/bad.toml" --addr 127.0.0.1:1 2>&1)" && fail "bad config accepted"
check_ok "a bucket is required" grep -q 'storage.bucket' <<<"$out"
printf '[metadata]\nurl = "postgres://nobody@127.0.0.1:1/x"\n' >"$T/nodb.toml"
check_fails "an unreachable database fails at start" "$BERTH" registry serve --config "$T/nodb.toml" --addr 127.0.0.1:1

# Last: the collections below take every blob no manifest uses, including
# what the sections above left unreferenced on purpose.
say "== fifty pushers sending blobs that gc is collecting"
# Garbage: images pushed, their manifests deleted, and everything made two
# hours old (as if pushed then), so that a collection with a grace period
# takes it while the pushers below send the very same blobs again.
check_ok "seed images, then delete them" python3 "$(dirname "$0")/tools/push_load.py" "$LB" 50 4 seed
runuser -u postgres -- /usr/lib/postgresql/15/bin/psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d berth -qc \
    "UPDATE blob_links SET created = created - 7200; UPDATE blob_objects SET created = created - 7200;
     UPDATE manifests SET created = created - 7200" || fail "cannot age the seeded data"
export BERTH_REGISTRY_CONFIG="$CONF"
python3 "$(dirname "$0")/tools/push_load.py" "$LB" 50 4 push >"$T/load.out" 2>&1 &
load=$!
runs=0
while kill -0 "$load" 2>/dev/null; do
    "$BERTH" registry gc --grace-minutes 1 >>"$T/gc-loop.log" 2>&1 || { cat "$T/gc-loop.log" >&2; fail "gc failed"; }
    runs=$((runs + 1))
done
wait "$load" && load_rc=0 || load_rc=$?
unset BERTH_REGISTRY_CONFIG
cat "$T/load.out"
check_eq "$load_rc" 0 "every acknowledged image verifies"
check_ok "gc ran during the pushes ($runs runs)" test "$runs" -ge 2
deleted="$(grep -c '^Deleted blob' "$T/gc-loop.log" || true)"
check_ok "gc deleted garbage while the pushes went on ($deleted blobs)" test "$deleted" -gt 0
