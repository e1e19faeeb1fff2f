#!/usr/bin/env bash
# The archive matrix. IN: archives written by `docker save`, `podman save`
# (docker-archive and oci-archive) and `skopeo copy` (docker-archive: and
# oci-archive:), plain and gzip/bzip2/xz/zstd compressed, loaded by berth
# under the IDs docker and podman report. OUT: `berth save` (docker-archive
# and --format oci) read back by docker load, podman load, skopeo and umoci,
# keeping the IDs; the images run. Bad input is refused and changes nothing.
source "$(dirname "$0")/lib.sh"

A="$(new_tmpdir)" # archives

# craft MODE ARGS...: writes archives the peers never would (see each mode).
craft() {
    python3 - "$@" <<'EOF'
import hashlib, io, json, sys, tarfile

mode, *args = sys.argv[1:]

def members(path):
    with tarfile.open(path) as t:
        for m in t.getmembers():
            yield m, (t.extractfile(m).read() if m.isfile() else None)

def write(path, entries):
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as t:
        for m, data in entries:
            t.addfile(m, io.BytesIO(data) if data is not None else None)

def file_entry(name, data, mode=0o644):
    m = tarfile.TarInfo(name)
    m.size, m.mode, m.mtime = len(data), mode, 0
    return m, data

if mode == "docker25":
    # The layout `docker save` writes since Docker 25: an OCI image layout
    # (blobs/sha256, index.json, oci-layout) plus the legacy manifest.json
    # pointing into blobs/.
    src, dst = args
    with tarfile.open(src) as t:  # follows docker's symlinks between layers
        files = {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile() or m.issym()}
    legacy = json.loads(files["manifest.json"])
    blobs, index, manifest_json = {}, [], []
    def blob(data):
        digest = hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return digest
    for image in legacy:
        config = files[image["Config"]]
        cfg = blob(config)
        layers = [blob(files[l]) for l in image["Layers"]]
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": "sha256:" + cfg, "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": "sha256:" + l, "size": len(blobs[l])} for l in layers],
        }, separators=(",", ":")).encode()
        md = blob(manifest)
        for tag in image["RepoTags"]:
            index.append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                          "digest": "sha256:" + md, "size": len(manifest),
                          "annotations": {"io.containerd.image.name": "docker.io/library/" + tag,
                                          "org.opencontainers.image.ref.name": tag.rsplit(":", 1)[1]}})
        manifest_json.append({"Config": "blobs/sha256/" + cfg, "RepoTags": image["RepoTags"],
                              "Layers": ["blobs/sha256/" + l for l in layers]})
    entries = [file_entry("blobs/sha256/" + d, data) for d, data in sorted(blobs.items())]
    entries.append(file_entry("index.json", json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
         "manifests": index}).encode()))
    entries.append(file_entry("manifest.json", json.dumps(manifest_json).encode()))
    entries.append(file_entry("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'))
    write(dst, entries)
elif mode == "drop-layer":
    # manifest.json names a layer file the archive does not contain.
    src, dst = args
    entries = list(members(src))
    layer = json.loads(dict((m.name, d) for m, d in entries)["manifest.json"])[-1]["Layers"][-1]
    write(dst, [(m, d) for m, d in entries if m.name != layer])
elif mode == "wrong-layer":
    # A layer whose content does not match the config's diff_id.
    src, dst = args
    entries = list(members(src))
    layer = json.loads(dict((m.name, d) for m, d in entries)["manifest.json"])[-1]["Layers"][-1]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        m, d = file_entry("evil.txt", b"not the layer you are looking for\n")
        t.addfile(m, io.BytesIO(d))
    out = []
    for m, d in entries:
        if m.name == layer:
            m, d = file_entry(layer, buf.getvalue())
        out.append((m, d))
    write(dst, out)
elif mode == "add-file":
    # A valid archive plus one member named NAME (e.g. ../x or /tmp/x).
    src, dst, name = args
    write(dst, list(members(src)) + [file_entry(name, b"escaped\n")])
elif mode == "symlink-layer":
    # A layer member replaced by a symlink to TARGET, outside the archive.
    src, dst, target = args
    entries = list(members(src))
    layer = json.loads(dict((m.name, d) for m, d in entries)["manifest.json"])[-1]["Layers"][-1]
    out = []
    for m, d in entries:
        if m.name == layer:
            m = tarfile.TarInfo(layer)
            m.type, m.linkname, d = tarfile.SYMTYPE, target, None
        out.append((m, d))
    write(dst, out)
elif mode == "huge-json":
    # manifest.json of SIZE bytes of valid JSON, streamed to disk.
    dst, size = args[0], int(args[1])
    with open(dst, "wb") as f:
        m = tarfile.TarInfo("manifest.json")
        m.size, m.mode = size, 0o644
        f.write(m.tobuf(format=tarfile.USTAR_FORMAT))
        f.write(b"[")
        chunk, left = b" " * (1 << 20), size - 2
        while left:
            n = min(left, len(chunk))
            f.write(chunk[:n])
            left -= n
        f.write(b"]")
        f.write(b"\0" * ((512 - size % 512) % 512 + 1024))
else:
    sys.exit(f"unknown mode {mode}")
EOF
}

compress() { # compress FORMAT FILE: prints the name of the compressed copy
    case "$1" in
    none) echo "$2" ;;
    gzip) gzip -c "$2" >"$2.gz" && echo "$2.gz" ;;
    bzip2) bzip2 -c "$2" >"$2.bz2" && echo "$2.bz2" ;;
    xz) xz -T1 -c "$2" >"$2.xz" && echo "$2.xz" ;;
    zstd) zstd -q -c "$2" >"$2.zst" && echo "$2.zst" ;;
    esac
}

