#!/usr/bin/env bash
# Website benchmark: berth's pages on a registry seeded with REPOS
# repositories and REPOS*TAGS tags (10,000 and 100,000 by default), served
# with --auth (so every list is filtered by who is looking).
#
#   bench/web.sh                        # needs root; builds target/release/berth if needed
#   REPOS=10000 TAGS=10 DURATION=10 bench/web.sh
#
# For `/`, `/search?q=…`, a repository page and its tags page, under wrk
# with 16 connections for DURATION seconds: the server's own time per
# request (median and p99, from its access log), wrk's latency and
# requests/s, the page size; then `/v1/search` against `/search` for the
# same query (target: the page costs at most 2x the JSON), and the server's
# peak RSS. Targets: every page's p99 server time under 50 ms, pages under
# 50 KB. Not part of .ci/run.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

REPOS="${REPOS:-10000}"
TAGS="${TAGS:-10}"
DURATION="${DURATION:-10}"

source "$here/lib.sh"
say "berth: $BERTH"

P="$(free_port)"
ROOT="$T/reg-web"
LOG="$T/access.log"
echo admin-pw | BERTH_REGISTRY_ROOT="$ROOT" "$BERTH" registry user add boss --admin --password-stdin >/dev/null
start_berth() {
    BERTH_REGISTRY_ROOT="$ROOT" spawn "$BERTH" registry serve --addr "127.0.0.1:$P" --auth \
        --log-level info 2>>"$LOG"
    BERTH_PID="${_PIDS[-1]}"
    wait_until 30 _http_answers "http://127.0.0.1:$P/" || fail "berth registry did not start"
}
start_berth

# ------------------------------------------------------------------ the data
# TAGS real images pushed over HTTP into seed/base, then their metadata
# copied into REPOS repositories (one transaction), as many pushes would
# leave it: tags at spread-out times, pushers, descriptions, stars, and one
# repository in ten private.
say "== seeding $REPOS repositories, $((REPOS * TAGS)) tags"
python3 - "http://127.0.0.1:$P" "$TAGS" <<'PY'
import base64, hashlib, json, sys, urllib.request
base, n = sys.argv[1], int(sys.argv[2])
auth = "Basic " + base64.b64encode(b"boss:admin-pw").decode()
def req(method, path, data=b"", ctype="application/octet-stream"):
    r = urllib.request.Request(base + path, data=data, method=method,
                               headers={"Authorization": auth, "Content-Type": ctype})
    return urllib.request.urlopen(r).status
for i in range(n):
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {"seed": str(i)}},
                         "rootfs": {"type": "layers", "diff_ids": []},
                         "history": [{"created_by": f"/bin/sh -c echo {i}"}]}).encode()
    layer = bytes([i % 256]) * (1000 + i)
    blobs = []
    for b in (config, layer):
        d = "sha256:" + hashlib.sha256(b).hexdigest()
        req("POST", f"/v2/seed/base/blobs/uploads/?digest={d}", b)
        blobs.append((d, len(b)))
    m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blobs[0][0], "size": blobs[0][1]},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": blobs[1][0], "size": blobs[1][1]}]}).encode()
    req("PUT", f"/v2/seed/base/manifests/v{i}", m, "application/vnd.oci.image.manifest.v1+json")
PY
_stop_pid "$BERTH_PID"
python3 - "$ROOT/metadata.db" "$REPOS" <<'PY'
import sqlite3, sys, time
db, repos = sys.argv[1], int(sys.argv[2])
c = sqlite3.connect(db)
c.execute("PRAGMA foreign_keys = ON")
now = int(time.time())
man = c.execute("SELECT digest, media_type, size, artifact_type, created FROM manifests WHERE repository = 'seed/base'").fetchall()
refs = c.execute("SELECT manifest, digest, kind, position FROM manifest_refs WHERE repository = 'seed/base'").fetchall()
links = c.execute("SELECT digest, size FROM blob_links WHERE repository = 'seed/base'").fetchall()
tags = c.execute("SELECT name, digest FROM tags WHERE repository = 'seed/base'").fetchall()
with c:
    for i in range(repos):
        r = f"team{i % 500}/app{i}"
        t0 = now - (repos - i) * 60
        c.execute("INSERT INTO repositories (name, created) VALUES (?, ?)", (r, t0))
        c.executemany("INSERT INTO blob_links (repository, digest, size, created) VALUES (?, ?, ?, ?)",
                      [(r, d, s, t0) for d, s in links])
        c.executemany("INSERT INTO manifests (repository, digest, media_type, size, artifact_type, created) VALUES (?, ?, ?, ?, ?, ?)",
                      [(r, d, mt, s, at, t0) for d, mt, s, at, _ in man])
        c.executemany("INSERT INTO manifest_refs (repository, manifest, digest, kind, position) VALUES (?, ?, ?, ?, ?)",
                      [(r, m, d, k, p) for m, d, k, p in refs])
        c.executemany("INSERT INTO tags (repository, name, digest, updated) VALUES (?, ?, ?, ?)",
                      [(r, name, d, t0 + j) for j, (name, d) in enumerate(tags)])
        c.executemany("INSERT INTO tag_pushers (repository, name, user) VALUES (?, ?, ?)",
                      [(r, name, f"team{i % 500}") for name, _ in tags])
        c.execute("INSERT INTO repository_activity (name, updated) VALUES (?, ?)", (r, t0 + len(tags)))
        c.execute("INSERT INTO repository_descriptions (name, description) VALUES (?, ?)", (r, f"Application number {i} of team {i % 500}"))
        if i % 10 == 0:
            c.execute("INSERT INTO repository_settings (name, private) VALUES (?, 1)", (r,))
        if i % 7 == 0:
            c.executemany("INSERT INTO stars (user, repository) VALUES (?, ?)", [(f"fan{k}", r) for k in range(i % 5)])
