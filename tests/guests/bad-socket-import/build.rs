//! wasm-component-ld carries the WASI 0.2 definitions of its default adapter
//! and merges this crate's minimal `wasi:*@0.2.0` stand-in into them (or
//! fails on the differing signatures). This guest must import exactly the
//! stand-in, so it is linked without the adapter.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo:rustc-link-arg-cdylib=--wasi-adapter=none");
    }
}
