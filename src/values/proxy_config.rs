//! The pod's effective ProxyConfig (mesh `defaultConfig` with the `proxy.istio.io/config`
//! annotation merged over it) and the `PROXY_CONFIG` env value: the JSON of the fields that
//! differ from Istio's `DefaultProxyConfig()`, as the template's `protoToJSON` prints them
//! (golang/protobuf's `jsonpb`).

use serde_json::{Map, Value};
use std::borrow::Cow;

use super::annotations::PROXY_CONFIG;
use super::helm::merge;
use super::InjectError;
use crate::go;

/// ProxyConfig fields in the order protojson writes them (declaration order of `proxy.proto`).
const FIELD_ORDER: &[&str] = &[
    "configPath",
    "binaryPath",
    "serviceCluster",
    "tracingServiceName",
    "drainDuration",
    "parentShutdownDuration",
    "discoveryAddress",
    "statsdUdpAddress",
    "proxyAdminPort",
    "controlPlaneAuthPolicy",
    "customConfigFile",
    "statNameLength",
    "concurrency",
    "proxyBootstrapTemplatePath",
    "interceptionMode",
    "tracing",
    "envoyAccessLogService",
    "envoyMetricsService",
    "proxyMetadata",
    "runtimeValues",
    "statusPort",
    "extraStatTags",
    "gatewayTopology",
    "terminationDrainDuration",
    "meshId",
    "readinessProbe",
    "proxyStatsMatcher",
    "holdApplicationUntilProxyStarts",
    "caCertificatesPem",
    "image",
    "privateKeyProvider",
    "proxyHeaders",
    "fileFlushInterval",
    "fileFlushMinSizeKb",
];

/// Fields `cleanProxyConfig` drops when they equal `DefaultProxyConfig()`.
const DEFAULTS: &[(&str, &str)] = &[
    ("configPath", "./etc/istio/proxy"),
    ("binaryPath", "/usr/local/bin/envoy"),
    ("serviceCluster", "istio-proxy"),
    ("drainDuration", "45s"),
    ("terminationDrainDuration", "5s"),
    ("discoveryAddress", "istiod.istio-system.svc:15012"),
    ("controlPlaneAuthPolicy", "MUTUAL_TLS"),
    ("proxyAdminPort", "15000"),
    ("statNameLength", "189"),
    ("statusPort", "15020"),
];

/// Enum fields whose zero value protojson leaves out.
const ENUM_ZERO: &[(&str, &str)] = &[
    ("interceptionMode", "REDIRECT"),
    ("controlPlaneAuthPolicy", "NONE"),
];

/// Parse the `proxy.istio.io/config` annotation (YAML or JSON) into a map.
fn parse_annotation(text: &str) -> Result<Value, InjectError> {
    let bad = |e: String| {
        InjectError(format!(
            "invalid value '{text}' for annotation '{PROXY_CONFIG}': {e}"
        ))
    };
    let v = crate::go::yaml::parse(text).map_err(bad)?;
    match v {
        Value::Object(_) => Ok(v),
        Value::Null => Ok(Value::Object(Map::new())),
        _ => Err(bad("ProxyConfig must be a map".into())),
    }
}

