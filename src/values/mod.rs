//! What the sidecar template reads besides the pod: the effective values of one set of
//! settings ([`Effective`]: helm values, MeshConfig, traffic capture, `PROXY_CONFIG`), and the
//! pod's own inputs as read (its override annotations, the ProxyConfig annotation, its
//! workload).
//!
//! Every request computes its [`Effective`] anew: policy-server runs each request on a fresh
//! instance, where a cache would never hit.

pub mod annotations;
pub mod helm;
pub mod mesh;
pub mod override_policy;
pub mod proxy_config;
pub mod traffic;
pub mod workload;

use serde_json::Value;

use crate::settings::Settings;
use crate::versions::Behaviour;
use helm::{layer, Helm, Key, Layer};
use mesh::{at, effective_mesh};
use traffic::TrafficConfig;

pub use helm::{DEFAULT_HUB, DEFAULT_TAG};

/// Why a pod cannot be injected; becomes the rejection message. Raised first while the pod's
/// annotations are read (here), then by the layers above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectError(pub String);

impl std::fmt::Display for InjectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The effective helm values and MeshConfig of one set of settings.
#[derive(Debug, PartialEq)]
pub struct Effective {
    pub helm: Helm,
    pub mesh: Value,
    /// `global.proxy.resources` with canonical quantities, or why it is not valid.
    pub proxy_resources: Result<Value, String>,
    /// Traffic capture of a pod without a `proxy.istio.io/config` annotation.
    pub traffic: TrafficConfig,
    /// `PROXY_CONFIG` of a pod without that annotation.
    pub proxy_config_env: String,
    /// What the settings' Istio version does.
    pub behaviour: Behaviour,
}

/// The effective values of `settings`.
pub fn effective(settings: &Settings) -> Effective {
    let helm = Helm::of(settings);
    let mesh = effective_mesh(settings, &helm);
    let proxy_resources =
        crate::go::quantity::canonical_resources(helm.get(Key::Resources).unwrap_or(&Value::Null));
    let traffic = TrafficConfig::from_settings(&helm, &mesh);
    let proxy_config_env = proxy_config::proxy_config_env(proxy_config::proxy_config(&mesh));
    Effective {
        helm,
        mesh,
        proxy_resources,
        traffic,
        proxy_config_env,
        behaviour: settings.behaviour(),
    }
}

/// Settings-time checks of the shapes the template relies on.
pub fn validate(settings: &Settings) -> Result<(), String> {
    for path in [
        &["global"][..],
        &["global", "proxy"],
        &["global", "proxy_init"],
    ] {
        match layer(&settings.values, path) {
            Layer::Unset => {}
            Layer::Found(v) if v.is_object() => {}
            _ => return Err(format!("values.{}: must be a map", path.join("."))),
        }
    }
    let helm = Helm::of(settings);
    if let Some(r) = helm.get(Key::Resources) {
        if !r.is_object() {
            return Err("values.global.proxy.resources: must be a map".into());
        }
        crate::go::quantity::canonical_resources(r)
            .map_err(|e| format!("values.global.proxy.resources: {e}"))?;
    }
    if let Some(s) = helm.get(Key::ImagePullSecrets) {
        if !s.is_array() {
            return Err("values.global.imagePullSecrets: must be a list".into());
        }
    }
    let mesh = effective_mesh(settings, &helm);
    if !at(&mesh, &["defaultConfig"]).is_some_and(Value::is_object) {
        return Err("meshConfig.defaultConfig: must be a map".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::helm::merge;
    use super::mesh::str_at;
    use super::*;
    use serde_json::json;

    #[test]
    fn effective_follows_the_settings() {
        let b = Settings {
            revision: "canary".into(),
            ..Settings::default()
        };
        assert_eq!(effective(&b).helm.str(Key::Revision), Some("canary"));
        let c = Settings {
            values: json!({"global": {"hub": "example.com/mesh"}}),
            ..Settings::default()
        };
        assert_eq!(effective(&c).helm.str(Key::Hub), Some("example.com/mesh"));
    }

    #[test]
    fn merge_is_helm_style() {
        let mut base = json!({"a": {"b": 1, "c": [1, 2], "d": "x"}, "e": 1});
        merge(
            &mut base,
            &json!({"a": {"b": null, "c": [3], "f": {"g": null, "h": 2}}}),
        );
        assert_eq!(
            base,
            json!({"a": {"c": [3], "d": "x", "f": {"h": 2}}, "e": 1})
        );
    }

    #[test]
    fn revision_flows_into_discovery_address() {
        let s = Settings {
            revision: "canary".into(),
            ..Settings::default()
        };
        let m = effective_mesh(&s, &Helm::of(&s));
        assert_eq!(
            str_at(&m, &["defaultConfig", "discoveryAddress"]),
            Some("istiod-canary.istio-system.svc:15012")
        );
        let d = Settings::default();
        assert_eq!(Helm::of(&d).str(Key::Revision), Some(""));
    }

    #[test]
    fn null_value_deletes_chart_default() {
        let s = Settings {
            values: json!({"global": {"proxy": {"resources": {"limits": {"cpu": null}}}}}),
            ..Settings::default()
        };
        let resources = Helm::of(&s).get(Key::Resources).cloned();
        assert_eq!(
            resources,
            Some(json!({"limits": {"memory": "1024Mi"},
            "requests": {"cpu": "100m", "memory": "128Mi"}}))
        );
    }
}
