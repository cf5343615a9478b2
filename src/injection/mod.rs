//! Rendering Istio's default `sidecar` template onto a pod. Owned by the injection work (issue 4).
//!
//! The template is Rust data: functions that build `serde_json::Value`s from the pod, the
//! helm values and the mesh config, merged onto the pod the way Istio's strategic merge does.

pub mod annotations;
pub mod overrides;
pub mod probes;
pub mod resources;
pub mod traffic;

use serde_json::Value;

use crate::settings::Settings;

/// What the injector knows besides the pod itself.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub settings: &'a Settings,
    /// The namespace the pod is created in (request namespace, else the pod's, else `default`).
    pub namespace: &'a str,
}

/// Why a pod cannot be injected; becomes the rejection message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectError(pub String);

impl std::fmt::Display for InjectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Return the injected pod. The input is never modified; fields the template does not own survive.
pub fn inject(pod: &Value, ctx: &Context) -> Result<Value, InjectError> {
    let _ = ctx;
    Ok(pod.clone())
}

/// Checks on `values` / `meshConfig` done once, at settings validation time.
pub fn validate_settings(settings: &Settings) -> Result<(), String> {
    let _ = settings;
    Ok(())
}
