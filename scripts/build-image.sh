#!/usr/bin/env bash
# Builds the dida container image: compiles dida on this machine as a static musl
# binary (operators embedded), copies it into a FROM scratch image (see
# Containerfile) and tags it localhost/dida:latest. No registry is needed: there is
# no base image to pull.
#
#   bash scripts/build-image.sh              # localhost/dida:latest
#   bash scripts/build-image.sh next         # localhost/dida:next
#   bash scripts/build-image.sh my/dida:1.0  # any full name
#
# Then `podman run --rm localhost/dida:latest --version`, `… storage …`, `… kv …`
# (docs/containers.md). Installs what it needs when it is missing: podman and runc
# (scripts/ensure-podman.sh), musl-tools (Debian's packages), and the Rust targets
# x86_64-unknown-linux-musl and wasm32-wasip2 (rustup). Cargo's output goes to
# DIDA_IMAGE_TARGET_DIR (default target/image), apart from the usual target/ so a
# build of the image never waits for another build's lock.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

tag=${1:-latest}
case $tag in
  */* | *:*) image=$tag ;;
  *) image=localhost/dida:$tag ;;
esac
target=x86_64-unknown-linux-musl
target_dir=${DIDA_IMAGE_TARGET_DIR:-$PWD/target/image}

source scripts/ensure-podman.sh
source scripts/ensure-wasm-target.sh
missing=()
# ring (TLS) compiles C: for a musl target the cc crate uses musl-gcc.
command -v musl-gcc >/dev/null 2>&1 || missing+=(musl-tools)
command -v objcopy >/dev/null 2>&1 || missing+=(binutils)
if [[ ${#missing[@]} -gt 0 ]]; then
  dida_apt_install "${missing[@]}"
fi
if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  echo "== installing the Rust target $target (a static binary for the image)" >&2
  rustup target add "$target"
fi

echo "== cargo build --release -p dida --target $target (into $target_dir)" >&2
CARGO_TARGET_DIR=$target_dir cargo build --release --quiet -p dida --target "$target"
binary=$target_dir/$target/release/dida
"$binary" --version >/dev/null # a static binary runs anywhere, this machine included

# The build context: only what the Containerfile copies.
context=$target_dir/context
rm -rf "$context"
mkdir -p "$context/root/etc" "$context/root/tmp" "$context/root/home" "$context/home" \
  "$context/data"
chmod 1777 "$context/root/tmp"
# Without its debug sections: cargo's release profile keeps line tables
# (`debug = "line-tables-only"`), some 200 MB of the 250 MB binary. The symbols
# stay, so a backtrace still names its functions (and a panic its file and line).
objcopy --strip-debug "$binary" "$context/dida"
chmod 0755 "$context/dida"
cat >"$context/root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
dida:x:65532:65532:dida:/home/dida:/sbin/nologin
EOF
cat >"$context/root/etc/group" <<'EOF'
root:x:0:
dida:x:65532:
EOF

revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
version=$("$binary" --version | awk '{print $2}')
previous=$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
echo "== podman build -t $image" >&2
# The build time label makes every build a new image, even of the same binary (a
# rolling upgrade test replaces containers with a newly built image).
podman build --quiet -f Containerfile -t "$image" \
  --label org.opencontainers.image.title=dida \
  --label org.opencontainers.image.version="$version" \
  --label org.opencontainers.image.revision="$revision" \
  --label org.opencontainers.image.created="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  "$context" >/dev/null

bytes=$(podman image inspect --format '{{.Size}}' "$image")
id=$(podman image inspect --format '{{.Id}}' "$image")
if [[ -n $previous && $previous != "$id" ]]; then
  # The image this tag named before, unless it has another tag or a container.
  podman rmi "$previous" >/dev/null 2>&1 || true
fi
echo "== built $image (image ${id:0:12}): $((bytes / 1000000)) MB ($bytes bytes; dida $(($(stat -c %s "$context/dida") / 1000000)) MB), in $((SECONDS - started)) s" >&2
