//! host-exchange's one test binary: each venue adapter against its loopback venue, and
//! never-panic properties for every parser of venue input (no wasmtime).

mod coinbase;
mod kraken;
mod parsers;
