//! Istio's helm values and MeshConfig as the sidecar template sees them: the chart defaults
//! deep-merged with the policy settings, Helm style (maps merge, scalars and lists replace,
//! `null` deletes the key).

use crate::json::{put, value};
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::rc::Rc;

use super::traffic::TrafficConfig;
use crate::settings::Settings;

/// Image registry used when the settings name none (the upstream release registry).
pub const DEFAULT_HUB: &str = "docker.io/istio";
/// Proxy image tag used when the settings name none. The conformance settings pin
/// `registry.istio.io/testing` / `latest` instead, as Istio's own tests do.
pub const DEFAULT_TAG: &str = "1.28.0";

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
fn strip_nulls(v: &Value) -> Value {
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

/// The subset of the `istio-discovery` chart's `values.yaml` the sidecar template reads,
/// flattened the way the injector sees it (`global.istioNamespace` is set from the settings).
/// Kept as JSON text: built with `json!` it was the largest function in policy.wasm.
const CHART_DEFAULTS: &str = r#"{
  "revision": "",
  "sidecarInjectorWebhook": {"rewriteAppHTTPProbe": true},
  "pilot": {"cni": {"enabled": false, "provider": "default"}},
  "global": {
    "hub": "docker.io/istio",
    "tag": "1.28.0",
    "imagePullPolicy": "",
    "imagePullSecrets": [],
    "istioNamespace": "istio-system",
    "pilotCertProvider": "istiod",
    "caAddress": "",
    "caName": "",
    "network": "",
    "meshID": "",
    "trustDomain": "",
    "logAsJson": false,
    "logging": {"level": "default:info"},
    "multiCluster": {"clusterName": ""},
    "sds": {"token": {"aud": "istio-ca"}},
    "sts": {"servicePort": 0},
    "mountMtlsCerts": false,
    "proxy_init": {"image": "proxyv2"},
    "proxy": {
      "image": "proxyv2",
      "autoInject": "enabled",
      "clusterDomain": "cluster.local",
      "componentLogLevel": "misc:error",
      "enableCoreDump": false,
      "excludeInboundPorts": "",
      "excludeIPRanges": "",
      "excludeOutboundPorts": "",
      "includeIPRanges": "*",
      "includeInboundPorts": "*",
      "includeOutboundPorts": "",
      "holdApplicationUntilProxyStarts": false,
      "logLevel": "warning",
      "privileged": false,
      "readinessFailureThreshold": 4,
      "readinessInitialDelaySeconds": 0,
      "readinessPeriodSeconds": 15,
      "startupProbe": {"enabled": true, "failureThreshold": 600},
      "statusPort": 15020,
      "tracer": "none",
      "resources": {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"cpu": "2000m", "memory": "1024Mi"}
      }
    }
  }
}"#;

