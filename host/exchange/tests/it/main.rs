//! host-exchange's one test binary: each venue adapter against its loopback venue (no wasmtime).

mod coinbase;
mod kraken;
