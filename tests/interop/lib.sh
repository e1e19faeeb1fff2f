# shellcheck shell=bash
# Shared helpers for the interop tier. Every tests/interop/NN-*.sh does
#
#     source "$(dirname "$0")/lib.sh"
#
# and gets: strict mode, a private temp dir ($T, short, under /tmp), a berth
# store of its own ($BERTH_ROOT), a private Docker engine on demand
# (start_dockerd), the reference registry (start_distribution), a podman with
# its own store, and ONE exit trap that stops every process started here and
# removes every temp dir. Nothing touches the host's default sockets or stores.
#
# Functions:
#   start_dockerd                 private dockerd; exports DOCKER_HOST
#   start_distribution PORT [HTPASSWD_FILE]   distribution 2.8 on 127.0.0.1:PORT
#   free_port                     prints a free loopback TCP port
#   build_busybox_image TAG       FROM scratch + busybox-static, CMD /bin/sh
#   spawn CMD...                  start CMD in the background, stopped on exit
#   new_tmpdir                    a fresh directory under $T
#   fail MSG                      print FAIL and exit 1
#   assert_eq A B MSG             fail unless A == B
#   ok MSG                        print a passed check
#   check_eq A B MSG              like assert_eq but records and continues;
#                                 the script still exits non-zero at the end
#   check_ok MSG CMD...           run CMD; record a failure if it fails
#   check_fails MSG CMD...        run CMD; record a failure if it succeeds
#   berth ARGS...                 "$BERTH" ARGS... (the store is $BERTH_ROOT)
# Variables:
#   $BERTH       the berth binary (env override; else the newest of
#                target/{debug,release}/berth)
#   $BERTH_ROOT  a private store for this script (exported, berth reads it)
#   $T           this script's temp dir
#   $REPO_ROOT   the repository root

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export REPO_ROOT

# Short on purpose: a unix socket path is limited to 107 bytes.
T="$(mktemp -d /tmp/bi.XXXXXX)"
export T
export TMPDIR="$T/tmp"
mkdir -p "$TMPDIR" "$T/bin"

_PIDS=()         # processes to stop on exit, in start order
_SOFT_FAILURES=0 # checks that failed without stopping the script

# `docker` must be the 20.10 client that matches the daemon (a newer client
# may sit earlier in PATH); a bin dir first in PATH covers child processes too.
ln -s /usr/bin/docker "$T/bin/docker"
export PATH="$T/bin:$PATH"
# Keep docker/podman/skopeo credentials away from the user's.
export DOCKER_CONFIG="$T/docker-config"
export REGISTRY_AUTH_FILE="$T/containers-auth.json"
mkdir -p "$DOCKER_CONFIG"

if [[ -z "${BERTH:-}" ]]; then
    for candidate in "$REPO_ROOT/target/debug/berth" "$REPO_ROOT/target/release/berth"; do
        if [[ -x "$candidate" && ( -z "${BERTH:-}" || "$candidate" -nt "$BERTH" ) ]]; then
            BERTH="$candidate"
        fi
    done
fi
if [[ -z "${BERTH:-}" || ! -x "$BERTH" ]]; then
    echo "FAIL: no berth binary (build it with 'cargo build -p berth-cli' or set BERTH)" >&2
    exit 1
fi
export BERTH
export BERTH_ROOT="$T/berth"

berth() { "$BERTH" "$@"; }

# podman as root shares /var/lib/containers with everyone; give it its own.
podman() {
    /usr/bin/podman --root "$T/podman/root" --runroot "$T/podman/run" \
        --storage-driver vfs --events-backend none "$@"
}

say() { printf '%s\n' "$*"; }
ok() { printf '  ok   %s\n' "$*"; }

fail() {
    printf '  FAIL %s\n' "$*" >&2
    exit 1
}

assert_eq() {
    local actual="$1" expected="$2" msg="$3"
    if [[ "$actual" != "$expected" ]]; then
        printf '  FAIL %s\n       expected: %s\n       actual:   %s\n' \
            "$msg" "$(_quote "$expected")" "$(_quote "$actual")" >&2
        exit 1
    fi
    ok "$msg"
}

_soft_fail() {
    _SOFT_FAILURES=$((_SOFT_FAILURES + 1))
    printf '  FAIL %s\n' "$*" >&2
}

check_eq() {
    local actual="$1" expected="$2" msg="$3"
    if [[ "$actual" == "$expected" ]]; then
        ok "$msg"
    else
        _soft_fail "$msg"
        printf '       expected: %s\n       actual:   %s\n' \
            "$(_quote "$expected")" "$(_quote "$actual")" >&2
    fi
}

check_ok() {
    local msg="$1" out
    shift
    if out="$("$@" 2>&1)"; then
        ok "$msg"
    else
        _soft_fail "$msg (exit $?): $*"
        printf '%s\n' "$out" | head -20 | sed 's/^/       | /' >&2
    fi
}

check_fails() {
    local msg="$1" out
    shift
    if out="$("$@" 2>&1)"; then
        _soft_fail "$msg: succeeded but should have failed: $*"
        printf '%s\n' "$out" | head -20 | sed 's/^/       | /' >&2
    else
        ok "$msg"
    fi
}

