#!/usr/bin/env bash
# The test command: installs the guest toolchain if missing, builds every guest
# component, runs the whole workspace's tests, then backtests every strategy
# inside the sandbox on a slice of real data (fails on a trap or a broken risk
# limit). The dashboard's browser test runs when chromium and npm are present
# (playwright-core pinned in tests/browser/package-lock.json).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash deploy/install-toolchain.sh
bash deploy/build-guests.sh
if command -v npm >/dev/null 2>&1 && [ ! -d tests/browser/node_modules ]; then
  (cd tests/browser && npm ci --no-audit --no-fund)
fi
cargo test --workspace
bash deploy/backtest-strategies.sh