# berth_rejects MSG CMD...: CMD must fail with an error message of its own
# (a usage error from the argument parser means the command is missing).
berth_rejects() {
    local msg="$1" out
    shift
    if out="$("$@" 2>&1)"; then
        _soft_fail "$msg: succeeded: $(printf '%s' "$out" | head -3)"
    elif grep -q -E "unrecognized subcommand|unexpected argument" <<<"$out"; then
        _soft_fail "$msg: berth lacks the command or option: $(printf '%s' "$out" | head -1)"
    elif [[ -z "$out" ]]; then
        _soft_fail "$msg: failed without an error message"
    else
        ok "$msg: $(printf '%s' "$out" | head -1 | cut -c1-150)"
    fi
}

# Image IDs as berth lists them, one per line, sorted.
berth_ids() { berth images -a -q --no-trunc 2>&1 | sort -u; }
# The config digest of an image in an archive, i.e. its image ID.
skopeo_id() { echo "sha256:$(skopeo inspect --raw --config "$1" | sha256sum | cut -d' ' -f1)"; }
# The ID podman reports for an archive, loaded into a store of its own.
podman_ids() {
    local name id
    export PODMAN_ROOT
    PODMAN_ROOT="$(new_tmpdir)"
    podman load -q -i "$1" | sed -n -E 's/^Loaded image(\(s\))?: //p' | tr ',' '\n' |
        while read -r name; do
            id="$(podman image inspect --format '{{.Id}}' "$name")"
            echo "sha256:${id#sha256:}"
        done | sort -u
    unset PODMAN_ROOT
}

say "== archives written by the peers"
start_dockerd
build_busybox_image busybox:musl
build_app_image app:v1
bb_id="$(docker inspect --format '{{.Id}}' busybox:musl)"
app_id="$(docker inspect --format '{{.Id}}' app:v1)"
app_layers="$(docker inspect --format '{{json .RootFS.Layers}}' app:v1)"
docker_ids="$(printf '%s\n' "$app_id" "$bb_id" | sort)"

docker save -o "$A/docker.tar" busybox:musl app:v1
craft docker25 "$A/docker.tar" "$A/docker25.tar"
podman load -q -i "$A/docker.tar" >/dev/null
podman save -q -m -o "$A/podman-docker.tar" busybox:musl app:v1
podman save -q --format oci-archive -o "$A/podman-oci.tar" app:v1
skopeo copy -q --src-daemon-host "$DOCKER_HOST" docker-daemon:app:v1 "docker-archive:$A/skopeo-docker.tar:app:v1"
skopeo copy -q --src-daemon-host "$DOCKER_HOST" docker-daemon:app:v1 "oci-archive:$A/skopeo-oci.tar:app:v1"
ok "docker, podman and skopeo wrote their archives"