soft_failures() { echo "$_SOFT_FAILURES"; }

# Multi-line values are easier to compare when shown on one line.
_quote() { printf '%s' "$1" | sed -e ':a' -e 'N' -e '$!ba' -e 's/\n/⏎/g'; }

new_tmpdir() { mktemp -d "$T/d.XXXXXX"; }

spawn() {
    "$@" &
    _PIDS+=("$!")
}

free_port() {
    python3 - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
EOF
}

# wait_until SECONDS CMD...: poll CMD until it succeeds; non-zero on timeout.
wait_until() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

_DOCKERD_N=0
start_dockerd() {
    local driver d pid
    for driver in overlay2 vfs; do
        _DOCKERD_N=$((_DOCKERD_N + 1))
        d="$T/dk$_DOCKERD_N"
        mkdir -p "$d"
        # Own containerd namespaces so a system containerd (if dockerd picks
        # it up) never mixes our objects with another engine's.
        /usr/sbin/dockerd --data-root "$d/root" --exec-root "$d/exec" \
            -H "unix://$d/docker.sock" --pidfile "$d/pid" \
            --iptables=false --ip-masq=false --bridge=none \
            --storage-driver "$driver" \
            --containerd-namespace "berth-$$-$_DOCKERD_N" \
            --containerd-plugins-namespace "berth-$$-$_DOCKERD_N-plugins" \
            >"$d/log" 2>&1 &
        pid=$!
        _PIDS+=("$pid")
        export DOCKER_HOST="unix://$d/docker.sock"
        if wait_until 60 _dockerd_ready "$pid"; then
            DOCKERD_LOG="$d/log"
            export DOCKERD_LOG
            say "dockerd up ($driver) on $DOCKER_HOST"
            return 0
        fi
        echo "dockerd with $driver did not come up; log tail:" >&2
        tail -5 "$d/log" >&2 || true
        _stop_pid "$pid"
    done
    fail "could not start dockerd"
}

_dockerd_ready() {
    kill -0 "$1" 2>/dev/null || return 2
    /usr/bin/docker info >/dev/null 2>&1
}

# start_distribution PORT [HTPASSWD_FILE]: the reference registry (2.8) with
# filesystem storage under $T, deletes enabled, optional Basic auth.
start_distribution() {
    local port="$1" htpasswd="${2:-}" d
    d="$T/distribution-$port"
    mkdir -p "$d/data"
    {
        echo "version: 0.1"
        echo "log: {level: warn}"
        echo "storage:"
        echo "  filesystem: {rootdirectory: $d/data}"
        echo "  delete: {enabled: true}"
        echo "http: {addr: 127.0.0.1:$port}"
        if [[ -n "$htpasswd" ]]; then
            echo "auth: {htpasswd: {realm: berth-test, path: $htpasswd}}"
        fi
    } >"$d/config.yml"
    # distribution reads REGISTRY_* variables as configuration overrides.
    env -u REGISTRY_AUTH_FILE /usr/bin/docker-registry serve "$d/config.yml" >"$d/log" 2>&1 &
    _PIDS+=("$!")
    if ! wait_until 30 _http_answers "http://127.0.0.1:$port/v2/"; then
        tail -5 "$d/log" >&2 || true
        fail "distribution did not start on 127.0.0.1:$port"
    fi
    say "distribution up on 127.0.0.1:$port"
}

# Any HTTP status (200 or 401) means the server is listening.
_http_answers() {
    local code
    code="$(curl -s -o /dev/null -w '%{http_code}' "$1")" || return 1
    [[ "$code" != "000" ]]
}

# build_busybox_image TAG: a small real image from the static busybox binary.
build_busybox_image() {
    local tag="$1" ctx
    ctx="$(new_tmpdir)"
    cp /bin/busybox "$ctx/busybox"
    cat >"$ctx/Dockerfile" <<'EOF'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
CMD ["/bin/sh"]
EOF
    # No bridge network exists (--bridge=none), so RUN steps get none.
    DOCKER_BUILDKIT=0 /usr/bin/docker build -q --network none -t "$tag" "$ctx" >/dev/null ||
        fail "docker build $tag"
}

_stop_pid() {
    local pid="$1" i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

_cleanup() {
    local rc=$? i m
    trap - EXIT INT TERM
    set +e
    # Newest first: clients before the servers they talk to.
    for ((i = ${#_PIDS[@]} - 1; i >= 0; i--)); do
        _stop_pid "${_PIDS[i]}"
    done
    # A killed engine can leave mounts behind; never rm -rf through them.
    grep -o " $T/[^ ]*" /proc/mounts 2>/dev/null | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null
    done
    if grep -q " $T/" /proc/mounts 2>/dev/null; then
        echo "warning: mounts left under $T; not removing it" >&2
    elif [[ -z "${KEEP_TMP:-}" ]]; then
        rm -rf "$T"
    else
        echo "kept $T" >&2
    fi
    if ((rc == 0 && _SOFT_FAILURES > 0)); then
        echo "$_SOFT_FAILURES check(s) failed" >&2
        rc=1
    fi
    exit "$rc"
}
trap _cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
