# Guest toolchain environment, sourced by deploy/build-guests.sh and by the
# host's orchestrator when it compiles candidate strategies: one definition of
# the guest compiler, linker and target. Sets (and exports) CARGO, RUSTC,
# RUSTDOC and the wasm32 linker settings; GUEST_TARGET names the target.
# usage: source deploy/guest-env.sh
GUEST_TARGET=wasm32-unknown-unknown
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_TARGET RUSTC_WRAPPER RUSTC_BOOTSTRAP \
  CARGO_BUILD_RUSTFLAGS CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS
if [ -d /usr/lib/rustlib/$GUEST_TARGET/lib ] && [ -x /usr/bin/rustc ] && [ -x /usr/bin/cargo ]; then
  # Debian's toolchain (deploy/install-toolchain.sh, Debian path)
  unset RUSTUP_TOOLCHAIN
  export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
  export CARGO=/usr/bin/cargo
  export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-C link-arg=--wasm-ld-path=/usr/bin/wasm-ld-19"
else
  unset RUSTC RUSTDOC
  export CARGO=cargo
fi
WCL=$(command -v wasm-component-ld || echo /usr/local/bin/wasm-component-ld)
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER="$WCL"
export GUEST_TARGET