# What each archive must load as: the IDs its producer (or podman) reports.
# Converting to OCI rewrites the config, so those IDs differ from docker's.
declare -A expect
expect[docker.tar]="$docker_ids"
expect[docker25.tar]="$docker_ids"
expect[podman-docker.tar]="$(podman_ids "$A/podman-docker.tar")"
expect[skopeo-docker.tar]="$app_id"
expect[podman-oci.tar]="$(podman_ids "$A/podman-oci.tar")"
expect[skopeo-oci.tar]="$(podman_ids "$A/skopeo-oci.tar")"
declare -A app_expect
for archive in docker.tar docker25.tar podman-docker.tar skopeo-docker.tar; do
    app_expect[$archive]="$app_id"
done
app_expect[podman-oci.tar]="${expect[podman-oci.tar]}"
app_expect[skopeo-oci.tar]="${expect[skopeo-oci.tar]}"
for archive in "${!expect[@]}"; do
    grep -q -v -E '^sha256:[0-9a-f]{64}$' <<<"${expect[$archive]}" && fail "no image ID known for $archive"
done
check_eq "${expect[podman-docker.tar]}" "$docker_ids" "podman keeps docker's IDs in docker-archive"
check_eq "${expect[skopeo-oci.tar]}" "$(skopeo_id "oci-archive:$A/skopeo-oci.tar")" \
    "podman reports the oci-archive's config digest as its ID"

say "== berth load: every producer x every compression"
for archive in docker.tar docker25.tar podman-docker.tar podman-oci.tar skopeo-docker.tar skopeo-oci.tar; do
    for c in none gzip bzip2 xz zstd; do
        file="$(compress "$c" "$A/$archive")"
        BERTH_ROOT="$(new_tmpdir)"
        if out="$(berth load -i "$file" 2>&1)"; then
            check_eq "$(berth_ids)" "${expect[$archive]}" "load $archive ($c): image IDs"
        else
            _soft_fail "load $archive ($c): berth load failed: $out"
        fi
    done
    # Diff IDs survive every conversion; check them once per producer.
    check_eq "$(berth inspect "${app_expect[$archive]}" 2>&1 | jq -c '.[0].RootFS.Layers' 2>&1)" \
        "$app_layers" "load $archive: app:v1's RootFS.Layers are docker's"
done

BERTH_ROOT="$(new_tmpdir)"
check_eq "$(berth load -i "$A/docker.tar" 2>&1)" "$(docker load -i "$A/docker.tar" 2>&1)" \
    "berth load prints what docker load prints"
check_eq "$(berth images --format '{{.Repository}}:{{.Tag}}' | sort | tr '\n' ' ')" "app:v1 busybox:musl " \
    "the tags of a docker save archive"
BERTH_ROOT="$(new_tmpdir)"
check_ok "berth load from stdin (gzip)" sh -c "'$BERTH' load < '$A/docker.tar.gz'"
check_eq "$(berth_ids)" "$docker_ids" "load from stdin: image IDs"
BERTH_ROOT="$(new_tmpdir)"
check_ok "berth load of the docker 25 layout keeps its tags" berth load -i "$A/docker25.tar"
check_eq "$(berth images --format '{{.Repository}}:{{.Tag}}' | sort | tr '\n' ' ')" "app:v1 busybox:musl " \
    "the tags of a docker 25 archive"

say "== berth save, read by the peers"
export BERTH_ROOT
BERTH_ROOT="$(new_tmpdir)"
check_ok "load the images to save" berth load -i "$A/docker.tar"
check_ok "berth tag busybox:musl busybox:local" berth tag busybox:musl busybox:local
check_ok "berth save -o (three tags, two images)" \
    berth save -o "$A/berth.tar" busybox:musl busybox:local app:v1
docker rmi -f busybox:musl app:v1 >/dev/null
check_eq "$(docker images -a -q | wc -l)" 0 "docker has no images left"
check_eq "$(docker load -i "$A/berth.tar" 2>&1 | sort)" \
    "$(printf 'Loaded image: %s\n' app:v1 busybox:local busybox:musl)" "docker load of berth's archive: every tag"
