#!/usr/bin/env bash
# Builds every guest crate (strategies/, analysis/, tests/guests/) into a WASM
# component under target/wasm/<crate>.wasm. Guest settings (compiler, linker,
# `guest` profile) are set here only, never for the host build.
# usage: deploy/build-guests.sh [crate ...]   (default: all guests)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# Compiler, linker and target: one definition shared with the host's orchestrator.
source deploy/guest-env.sh
TARGET=$GUEST_TARGET
CARGO=${CARGO:-cargo}

# Every workspace member with a cdylib target is a guest.
mapfile -t all < <("$CARGO" metadata --no-deps --format-version 1 | python3 -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    if any("cdylib" in t["crate_types"] for t in p["targets"]):
        print(p["name"])')
crates=("${@:-${all[@]}}")
args=()
for c in "${crates[@]}"; do args+=(-p "$c"); done
"$CARGO" build --quiet --profile guest --target $TARGET "${args[@]}"

tdir=$("$CARGO" metadata --no-deps --format-version 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
mkdir -p "$tdir/wasm"
for c in "${crates[@]}"; do
  f="${c//-/_}.wasm"
  cp "$tdir/$TARGET/guest/$f" "$tdir/wasm/$c.wasm"
  printf '%-28s %8d bytes\n' "target/wasm/$c.wasm" "$(stat -c %s "$tdir/wasm/$c.wasm")"
done
