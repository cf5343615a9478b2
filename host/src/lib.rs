//! revinject: a native wasmtime host for the revision-injector Kubewarden policy.
//!
//! It runs `policy.wasm` the way Kubewarden's policy-server and `kwctl run` do
//! ([`runtime::PolicyRuntime`]), answers the policy's namespace lookups from kwctl
//! host-capabilities sessions ([`session::Session`]) or a map ([`runtime::StaticNamespaces`]),
//! and checks the bundled fixtures ([`replay`]). Subcommands live in `main.rs`.

pub mod bench;
pub mod cases;
pub mod check;
pub mod conformance;
pub mod crosscheck;
pub mod e2e;
pub mod engines;
pub mod fake_kube;
pub mod fuzz;
pub mod import;
pub mod input;
pub mod kube_inject;
pub mod manifest;
pub mod memory;
pub mod normalize;
pub mod patch;
pub mod policy_server;
pub mod replay;
pub mod runtime;
pub mod scenario;
pub mod session;
pub mod soak;
pub mod upgrade;
pub mod workload;

pub use patch::AdmissionResponse;
pub use runtime::{HostCapabilities, PolicyRuntime, RuntimeOptions, StaticNamespaces};
pub use session::Session;
