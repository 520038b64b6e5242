#!/usr/bin/env bash
# Installs everything multibridge needs beyond Rust, Node/npm and Python. Idempotent.
#
#   from apt : etcd (server + client), protoc (etcd-client's build), nftables/iptables (fault
#              tests), prometheus (promtool for alert-rule tests)
#   from npm : anvil, forge, cast 1.7.1 and solcjs 0.8.37, pinned in .tools/package-lock.json
#
# Nothing is downloaded from anywhere but the Debian and npm registries.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
apt_packages=(etcd-server etcd-client protobuf-compiler nftables iptables prometheus)

log() { printf 'setup: %s\n' "$*"; }

missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { log "need root (or sudo) to apt-get install ${missing[*]}"; exit 1; }
    sudo="sudo"
  fi
  log "apt-get install ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "apt packages present"
fi

command -v npm >/dev/null || { log "npm is required (Node.js 18+)"; exit 1; }
if [ -x "$here/node_modules/.bin/anvil" ] && [ -x "$here/node_modules/.bin/forge" ] &&
  [ -f "$here/node_modules/solc/package.json" ] &&
  cmp -s "$here/package-lock.json" "$here/node_modules/.multibridge-installed-lock" 2>/dev/null; then
  log "npm tools present"
else
  log "npm ci (foundry 1.7.1, solc 0.8.37)"
  npm ci --prefix "$here" --no-audit --no-fund --loglevel=error >/dev/null
  # Stamp: the next run skips npm ci while the lockfile is unchanged.
  cp "$here/package-lock.json" "$here/node_modules/.multibridge-installed-lock"
fi

for tool in anvil forge etcd protoc promtool; do
  if [ "$tool" = anvil ] || [ "$tool" = forge ]; then
    path="$here/node_modules/.bin/$tool"
  else
    path="$(command -v "$tool" || true)"
  fi
  [ -n "$path" ] && [ -x "$path" ] || { log "$tool is missing after setup"; exit 1; }
done
log "ok: $("$here/node_modules/.bin/anvil" --version | head -1), etcd $(etcd --version | head -1 | awk '{print $3}'), $(protoc --version)"
