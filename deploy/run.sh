#!/usr/bin/env bash
# Runs the host on its embedded defaults: paper mode, SQLite in data/, the
# bundled candles replayed (data/sample/BTCUSD-1h.csv), no keys needed, then
# `host status` shows what happened. With arguments, they go to `host run`
# instead (for example none of --replay: paper-trade the venue's live feed).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash deploy/install-toolchain.sh
bash deploy/build-guests.sh sma-crossover market-analysis trade-performance
if [ "$#" -gt 0 ]; then
  exec cargo run --release -p host -- run "$@"
fi
cargo run --release -p host -- run --replay data/sample/BTCUSD-1h.csv --exit-at-end
cargo run --release -p host -- status
