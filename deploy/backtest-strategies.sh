#!/usr/bin/env bash
# Sandboxed backtests in CI: every strategy component under strategies/ (each
# cdylib workspace member there, not the SDK) is backtested inside the sandbox
# on the last BARS bars of the shared hourly data (../shared/data/BTCUSD-1h.csv,
# else the bundled data/sample/BTCUSD-1h.csv). Fails if one cannot run, traps
# (any module_error, even one the run survived) or breaks a risk limit.
# Runs the `host` binary that `cargo test --workspace` already built
# (target/debug/host), so CI builds the host and wasmtime once: `cargo run -p host`
# resolves another feature set and rebuilt wasmtime and cranelift a second time.
# HOST_BIN overrides the binary.
# usage: deploy/backtest-strategies.sh [crate ...]    env: BARS (default 5000)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
CARGO=${CARGO:-cargo}
BARS=${BARS:-5000}

data=../shared/data/BTCUSD-1h.csv
[ -f "$data" ] || data=data/sample/BTCUSD-1h.csv
[ -f "$data" ] || { echo "backtest-strategies: no data file found" >&2; exit 1; }

meta=$("$CARGO" metadata --no-deps --format-version 1)
tdir=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])' <<<"$meta")
mapfile -t all < <(ROOT="$root" python3 -c '
import json, os, sys
root = os.path.join(os.environ["ROOT"], "strategies", "")
for p in json.load(sys.stdin)["packages"]:
    if not p["manifest_path"].startswith(root) or "/strategies/sdk/" in p["manifest_path"]:
        continue
    if any("cdylib" in t["crate_types"] for t in p["targets"]):
        print(p["name"])' <<<"$meta")
crates=("${@:-${all[@]}}")
[ ${#crates[@]} -gt 0 ] || { echo "backtest-strategies: no strategy crates found" >&2; exit 1; }

# the first traded bar: BARS rows from the end (earlier rows stay as history)
first_ts=$(tail -n "$BARS" "$data" | awk -F, '$1 != "ts" && !done { print $1; done = 1 }')
from=$(date -u -d "@$first_ts" +%F)

host_bin=${HOST_BIN:-$tdir/debug/host}
if [ ! -x "$host_bin" ]; then
  echo "backtest-strategies: $host_bin is missing: run cargo test --workspace (or cargo build -p host) first" >&2
  exit 1
fi

missing=()
for c in "${crates[@]}"; do [ -f "$tdir/wasm/$c.wasm" ] || missing+=("$c"); done
if [ ${#missing[@]} -gt 0 ]; then bash deploy/build-guests.sh "${missing[@]}"; fi

out="$tdir/ci-backtests"
mkdir -p "$out"
echo "sandboxed backtests: ${#crates[@]} strategies on $data from $from (last $BARS bars)"
failed=0
for c in "${crates[@]}"; do
  mkdir -p "$out/$c"
  if HOST_LOG=error "$host_bin" backtest \
      --strategy "$tdir/wasm/$c.wasm" --data "$data" --from "$from" \
      --fail-on-trap --fail-on-breach --json --out "$out/$c" >"$out/$c/stdout.json" 2>"$out/$c/stderr.txt"; then
    python3 - "$c" "$out/$c/report.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[2]))
m = r["metrics"]
f = lambda x, p=2: "-" if x is None else f"{x:.{p}f}"
print(f"  ok    {sys.argv[1]:<20} {r['bars']:>6} bars {m['trade_count']:>4} trades  return {f(r['return_pct'])}%"
      f"  max DD {f(m['max_drawdown_pct'])}%  module errors {r['module_errors']}  risk breaches {r['risk_breach_count']}")
EOF
  else
    failed=$((failed + 1))
    echo "  FAIL  $c: $(tail -n 3 "$out/$c/stderr.txt")"
  fi
done
if [ "$failed" -gt 0 ]; then
  echo "backtest-strategies: $failed of ${#crates[@]} strategies failed (reports in $out)" >&2
  exit 1
fi
echo "backtest-strategies: all ${#crates[@]} strategies passed (reports in $out)"