/// The mesh config with the pod's `proxy.istio.io/config` applied to `defaultConfig`
/// (`mesh.ApplyProxyConfig`: fields replace, `proxyMetadata` entries merge). Without the
/// annotation it is the mesh config itself, borrowed: most pods have none, and copying the
/// mesh config (and dropping the copy) was 4 % of a small request.
pub fn apply_pod_proxy_config<'a>(
    mesh: &'a Value,
    annotations: &Map<String, Value>,
) -> Result<Cow<'a, Value>, InjectError> {
    let Some(text) = annotations.get(PROXY_CONFIG).and_then(Value::as_str) else {
        return Ok(Cow::Borrowed(mesh));
    };
    let mut out = mesh.clone();
    let overlay = parse_annotation(text)?;
    let base = out
        .as_object_mut()
        .map(|m| {
            m.entry("defaultConfig")
                .or_insert_with(|| Value::Object(Map::new()))
        })
        .ok_or_else(|| InjectError("meshConfig is not a map".into()))?;
    if let (Some(b), Some(o)) = (base.as_object_mut(), overlay.as_object()) {
        for (k, v) in o {
            if k == "proxyMetadata" {
                let entry = b
                    .entry(k.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                merge(entry, v);
            } else {
                b.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(Cow::Owned(out))
}

/// The effective ProxyConfig of a mesh config (its `defaultConfig`).
pub fn proxy_config(mesh: &Value) -> &Value {
    static EMPTY: Value = Value::Null;
    mesh.get("defaultConfig").unwrap_or(&EMPTY)
}

/// Text of a scalar for default comparisons.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Whether protojson would leave this field out (proto3 zero value).
fn is_zero(key: &str, v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty() || ENUM_ZERO.iter().any(|(k, z)| *k == key && z == s),
        // `concurrency` is a wrapper message (`Int32Value`): an explicit 0 is printed.
        Value::Number(n) => key != "concurrency" && n.as_f64() == Some(0.0),
        // Plain bools are zero when false; wrapper messages (holdApplicationUntilProxyStarts)
        // are printed whenever set, but are indistinguishable here, so keep explicit values.
        Value::Bool(_) => false,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => key == "proxyMetadata" && o.is_empty(),
    }
}

/// `PROXY_CONFIG`: compact JSON of the non-default fields, newline-terminated like the template.
pub fn proxy_config_env(pc: &Value) -> String {
    let Some(obj) = pc.as_object() else {
        return "{}\n".into();
    };
    let keep = |k: &str, v: &Value| {
        let default = DEFAULTS.iter().find(|(d, _)| *d == k).map(|(_, v)| *v);
        !is_zero(k, v) && (default.is_none() || scalar(v).as_deref() != default)
    };
    let mut fields: Vec<(&str, &Value)> = Vec::new();
    for key in FIELD_ORDER {
        if let Some(v) = obj.get(*key).filter(|v| keep(key, v)) {
            fields.push((key, v));
        }
    }
    // serde_json maps iterate in key order, which is jsonpb's order for map entries and
    // for the fields this list does not know.
    for (k, v) in obj {
        if !FIELD_ORDER.contains(&k.as_str()) && keep(k, v) {
            fields.push((k, v));
        }
    }
    // jsonpb writes strings with `encoding/json`.
    let mut text = go::json::object(&fields);
    text.push('\n');
    text
}

/// `holdApplicationUntilProxyStarts` of the effective ProxyConfig.
pub fn hold_application(pc: &Value) -> bool {
    match pc.get("holdApplicationUntilProxyStarts") {
        Some(Value::Bool(b)) => *b,
        Some(Value::Object(o)) => o.get("value").and_then(Value::as_bool).unwrap_or(false),
        _ => false,
    }
}

/// `proxyMetadata` entries in key order (the template ranges over a Go map; a `Map` iterates
/// in key order, see [`crate::json`]).
pub fn proxy_metadata(pc: &Value) -> Vec<(String, String)> {
    pc.get("proxyMetadata")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), go::fmt::sprint(v)))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_print_as_empty_object() {
        let pc = json!({"discoveryAddress": "istiod.istio-system.svc:15012", "statusPort": 15020, "interceptionMode": "REDIRECT"});
        assert_eq!(proxy_config_env(&pc), "{}\n");
    }

    #[test]
    fn non_defaults_print_in_proto_order() {
        let pc = json!({"holdApplicationUntilProxyStarts": true, "interceptionMode": "TPROXY",
            "discoveryAddress": "istiod-canary.istio-system.svc:15012", "tracing": {}});
        assert_eq!(
            proxy_config_env(&pc),
            "{\"discoveryAddress\":\"istiod-canary.istio-system.svc:15012\",\"interceptionMode\":\"TPROXY\",\"tracing\":{},\"holdApplicationUntilProxyStarts\":true}\n"
        );
    }

    /// traffic-annotations (1.23.3 … 1.29.6 goldens): `concurrency: 0` is an `Int32Value` that
    /// is set, so jsonpb prints it; plain integer fields at 0 are left out.
    #[test]
    fn explicit_zero_concurrency_is_printed() {
        let pc = json!({"discoveryAddress": "foo:123", "concurrency": 0, "statNameLength": 0});
        assert_eq!(
            proxy_config_env(&pc),
            "{\"discoveryAddress\":\"foo:123\",\"concurrency\":0}\n"
        );
    }

    /// jsonpb writes strings and map keys with `encoding/json`, HTML escaping included.
    #[test]
    fn strings_are_escaped_as_jsonpb_escapes_them() {
        let pc = json!({"proxyMetadata": {"A&B": "<x>\u{2029}"}});
        assert_eq!(
            proxy_config_env(&pc),
            "{\"proxyMetadata\":{\"A\\u0026B\":\"\\u003cx\\u003e\\u2029\"}}\n"
        );
    }

    #[test]
    fn annotation_is_merged_over_mesh_default() {
        let mesh = json!({"defaultConfig": {"statusPort": 15020, "proxyMetadata": {"A": "1"}}});
        let mut ann = Map::new();
        ann.insert(
            PROXY_CONFIG.into(),
            json!("holdApplicationUntilProxyStarts: true\nproxyMetadata:\n  B: \"2\"\n"),
        );
        let m = apply_pod_proxy_config(&mesh, &ann).unwrap();
        let pc = proxy_config(&m);
        assert!(hold_application(pc));
        assert_eq!(
            proxy_metadata(pc),
            vec![("A".into(), "1".into()), ("B".into(), "2".into())]
        );
    }

    #[test]
    fn bad_annotation_names_it() {
        let mut ann = Map::new();
        ann.insert(PROXY_CONFIG.into(), json!("[1, 2"));
        let err = apply_pod_proxy_config(&json!({}), &ann).unwrap_err();
        assert!(err.0.contains(PROXY_CONFIG), "{err}");
    }
}
