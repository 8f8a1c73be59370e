#!/usr/bin/env bash
# Runs the host on its embedded defaults: paper mode, SQLite in data/, the
# bundled candles replayed, no keys needed. Extra arguments go to `host run`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash deploy/install-toolchain.sh
bash deploy/build-guests.sh sma-crossover market-analysis trade-performance
cargo run --release -p host -- run "$@"
