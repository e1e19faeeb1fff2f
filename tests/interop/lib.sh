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
#   build_app_image TAG           multi-layer image FROM busybox:musl
#   spawn CMD...                  start CMD in the background, stopped on exit
#   new_tmpdir                    a fresh directory under $T
#   fail MSG                      print FAIL and exit 1
#   assert_eq A B MSG             fail unless A == B
#   ok MSG                        print a passed check
#   check_eq A B MSG              like assert_eq but records and continues;
#                                 the script still exits non-zero at the end
#   check_ok MSG CMD...           run CMD; record a failure if it fails
#   check_show MSG CMD...         check_ok, showing CMD's output either way
#   check_fails MSG CMD...        run CMD; record a failure if it succeeds
#   compare_tables D B [COL...]   CLI tables equal cell by cell (COL: relative times)
#   compare_json_fields D B REQ OPT   inspect arrays: fields equal
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
_DOCKERD_DIRS=() # exec roots of the engines started here

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
    rm -rf "$T"
    exit 1
fi
export BERTH
export BERTH_ROOT="$T/berth"

berth() { "$BERTH" "$@"; }

# podman as root shares /var/lib/containers with everyone; give it its own
# store ($PODMAN_ROOT picks another one).
podman() {
    local r="${PODMAN_ROOT:-$T/podman}"
    /usr/bin/podman --root "$r/root" --runroot "$r/run" \
        --storage-driver vfs --events-backend none "$@"
}

say() { printf '%s\n' "$*"; }
_OKS=0
ok() {
    _OKS=$((_OKS + 1))
    printf '  ok   %s\n' "$*"
}

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

