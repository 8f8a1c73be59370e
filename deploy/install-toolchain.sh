#!/usr/bin/env bash
# Installs the project's toolchain on a fresh machine: Rust 1.96 for the host
# and the guest components alike (rust-toolchain.toml), with wasm32 support.
#  - With rustup able to download (rust-toolchain.toml switched to
#    `channel = "1.96"`): `rustup target add wasm32-unknown-unknown` and
#    `cargo install wasm-component-ld`.
#  - Otherwise (no rustup downloads, Debian 12 as root; rust-toolchain.toml
#    points rustup at /usr): Debian's rustc-web 1.96 with clippy and rustfmt,
#    and a wasm32 std built from source (deploy/install-wasm-toolchain-debian.sh).
# Plus bubblewrap (Debian's `bubblewrap`), the sandbox the orchestrator builds
# model-written candidates in: without a working `bwrap` the host refuses to
# compile them (unless [orchestrator.compile] sandbox = "none").
# Idempotent; prints which path it took. Then `deploy/build-guests.sh` builds every guest.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
WCL_VERSION=0.5.31
sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo

if ! command -v bwrap >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "[install-toolchain] installing bubblewrap (the candidates' build sandbox)"
    $sudo_ apt-get update -qq && $sudo_ apt-get install -y -qq bubblewrap
  else
    echo "[install-toolchain] WARNING: no bwrap and no apt-get: install bubblewrap, or the orchestrator refuses to compile candidates" >&2
  fi
fi

if command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  have_target=1
elif command -v rustup >/dev/null 2>&1 && timeout 60 rustup target add wasm32-unknown-unknown >/dev/null 2>&1; then
  have_target=1
else
  have_target=0
fi

if [ "$have_target" = 1 ]; then
  echo "[install-toolchain] rustup path: wasm32-unknown-unknown installed"
  if ! wasm-component-ld --version 2>/dev/null | grep -q "$WCL_VERSION"; then
    cargo install --locked "wasm-component-ld@$WCL_VERSION"
  fi
else
  echo "[install-toolchain] Debian path: rustup cannot download targets here"
  $sudo_ bash "$here/install-wasm-toolchain-debian.sh"
fi