fn chart_defaults(istio_namespace: &str) -> Value {
    // The text is a constant covered by a test; an empty map is never reached.
    let mut v: Value = serde_json::from_str(CHART_DEFAULTS).unwrap_or_default();
    if let Some(g) = v.get_mut("global").and_then(Value::as_object_mut) {
        put(g, "istioNamespace", Value::from(istio_namespace));
    }
    v
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

/// The helm value `revision`: empty for the default revision.
fn helm_revision(settings: &Settings) -> &str {
    match settings.revision.as_str() {
        "default" => "",
        r => r,
    }
}

/// Effective helm values: chart defaults, the revision, then `settings.values`.
pub fn effective_values(settings: &Settings) -> Value {
    let mut v = chart_defaults(&settings.istio_namespace);
    merge(&mut v, &value!({"revision": (helm_revision(settings))}));
    merge(&mut v, &settings.values);
    v
}

/// The effective helm values and MeshConfig of one set of settings.
#[derive(Debug, PartialEq)]
pub struct Effective {
    pub values: Value,
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

/// [`effective_values`] and [`effective_mesh`] of `settings`, computed once per settings.
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
    let values = effective_values(settings);
    let mesh = effective_mesh(settings, &values);
    let proxy_resources = super::resources::canonical_resources(
        at(&values, &["global", "proxy", "resources"]).unwrap_or(&Value::Null),
    );
    let traffic = TrafficConfig::from_settings(&values, &mesh);
    let proxy_config_env =
        super::proxy_config::proxy_config_env(super::proxy_config::proxy_config(&mesh));
    let out = Rc::new(Effective {
        values,
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
pub fn effective_mesh(settings: &Settings, values: &Value) -> Value {
    let ns = str_at(values, &["global", "istioNamespace"]).unwrap_or("istio-system");
    let rev = str_at(values, &["revision"]).unwrap_or("");
    let istiod = if rev.is_empty() {
        "istiod".to_string()
    } else {
        format!("istiod-{rev}")
    };
    let mut m = mesh_defaults(&format!("{istiod}.{ns}.svc:15012"));
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

/// Go-template truthiness of the value at `path` (absent, false, 0, "" and empty are false).
pub fn truthy_at(v: &Value, path: &[&str]) -> bool {
    match at(v, path) {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}

/// `fmt.Sprint` of the scalar at `path` ("" when absent).
pub fn text_at(v: &Value, path: &[&str]) -> String {
    at(v, path)
        .map(super::traffic::go_sprint)
        .unwrap_or_default()
}

/// Settings-time checks of the shapes the template relies on.
pub fn validate(settings: &Settings) -> Result<(), String> {
    let values = effective_values(settings);
    for path in [
        &["global"][..],
        &["global", "proxy"],
        &["global", "proxy_init"],
    ] {
        if !at(&values, path).is_some_and(Value::is_object) {
            return Err(format!("values.{}: must be a map", path.join(".")));
        }
    }
    if let Some(r) = at(&values, &["global", "proxy", "resources"]) {
        if !r.is_object() {
            return Err("values.global.proxy.resources: must be a map".into());
        }
        super::resources::canonical_resources(r)
            .map_err(|e| format!("values.global.proxy.resources: {e}"))?;
    }
    if let Some(s) = at(&values, &["global", "imagePullSecrets"]) {
        if !s.is_array() {
            return Err("values.global.imagePullSecrets: must be a list".into());
        }
    }
    let mesh = effective_mesh(settings, &values);
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
    fn chart_defaults_parse_and_take_the_namespace() {
        let v = chart_defaults("mesh-ns");
        assert_eq!(str_at(&v, &["global", "istioNamespace"]), Some("mesh-ns"));
        assert_eq!(str_at(&v, &["global", "hub"]), Some(DEFAULT_HUB));
        assert_eq!(str_at(&v, &["global", "tag"]), Some(DEFAULT_TAG));
        assert_eq!(
            str_at(&v, &["global", "proxy", "resources", "limits", "cpu"]),
            Some("2000m")
        );
    }

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
        assert_eq!(str_at(&other.values, &["revision"]), Some("canary"));
        assert_eq!(*effective(&a), *first);
        let c = Settings {
            values: json!({"global": {"hub": "example.com/mesh"}}),
            ..Settings::default()
        };
        assert_eq!(
            str_at(&effective(&c).values, &["global", "hub"]),
            Some("example.com/mesh")
        );
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
        let v = effective_values(&s);
        let m = effective_mesh(&s, &v);
        assert_eq!(
            str_at(&m, &["defaultConfig", "discoveryAddress"]),
            Some("istiod-canary.istio-system.svc:15012")
        );
        let d = Settings::default();
        let v = effective_values(&d);
        assert_eq!(str_at(&v, &["revision"]), Some(""));
    }

    #[test]
    fn null_value_deletes_chart_default() {
        let s = Settings {
            values: json!({"global": {"proxy": {"resources": {"limits": {"cpu": null}}}}}),
            ..Settings::default()
        };
        let v = effective_values(&s);
        assert!(at(&v, &["global", "proxy", "resources", "limits", "cpu"]).is_none());
        assert_eq!(
            str_at(&v, &["global", "proxy", "resources", "limits", "memory"]),
            Some("1024Mi")
        );
    }
}