print(c.execute("SELECT COUNT(*) FROM repositories").fetchone()[0], "repositories,",
      c.execute("SELECT COUNT(*) FROM tags").fetchone()[0], "tags")
PY
# KEEP_DB=FILE keeps a copy of the seeded metadata (to study queries).
if [[ -n "${KEEP_DB:-}" ]]; then
    python3 -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).backup(sqlite3.connect(sys.argv[2]))' \
        "$ROOT/metadata.db" "$KEEP_DB"
fi
: >"$LOG"
start_berth

# ------------------------------------------------------------------ the runs
repo="team1/app1"
pages=("/" "/search?q=app12" "/r/$repo" "/r/$repo/tags" "/v1/search?q=app12" "/search?q=" "/u/team1" "/r/$repo/tags/v0")
names=("start page" "search page" "repository page" "tags page" "/v1/search (JSON)" "search, everything" "user page" "tag page")
declare -A med p99 rps size
for i in "${!pages[@]}"; do
    path="${pages[$i]}"
    url="http://127.0.0.1:$P$path"
    [[ "$(curl -s -o /dev/null -w '%{http_code}' "$url")" == 200 ]] || fail "$path does not answer 200"
    size[$i]="$(curl -s "$url" | wc -c)"
    wrk -t2 -c16 -d"${DURATION}s" "$url" >"$T/wrk.$i" 2>&1
    rps[$i]="$(awk '/Requests\/sec/ { print $2 }' "$T/wrk.$i")"
    # The server's own time for each request of this path, from its access log.
    read -r med[$i] p99[$i] < <(python3 - "$LOG" "${path%%\?*}" <<'PY'
import re, sys
log, path = sys.argv[1], sys.argv[2]
us = []
for line in open(log, errors="replace"):
    line = re.sub(r"\x1b\[[0-9;]*m", "", line)
    m = re.search(r'path=(\S+).*?micros=(\d+)', line)
    if m and m.group(1) == path:
        us.append(int(m.group(2)))
us.sort()
if not us:
    print("n/a n/a")
else:
    print(f"{us[len(us) // 2] / 1000:.2f} {us[min(len(us) - 1, int(len(us) * 0.99))] / 1000:.2f}")
PY
)
    : >"$LOG"
done
rss="$(awk '/VmHWM/ { printf "%d\n", $2 / 1024 }' "/proc/$BERTH_PID/status")"

say ""
say "== $REPOS repositories, $((REPOS * TAGS)) tags; wrk 16 connections, ${DURATION}s each"
printf '%-22s %12s %12s %10s %10s %s\n' "PAGE" "MEDIAN ms" "P99 ms" "REQ/S" "BYTES" "TARGET"
for i in "${!pages[@]}"; do
    target="p99 < 50 ms"
    ok=ok
    le "${p99[$i]}" 50 || ok=MISSED
    if [[ "${pages[$i]}" != /v1/* ]]; then
        target="$target, < 50 KB"
        lt "${size[$i]}" 51200 || ok=MISSED
    fi
    printf '%-22s %12s %12s %10s %10s %s %s\n' "${names[$i]}" "${med[$i]}" "${p99[$i]}" "${rps[$i]}" "${size[$i]}" "$target" "$ok"
done
r="$(ratio "${med[1]}" "${med[4]}")"
say "search page / /v1/search median server time: $r (target <= 2.00) $(verdict le "$r" 2)"
say "peak RSS of the server: ${rss} MiB"
