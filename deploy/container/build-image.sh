#!/usr/bin/env bash
# Builds the `multibridge` container image from scratch with buildah (Debian package `buildah`):
# no base image is pulled from any registry. The image holds exactly
#
#   /usr/local/bin/multibridge      the relay binary (debug info stripped)
#   the shared libraries it links   found with ldd: glibc (libc, libm, the loader) and libgcc_s
#                                   from the build machine (TLS is rustls, compiled in)
#   /etc/ssl/certs/ca-certificates.crt   CA bundle for https RPCs, S3 and KMS (SSL_CERT_FILE)
#   /etc/passwd, /etc/group, /etc/nsswitch.conf   user and group `nonroot` (65532)
#   /var/lib/multibridge            the store's mount point (owned by 65532), the working dir
#   /etc/multibridge/config         the config's mount point
#
# The binary is dynamically linked against glibc (there is no musl target on the build
# machine), so "static" here means: one binary plus exactly the libraries ldd lists, nothing
# else — no shell, no package manager. A PKCS#11 module (HSM signer) is not in the image: mount
# the vendor's module and its own dependencies, or build a derived image.
#
# Usage: deploy/container/build-image.sh [--binary PATH] [--tag NAME] [--root DIR] [--save FILE]
#   --binary  the relay binary (default: target/release/multibridge, built if missing)
#   --tag     image name (default: localhost/multibridge:<workspace version>)
#   --root    buildah storage under DIR (vfs driver; for CI and throw-away builds)
#   --save    also write the image as an OCI archive (oci-archive:FILE) to load elsewhere
#             (`podman load -i FILE`, `ctr -n k8s.io images import FILE`, `kind load image-archive`)
# Prints the tool used, the image id and its size; the last line is `image-id <id>`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n 1)"
binary="$root/target/release/multibridge"
tag="localhost/multibridge:${version:-dev}"
storage=""
save=""
while (($#)); do
  case "$1" in
  --binary) binary="$2" && shift 2 ;;
  --tag) tag="$2" && shift 2 ;;
  --root) storage="$2" && shift 2 ;;
  --save) save="$2" && shift 2 ;;
  -h | --help) sed -n '2,26p' "${BASH_SOURCE[0]}" && exit 0 ;;
  *) echo "build-image: unknown argument $1 (see --help)" >&2 && exit 2 ;;
  esac
done

fail() {
  printf 'build-image: FAILED: %s\n' "$*" >&2
  exit 1
}
command -v buildah >/dev/null || fail "buildah not found: apt-get install buildah (or bash .tools/setup.sh)"
command -v ldd >/dev/null || fail "ldd not found (libc-bin)"
if [ ! -x "$binary" ]; then
  [ "$binary" = "$root/target/release/multibridge" ] || fail "$binary is not an executable"
  echo "build-image: building $binary (cargo build --release -p multibridge)"
  (cd "$root" && cargo build --release --locked -p multibridge) || fail "cargo build failed"
fi
ca_bundle=/etc/ssl/certs/ca-certificates.crt
[ -f "$ca_bundle" ] || fail "$ca_bundle missing: apt-get install ca-certificates"

buildah_opts=()
if [ -n "$storage" ]; then
  mkdir -p "$storage"
  storage="$(cd "$storage" && pwd)"
  buildah_opts=(--root "$storage/storage" --runroot "$storage/run" --storage-driver vfs)
fi
bah() { buildah "${buildah_opts[@]}" "$@"; }
# `buildah mount` needs root or a user namespace: rootless, run this script again inside one.
if [ "$(id -u)" -ne 0 ] && [ -z "${BUILDAH_ISOLATION_UNSHARED:-}" ]; then
  export BUILDAH_ISOLATION_UNSHARED=1
  exec buildah unshare "${BASH_SOURCE[0]}" --binary "$binary" --tag "$tag" ${storage:+--root "$storage"} ${save:+--save "$save"}
fi

echo "build-image: $(buildah --version) (from scratch, no registry pulls)"
ctr="$(bah from --quiet scratch)"
cleanup() { bah rm "$ctr" >/dev/null 2>&1 || true; }
trap cleanup EXIT
mnt="$(bah mount "$ctr")"

install -d -m 0755 "$mnt/usr/local/bin" "$mnt/etc/ssl/certs" "$mnt/etc/multibridge/config"
install -d -m 0750 -o 65532 -g 65532 "$mnt/var/lib/multibridge"
install -m 0755 "$binary" "$mnt/usr/local/bin/multibridge"
if command -v strip >/dev/null; then strip --strip-debug "$mnt/usr/local/bin/multibridge"; fi
# Every library the loader resolves for the binary, at the path it resolves it to (and the
# loader itself at its absolute path).
libs="$(ldd "$binary" | awk '/=> \// { print $3 } /^[[:space:]]*\/[^ ]+ \(/ { print $1 }')"
[ -n "$libs" ] || fail "ldd lists no libraries for $binary (a static binary needs none: remove this check)"
printf '%s\n' "$libs" | grep -q '/ld-linux' || fail "ldd names no program loader for $binary: $libs"
for lib in $libs; do
  install -d "$mnt$(dirname "$lib")"
  cp -L "$lib" "$mnt$lib"
done
cp -L "$ca_bundle" "$mnt$ca_bundle"
printf 'root:x:0:0:root:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/var/lib/multibridge:/sbin/nologin\n' >"$mnt/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$mnt/etc/group"
printf 'hosts: files dns\n' >"$mnt/etc/nsswitch.conf"
bah umount "$ctr" >/dev/null

revision="$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)"
bah config \
  --user 65532:65532 \
  --workingdir /var/lib/multibridge \
  --env SSL_CERT_FILE="$ca_bundle" \
  --entrypoint '["/usr/local/bin/multibridge"]' \
  --cmd '["run", "--config", "/etc/multibridge/config/relay.toml"]' \
  --port 9464/tcp \
  --volume /var/lib/multibridge \
  --label org.opencontainers.image.title=multibridge \
  --label org.opencontainers.image.description="multibridge relay (from scratch: the binary and its libraries)" \
  --label org.opencontainers.image.version="$version" \
  --label org.opencontainers.image.revision="$revision" \
  "$ctr"
id="$(bah commit --quiet --format oci --timestamp 0 --rm "$ctr" "$tag")"
trap - EXIT
size="$(bah images --format '{{.Size}}' "$id" 2>/dev/null | head -n 1)"
echo "build-image: $tag ($size)"
if [ -n "$save" ]; then
  rm -f "$save"
  bah push --quiet "$id" "oci-archive:$save:$tag"
  echo "build-image: saved to $save ($(du -h "$save" | cut -f1))"
fi
echo "image-id $id"