# check_show MSG CMD...: like check_ok, but always shows CMD's output.
check_show() {
    local msg="$1" out
    shift
    if out="$("$@" 2>&1)"; then
        ok "$msg"
        [[ -z "$out" ]] || printf '%s\n' "$out" | sed 's/^/       | /'
    else
        _soft_fail "$msg"
        printf '%s\n' "$out" | head -40 | sed 's/^/       | /' >&2
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
        # The host's /etc/docker/daemon.json is not ours to inherit.
        echo '{}' >"$d/daemon.json"
        # Own containerd namespaces so a system containerd (if dockerd picks
        # it up) never mixes our objects with another engine's.
        /usr/sbin/dockerd --config-file "$d/daemon.json" \
            --data-root "$d/root" --exec-root "$d/exec" \
            -H "unix://$d/docker.sock" --pidfile "$d/pid" \
            --iptables=false --ip-masq=false --bridge=none \
            --storage-driver "$driver" \
            --containerd-namespace "berth-$$-$_DOCKERD_N" \
            --containerd-plugins-namespace "berth-$$-$_DOCKERD_N-plugins" \
            >"$d/log" 2>&1 &
        pid=$!
        _PIDS+=("$pid")
        _DOCKERD_DIRS+=("$d/exec")
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

# build_app_image TAG: FROM busybox:musl (build it first) with several COPY
# and RUN layers, labels, ENV, WORKDIR, EXPOSE, USER, ENTRYPOINT and CMD,
# and steps that write no layer (metadata only; RUN steps that change nothing).
build_app_image() {
    local tag="$1" ctx
    ctx="$(new_tmpdir)"
    mkdir -p "$ctx/data/sub"
    echo hello >"$ctx/data/a.txt"
    seq 1 20000 >"$ctx/data/sub/numbers.txt"
    echo "key=value" >"$ctx/app.conf"
    cat >"$ctx/Dockerfile" <<'EOF'
FROM busybox:musl
LABEL org.opencontainers.image.title="berth-interop" com.example.team="images"
ENV APP_HOME=/opt/app LANG=C.UTF-8
WORKDIR /opt/app
COPY data/ /opt/app/data/
RUN mkdir -p bin && printf '#!/bin/sh\necho app\n' > bin/app && chmod 755 bin/app
RUN head -c 300000 /dev/urandom > blob.bin
RUN true
COPY app.conf /etc/app.conf
RUN true
EXPOSE 8080/tcp
USER 65534
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo hello"]
EOF
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
    # berth's own containers (detached ones have a monitor each) go too.
    if [[ -n "${BERTH_ROOT:-}" && -d "$BERTH_ROOT/containers" ]]; then
        "$BERTH" ps -a -q --no-trunc 2>/dev/null | xargs -r "$BERTH" rm -f >/dev/null 2>&1
    fi
    # An engine that had to be killed leaves its containerd running.
    for m in "${_DOCKERD_DIRS[@]}"; do
        [[ -s "$m/containerd/containerd.pid" ]] && _stop_pid "$(cat "$m/containerd/containerd.pid")"
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
    if ((_SOFT_FAILURES > 0)); then
        echo "$_OKS check(s) passed, $_SOFT_FAILURES failed" >&2
        ((rc != 0)) || rc=1
    elif ((rc == 0 && _OKS > 0)); then
        echo "all $_OKS check(s) passed"
    fi
    exit "$rc"
}
trap _cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# compare_tables DOCKER_FILE BERTH_FILE [RELATIVE_TIME_COLUMN...]
# Compares two CLI tables cell by cell. Columns are found from each table's
# own header (names separated by two or more spaces), so only the values,
# not the padding, must agree. Relative times ("5 seconds ago") are compared
# with a tolerance, as the two commands do not run at the same instant.
compare_tables() {
    python3 - "$@" <<'EOF'
import re, sys

def parse(path):
    lines = open(path, encoding="utf-8").read().rstrip("\n").split("\n")
    if not lines or not lines[0].strip():
        return [], []
    header = lines[0].rstrip()
    cols = [(m.start(), m.group()) for m in re.finditer(r"\S+(?: \S+)*", header)]
    rows = []
    for line in lines[1:]:
        cells = []
        for i, (start, _) in enumerate(cols):
            end = cols[i + 1][0] if i + 1 < len(cols) else None
            cells.append(line[start:end].strip())
        rows.append(cells)
    return [name for _, name in cols], rows

UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400,
         "week": 604800, "month": 2592000, "year": 31536000}

def seconds_ago(text):
    t = text.strip()
    if t == "Less than a second ago":
        return 0
    m = re.fullmatch(r"About an? (minute|hour) ago", t)
    if m:
        return UNITS[m.group(1)]
    m = re.fullmatch(r"(\d+) (second|minute|hour|day|week|month|year)s? ago", t)
    if m:
        return int(m.group(1)) * UNITS[m.group(2)]
    return None

docker_file, berth_file, *relative = sys.argv[1:]
dh, drows = parse(docker_file)
bh, brows = parse(berth_file)
problems = []
if dh != bh:
    problems.append(f"header: docker {dh} berth {bh}")
if len(drows) != len(brows):
    problems.append(f"rows: docker {len(drows)} berth {len(brows)}")
if not problems:
    for r, (drow, brow) in enumerate(zip(drows, brows), 1):
        for name, d, b in zip(dh, drow, brow):
            if name in relative:
                ds, bs = seconds_ago(d), seconds_ago(b)
                if ds is None or bs is None or abs(ds - bs) > max(3, max(ds, bs) // 2):
                    problems.append(f"row {r} {name}: docker {d!r} berth {b!r}")
            elif d != b:
                problems.append(f"row {r} {name}: docker {d!r} berth {b!r}")
for p in problems:
    print(p)
if problems:
    print("--- docker:"); print(open(docker_file).read().rstrip())
    print("--- berth:"); print(open(berth_file).read().rstrip())
sys.exit(1 if problems else 0)
EOF
}

# compare_json_fields DOCKER_JSON BERTH_JSON REQUIRED_FIELDS OPTIONAL_FIELDS
# Both files hold `inspect` arrays. Every REQUIRED field (comma separated)
# must be present in berth's output and equal to docker's; an OPTIONAL field
# is compared when berth prints it. Prints every field that differs.
compare_json_fields() {
    python3 - "$@" <<'EOF'
import json, sys

docker_file, berth_file, required, optional = sys.argv[1:5]
docker = json.load(open(docker_file))
try:
    berth = json.load(open(berth_file))
except ValueError as e:
    print(f"berth's output is not JSON ({e}):")
    print(open(berth_file).read()[:1000])
    sys.exit(1)
problems, notes = [], []
if not isinstance(berth, list) or len(berth) != len(docker):
    print(f"berth printed {type(berth).__name__} of {len(berth) if isinstance(berth, list) else '?'} entries, docker {len(docker)}")
    sys.exit(1)
for i, (d, b) in enumerate(zip(docker, berth)):
    for field in filter(None, required.split(",")):
        if field not in b:
            problems.append(f"[{i}] {field}: missing in berth (docker: {json.dumps(d.get(field))[:200]})")
        elif d.get(field) != b[field]:
            problems.append(f"[{i}] {field}: docker {json.dumps(d.get(field), sort_keys=True)[:400]}\n"
                            f"       berth  {json.dumps(b[field], sort_keys=True)[:400]}")
    for field in filter(None, optional.split(",")):
        if field not in b:
            notes.append(f"[{i}] {field}: not printed by berth")
        elif d.get(field) != b[field]:
            problems.append(f"[{i}] {field}: docker {json.dumps(d.get(field), sort_keys=True)[:400]}\n"
                            f"       berth  {json.dumps(b[field], sort_keys=True)[:400]}")
for n in notes:
    print("note:", n)
for p in problems:
    print(p)
sys.exit(1 if problems else 0)
EOF
}