check_eq "$(docker inspect --format '{{.Id}}' app:v1 2>&1)" "$app_id" "docker → berth → docker keeps app:v1's ID"
check_eq "$(docker inspect --format '{{.Id}}' busybox:local 2>&1)" "$bb_id" "busybox:local has busybox's ID in docker"
check_eq "$(docker run --rm --network none busybox:musl echo hi 2>&1)" "hi" "docker runs busybox:musl from berth's archive"
check_eq "$(docker run --rm --network none app:v1 2>&1)" "hello" "docker runs app:v1 (ENTRYPOINT, CMD, USER) from berth's archive"
check_eq "$(docker run --rm --network none app:v1 'cat /opt/app/data/a.txt; pwd; id -u' 2>&1 | tr '\n' ' ')" \
    "hello /opt/app 65534 " "app:v1's files, WORKDIR and USER survive the round trip"

check_eq "$(podman_ids "$A/berth.tar")" "$docker_ids" "podman load of berth's archive: docker's IDs"

check_eq "$(skopeo_id "docker-archive:$A/berth.tar:app:v1" 2>&1)" "$app_id" "skopeo reads app:v1 from berth's archive"
check_eq "$(skopeo inspect "docker-archive:$A/berth.tar:busybox:local" 2>&1 | jq -c .Layers | tr -d '"[]' | tr ',' '\n' | wc -l)" \
    2 "skopeo inspect: busybox:local has 2 layers"
oci_dir="$(new_tmpdir)"
check_ok "skopeo copy docker-archive:(berth) → oci:" \
    skopeo copy -q "docker-archive:$A/berth.tar:app:v1" "oci:$oci_dir/layout:app"
bundle="$(new_tmpdir)/bundle"
check_ok "umoci unpacks what skopeo copied from berth's archive" \
    umoci unpack --image "$oci_dir/layout:app" "$bundle"
check_eq "$(cat "$bundle/rootfs/opt/app/data/a.txt" 2>&1)" "hello" "the unpacked rootfs has app:v1's files"

# The tutorial's spelling: docker image save -o / docker image load -i.
check_ok "berth image save -o" berth image save -o "$A/berth-image-save.tar" app:v1
check_eq "$(skopeo_id "docker-archive:$A/berth-image-save.tar" 2>&1)" "$app_id" "berth image save: skopeo reads it"
check_eq "$(BERTH_ROOT="$(new_tmpdir)" "$BERTH" image load -i "$A/berth-image-save.tar" 2>&1)" "Loaded image: app:v1" \
    "berth image load -i reads it back"
berth save app:v1 >"$A/berth-stdout.tar" 2>"$A/berth-stdout.err" || _soft_fail "berth save to stdout: $(cat "$A/berth-stdout.err")"
check_eq "$(skopeo_id "docker-archive:$A/berth-stdout.tar" 2>&1)" "$app_id" "berth save to stdout: skopeo reads it"

say "== berth save --format oci"
check_ok "berth save --format oci" berth save --format oci -o "$A/berth-oci.tar" app:v1
check_eq "$(skopeo_id "oci-archive:$A/berth-oci.tar" 2>&1)" "$app_id" \
    "skopeo reads berth's oci-archive; the config is kept byte for byte"
check_ok "skopeo copy oci-archive:(berth) → docker-archive:" \
    skopeo copy -q "oci-archive:$A/berth-oci.tar" "docker-archive:$A/via-skopeo.tar:app:oci"
docker rmi -f app:v1 >/dev/null 2>&1 || true
check_eq "$(docker load -q -i "$A/via-skopeo.tar" 2>&1 && docker inspect --format '{{.Id}}' app:oci 2>&1)" \
    "Loaded image: app:oci"$'\n'"$app_id" "docker loads it with app:v1's ID"
