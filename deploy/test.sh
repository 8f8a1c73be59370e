#!/usr/bin/env bash
# The test command: installs the guest toolchain if missing, builds every guest
# component, runs the whole workspace's tests, then backtests every strategy
# inside the sandbox on a slice of real data.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash deploy/install-toolchain.sh
bash deploy/build-guests.sh
cargo test --workspace
if [ -x deploy/backtest-strategies.sh ]; then
  bash deploy/backtest-strategies.sh
fi
