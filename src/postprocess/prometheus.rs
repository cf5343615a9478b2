//! Prometheus metrics merge (`applyPrometheusMerge`): the app's scrape annotations move
//! into the proxy's `ISTIO_PROMETHEUS_ANNOTATIONS` env and the scrape annotations point at
//! the agent, which serves the app's metrics merged with Envoy's.

use crate::json::{put, value};
use serde_json::{Map, Value};

use crate::go;
use crate::values::annotations::PROMETHEUS_MERGE_METRICS;

const PROMETHEUS_ENV: &str = "ISTIO_PROMETHEUS_ANNOTATIONS";
const SCRAPE: &str = "prometheus_io_scrape";
const PORT: &str = "prometheus_io_port";
const PATH: &str = "prometheus_io_path";
const TARGETS: &str = "prometheus_istio_io_scrape_targets";

/// Whether Prometheus' `SanitizeLabelName(k)` (every character outside `[a-zA-Z0-9_]` becomes
/// `_`) equals the ASCII `want`, without building the sanitized key.
fn sanitizes_to(k: &str, want: &str) -> bool {
    let mut wanted = want.bytes();
    k.chars().all(|c| {
        let s = if c.is_ascii_alphanumeric() || c == '_' {
            c as u8
        } else {
            b'_'
        };
        wanted.next() == Some(s)
    }) && wanted.next().is_none()
}

fn annotation_by_sanitized<'a>(ann: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    ann.iter()
        .find(|(k, _)| sanitizes_to(k, key))
        .and_then(|(_, v)| v.as_str())
}

/// The pod's prometheus port annotation, in any spelling.
pub fn prometheus_port(ann: &Map<String, Value>) -> Option<String> {
    annotation_by_sanitized(ann, PORT).map(str::to_string)
}

/// Remove every spelling of the prometheus scrape annotations.
pub fn clear_prometheus(ann: &mut Map<String, Value>) {
    ann.retain(|k, _| {
        ![SCRAPE, PORT, PATH, TARGETS]
            .iter()
            .any(|w| sanitizes_to(k, w))
    });
}

/// Metrics merge: move the app's scrape settings into `ISTIO_PROMETHEUS_ANNOTATIONS` on the proxy
/// and point the scrape annotations at the agent (`applyPrometheusMerge`).
pub fn apply_prometheus_merge(
    ann: &mut Map<String, Value>,
    proxy: Option<&mut Value>,
    mesh: &Value,
    status_port: &str,
) {
    let scrape_ok = annotation_by_sanitized(ann, SCRAPE)
        .and_then(go::fmt::parse_bool)
        .unwrap_or(true);
    let merge_on = ann
        .get(PROMETHEUS_MERGE_METRICS)
        .and_then(Value::as_str)
        .and_then(go::fmt::parse_bool)
        .unwrap_or_else(|| {
            mesh.get("enablePrometheusMerge")
                .and_then(Value::as_bool)
                .unwrap_or(true)
        });
    if !scrape_ok || !merge_on {
        return;
    }
    if prometheus_port(ann).as_deref() == Some(status_port) {
        return;
    }
    let get = |k| annotation_by_sanitized(ann, k).unwrap_or("").to_string();
    let (scrape, mut path, mut port) = (get(SCRAPE), get(PATH), get(PORT));
    let targets: Vec<(String, String)> = get(TARGETS)
        .split(',')
        .filter_map(|t| {
            let t = t.trim();
            let (p, path) = t.split_once(':').unwrap_or((t, ""));
            (!p.is_empty()).then(|| (p.trim().to_string(), path.trim().to_string()))
        })
        .collect();
    if let Some((tp, tpath)) = targets.first() {
        if port.is_empty() {
            port = tp.clone();
        }
        if path.is_empty() {
            path = tpath.clone();
        }
    }
    if !(scrape.is_empty() && path.is_empty() && port.is_empty() && targets.is_empty()) {
        // Go's `PrometheusScrapeConfiguration`: fields in declaration order, empty ones omitted.
        let (scrape, path, port) = (value!(scrape), value!(path), value!(port));
        let mut cfg: Vec<(&str, &Value)> = Vec::new();
        for (k, v) in [("scrape", &scrape), ("path", &path), ("port", &port)] {
            if v.as_str().is_some_and(|s| !s.is_empty()) {
                cfg.push((k, v));
            }
        }
        let mut text = go::json::object(&cfg);
        if !targets.is_empty() {
            // `targets` is a list of structs (port, then path when set).
            text.pop();
            if !cfg.is_empty() {
                text.push(',');
            }
            text.push_str("\"targets\":[");
            for (i, (p, path)) in targets.iter().enumerate() {
                let (p, path) = (value!(p), value!(path));
                let mut t = vec![("port", &p)];
                if path.as_str().is_some_and(|s| !s.is_empty()) {
                    t.push(("path", &path));
                }
                if i > 0 {
                    text.push(',');
                }
                text.push_str(&go::json::object(&t));
            }
            text.push_str("]}");
        }
        push_env(proxy, text);
    }
    clear_prometheus(ann);
    put(ann, "prometheus.io/port", value!(status_port));
    put(ann, "prometheus.io/path", value!("/stats/prometheus"));
    put(ann, "prometheus.io/scrape", value!("true"));
}

fn push_env(proxy: Option<&mut Value>, value: String) {
    if let Some(env) = proxy
        .and_then(|p| p.as_object_mut())
        .map(|p| p.entry("env").or_insert_with(|| value!([])))
        .and_then(Value::as_array_mut)
    {
        env.push(value!({"name": PROMETHEUS_ENV, "value": value}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_moves_scrape_settings_to_the_proxy() {
        let mut ann = Map::new();
        ann.insert("prometheus.io/scrape".into(), json!("true"));
        ann.insert("prometheus.io/port".into(), json!("9090"));
        let mut proxy = json!({"name": "istio-proxy", "env": []});
        apply_prometheus_merge(&mut ann, Some(&mut proxy), &json!({}), "15020");
        assert_eq!(ann["prometheus.io/port"], "15020");
        assert_eq!(
            proxy["env"][0]["value"],
            r#"{"scrape":"true","port":"9090"}"#
        );
    }

    /// Istio writes the env with `json.Marshal`: HTML characters and U+2028/U+2029 escaped
    /// (the old writer escaped only the HTML ones).
    #[test]
    fn env_value_is_escaped_as_go_escapes_it() {
        let mut ann = Map::new();
        ann.insert("prometheus.io/path".into(), json!("/m\u{2028}&x"));
        ann.insert("prometheus.io/port".into(), json!("9090"));
        let mut proxy = json!({"name": "istio-proxy", "env": []});
        apply_prometheus_merge(&mut ann, Some(&mut proxy), &json!({}), "15020");
        assert_eq!(
            proxy["env"][0]["value"],
            r#"{"path":"/m\u2028\u0026x","port":"9090"}"#
        );
    }

    #[test]
    fn scrape_false_disables_merge() {
        let mut ann = Map::new();
        ann.insert("prometheus.io.scrape".into(), json!("false"));
        apply_prometheus_merge(&mut ann, None, &json!({}), "15020");
        assert_eq!(ann.len(), 1);
    }
}
