#!/usr/bin/env bash
# Installs what locus needs on a fresh Debian machine (as root). Idempotent: does nothing when all is there.
set -euo pipefail
# prometheus (promtool) and prometheus-alertmanager (amtool, alertmanager) are test tools, and so is chromium
# (the lab report's browser test).
pkgs=(swtpm swtpm-tools libtss2-dev pkg-config tpm2-tools prometheus prometheus-alertmanager postgresql chromium)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "setup: cargo not found: install Rust (rustup) first" >&2; exit 1; }