check_eq "$(podman_ids "$A/berth-oci.tar")" "$app_id" "podman load of berth's oci-archive: same ID"
oci2="$(new_tmpdir)"
tar -xf "$A/berth-oci.tar" -C "$oci2" 2>/dev/null || true
oci_tag="$(umoci ls --layout "$oci2" 2>/dev/null | head -1 || true)"
check_ok "umoci lists a tag in berth's oci-archive ('$oci_tag')" test -n "$oci_tag"
check_ok "umoci unpacks berth's oci-archive (verifies every digest)" \
    umoci unpack --image "$oci2:$oci_tag" "$oci2.bundle"
check_eq "$(cat "$oci2.bundle/rootfs/etc/app.conf" 2>&1)" "key=value" "the unpacked rootfs has app:v1's files"

say "== bad input changes nothing"
# What must not change: every image and tag (no relative times in it), and
# the store's own consistency check.
store_state() {
    berth images -a --no-trunc --format '{{.Repository}}:{{.Tag}} {{.ID}} {{.CreatedAt}} {{.Size}}' 2>&1 | sort
    if berth system check >/dev/null 2>&1; then echo "system check: ok"; else echo "system check: FAILED"; fi
}
before="$(store_state)"
check_eq "$(berth_ids)" "$docker_ids" "the store holds the images before the bad input"
check_eq "$(grep -c "^app:v1 $app_id " <<<"$before")" 1 "berth images --format lists app:v1 before the bad input"
half=$(($(stat -c %s "$A/docker.tar") / 2))
head -c "$half" "$A/docker.tar" >"$A/truncated.tar"
head -c "$(($(stat -c %s "$A/docker.tar.gz") / 2))" "$A/docker.tar.gz" >"$A/truncated.tar.gz"
mkdir -p "$A/notimage" && echo "just a file" >"$A/notimage/README" &&
    tar -cf "$A/notimage.tar" -C "$A/notimage" README
head -c 1048576 /dev/urandom >"$A/random.bin"
craft drop-layer "$A/docker.tar" "$A/missing-layer.tar"
craft wrong-layer "$A/docker.tar" "$A/wrong-digest.tar"
escape="escape-$$-$RANDOM"
craft add-file "$A/docker.tar" "$A/dotdot.tar" "../../../../../../tmp/$escape"
craft add-file "$A/docker.tar" "$A/absolute.tar" "/tmp/$escape"
craft symlink-layer "$A/docker.tar" "$A/symlink.tar" /etc/passwd

for bad in truncated.tar truncated.tar.gz notimage.tar random.bin missing-layer.tar \
    wrong-digest.tar dotdot.tar absolute.tar symlink.tar; do
    berth_rejects "berth load $bad fails" berth load -i "$A/$bad"
    check_eq "$(store_state)" "$before" "  ... and the images, tags and store are unchanged"
done
check_ok "nothing was written outside the store" test ! -e "/tmp/$escape"

craft huge-json "$A/huge.tar" $((1 << 30))
berth_rejects "berth load of a 1 GiB manifest.json fails" \
    /usr/bin/time -f '%M' -o "$A/huge.rss" "$BERTH" load -i "$A/huge.tar"
rm -f "$A/huge.tar"
check_ok "  ... using less than 256 MiB (peak $(($(tail -1 "$A/huge.rss") / 1024)) MiB)" \
    test "$(tail -1 "$A/huge.rss")" -lt 262144
check_eq "$(store_state)" "$before" "  ... and the images, tags and store are unchanged"

berth_rejects "berth save of an unknown image fails" berth save -o "$A/nothing.tar" nosuch:img
check_ok "  ... and writes no file" test ! -e "$A/nothing.tar"
check_eq "$(berth save -o "$A/nothing.tar" Bad:Ref 2>&1 | grep -o 'invalid reference format.*')" \
    "invalid reference format: repository name must be lowercase" "berth save of an invalid reference: docker's error"
# `script` gives berth a terminal as stdout.
if out="$(script -qec "$BERTH save app:v1" /dev/null 2>&1)"; then
    _soft_fail "berth save to a terminal succeeded"
else
    check_eq "$(printf '%s' "$out" | grep -c -i 'terminal')" 1 \
        "berth save refuses to write to a terminal: $(printf '%s' "$out" | head -1 | cut -c1-120)"
fi
check_ok "berth system check: the store is consistent" berth system check
