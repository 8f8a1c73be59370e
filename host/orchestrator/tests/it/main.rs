//! host-orchestrator's integration-test binary: the library driven with the
//! real guest toolchain (and bubblewrap), no host binary.

mod sandbox_holds;
