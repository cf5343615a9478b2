//! What the sidecar template reads besides the pod, computed once per settings
//! ([`Effective`]): the helm values (resolved per key in [`super::helm`]) and the MeshConfig,
//! Istio's defaults deep-merged with the policy settings Helm style (maps merge, scalars and
//! lists replace, `null` deletes the key).

use crate::json::value;
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::rc::Rc;

use super::helm::{layer, Helm, Key, Layer};
use super::traffic::TrafficConfig;
use crate::settings::Settings;

pub use super::helm::{DEFAULT_HUB, DEFAULT_TAG};

/// Helm-style deep merge of `overlay` onto `base`.
pub fn merge(base: &mut Value, overlay: &Value) {
    match (base, overlay) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                if v.is_null() {
                    b.remove(k);
                } else if let Some(existing) =
                    b.get_mut(k).filter(|e| e.is_object() && v.is_object())
                {
                    merge(existing, v);
                } else {
                    b.insert(k.clone(), strip_nulls(v));
                }
            }
        }
        (b, o) => *b = strip_nulls(o),
    }
}

/// A copy of `v` without `null` map entries (a null in an overlay deletes, never stores).
pub fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            // Inserted one by one: collecting into a `Map` links a sort (see `crate::sort`).
            let mut out = Map::new();
            for (k, v) in m.iter().filter(|(_, v)| !v.is_null()) {
                out.insert(k.clone(), strip_nulls(v));
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

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
}

/// The settings an [`Effective`] depends on.
#[derive(PartialEq)]
struct EffectiveKey {
    revision: String,
    istio_namespace: String,
    values: Value,
    mesh_config: Value,
}

thread_local! {
    /// The last settings' [`Effective`]: a warm policy instance sees the same settings on
    /// every request, and merging the chart defaults was a tenth of a request's work.
    static LAST: RefCell<Option<(EffectiveKey, Rc<Effective>)>> = const { RefCell::new(None) };
}

/// [`Helm::of`] and [`effective_mesh`] of `settings`, computed once per settings.
pub fn effective(settings: &Settings) -> Rc<Effective> {
    let hit = |key: &EffectiveKey| {
        key.revision == settings.revision
            && key.istio_namespace == settings.istio_namespace
            && key.values == settings.values
            && key.mesh_config == settings.mesh_config
    };
    if let Some(found) = LAST.with_borrow(|last| {
        last.as_ref()
            .filter(|(key, _)| hit(key))
            .map(|(_, e)| Rc::clone(e))
    }) {
        return found;
    }
    let helm = Helm::of(settings);
    let mesh = effective_mesh(settings, &helm);
    let proxy_resources =
        super::resources::canonical_resources(helm.get(Key::Resources).unwrap_or(&Value::Null));
    let traffic = TrafficConfig::from_settings(&helm, &mesh);
    let proxy_config_env =
        super::proxy_config::proxy_config_env(super::proxy_config::proxy_config(&mesh));
    let out = Rc::new(Effective {
        helm,
        mesh,
        proxy_resources,
        traffic,
        proxy_config_env,
    });
    let key = EffectiveKey {
        revision: settings.revision.clone(),
        istio_namespace: settings.istio_namespace.clone(),
        values: settings.values.clone(),
        mesh_config: settings.mesh_config.clone(),
    };
    LAST.set(Some((key, Rc::clone(&out))));
    out
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
        super::resources::canonical_resources(r)
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
    use super::*;
    use serde_json::json;

    #[test]
    fn effective_is_recomputed_when_the_settings_change() {
        let a = Settings::default();
        let b = Settings {
            revision: "canary".into(),
            ..Settings::default()
        };
        let first = effective(&a);
        assert!(Rc::ptr_eq(&first, &effective(&a)), "same settings reuse it");
        let other = effective(&b);
        assert_eq!(other.helm.str(Key::Revision), Some("canary"));
        assert_eq!(*effective(&a), *first);
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
