//! The effective MeshConfig: Istio's defaults deep-merged with the settings' `meshConfig`
//! Helm style (maps merge, scalars and lists replace, `null` deletes the key).

use crate::json::value;
use serde_json::Value;

use super::helm::{merge, Helm, Key};
use crate::settings::Settings;

/// Istio's built-in MeshConfig defaults for the fields the injector reads.
fn mesh_defaults(discovery_address: &str) -> Value {
    value!({
        "trustDomain": "cluster.local",
        "enablePrometheusMerge": true,
        "proxyListenPort": 15001,
        "proxyInboundListenPort": 15006,
        "inboundTrafficPolicy": {"mode": "PASSTHROUGH"},
        "defaultConfig": {
            "discoveryAddress": discovery_address,
            "statusPort": 15020,
            "interceptionMode": "REDIRECT"
        }
    })
}

/// Effective MeshConfig: built-in defaults (discovery address of this revision's istiod), then
/// `settings.meshConfig`.
pub fn effective_mesh(settings: &Settings, helm: &Helm) -> Value {
    let ns = helm.str(Key::IstioNamespace).unwrap_or("istio-system");
    let rev = helm.str(Key::Revision).unwrap_or("");
    let dash = if rev.is_empty() { "" } else { "-" };
    let mut m = mesh_defaults(&["istiod", dash, rev, ".", ns, ".svc:15012"].concat());
    merge(&mut m, &settings.mesh_config);
    m
}

/// The value at `path`, if every step exists.
pub fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

/// A string at `path`.
pub fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str)
}
