//! Helpers shared by the integration tests, which all run the real `policy.wasm`.
#![allow(dead_code)] // each test binary uses a subset

use std::path::{Path, PathBuf};

/// The repository root (tests run with the host crate as their working directory).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `policy.wasm` at the repository root, which `make unit` builds before `cargo test`.
pub fn policy_wasm() -> PathBuf {
    let wasm = repo().join("policy.wasm");
    assert!(
        wasm.exists(),
        "{} is missing: run `make policy.wasm` (make unit does) before cargo test",
        wasm.display()
    );
    wasm
}
