#!/usr/bin/env bash
# The browser tier: berth's website in Debian's Chromium, driven by
# playwright-core (tests/interop/web, a committed lock file), on a berth
# started with --auth --signup on a free loopback port, with the real
# docker CLI pushing in between. Skipped, saying why, when Chromium or the
# npm packages cannot be installed.
source "$(dirname "$0")/lib.sh"

WEB="$REPO_ROOT/tests/interop/web"
if [[ ! -x /usr/bin/chromium ]]; then
    apt-get install -y -q --no-install-recommends chromium fonts-liberation </dev/null >/dev/null 2>&1 || true
fi
if [[ ! -x /usr/bin/chromium ]]; then
    say "SKIP: the browser tier needs Debian's chromium (apt-get install chromium fonts-liberation failed)"
    exit 0
fi
if ! command -v npm >/dev/null || ! (cd "$WEB" && npm ci --no-audit --no-fund --loglevel=error >/dev/null 2>&1); then
    say "SKIP: the browser tier needs playwright-core and axe-core from npm (npm ci failed)"
    exit 0
fi

start_dockerd
build_busybox_image busybox:musl

P="$(free_port)"
ROOT="$T/reg-web"
echo "admin-pw" | BERTH_REGISTRY_ROOT="$ROOT" berth registry user add boss --admin --password-stdin >/dev/null
BERTH_REGISTRY_ROOT="$ROOT" spawn "$BERTH" registry serve --addr "127.0.0.1:$P" --log-level error --auth --signup
wait_until 30 _http_answers "http://127.0.0.1:$P/" || fail "berth registry did not start"

SHOTS="$REPO_ROOT/target/web-screenshots"
say "== the tutorial in Chromium (screenshots under $SHOTS)"
if BASE="http://127.0.0.1:$P" HOSTPORT="127.0.0.1:$P" SHOTS="$SHOTS" node "$WEB/tutorial.mjs"; then
    ok "the tutorial passes in the browser"
else
    fail "the browser tier failed"
fi
