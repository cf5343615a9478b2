//! Prometheus metrics merge (`applyPrometheusMerge`): the app's scrape annotations move
//! into the proxy's `ISTIO_PROMETHEUS_ANNOTATIONS` env and the scrape annotations point at
//! the agent, which serves the app's metrics merged with Envoy's.

use crate::json::{put, value};
use serde_json::{Map, Value};

use crate::go;
use crate::values::annotations::PROMETHEUS_MERGE_METRICS;
use crate::versions::{Behaviour, Change};

const PROMETHEUS_ENV: &str = "ISTIO_PROMETHEUS_ANNOTATIONS";
const SCRAPE: &str = "prometheus_io_scrape";
const PORT: &str = "prometheus_io_port";
const PATH: &str = "prometheus_io_path";
const TARGETS: &str = "prometheus_istio_io_scrape_targets";
const SECURE_PORT: &str = "prometheus_istio_io_secure_port";

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

/// Remove every spelling of the prometheus scrape annotations (the scrape targets too from
/// 1.32, R39).
pub fn clear_prometheus(ann: &mut Map<String, Value>, behaviour: Behaviour) {
    let cleared: &[&str] = if behaviour.has(Change::PrometheusScrapeTargets) {
        &[SCRAPE, PORT, PATH, TARGETS]
    } else {
        &[SCRAPE, PORT, PATH]
    };
    ann.retain(|k, _| !cleared.iter().any(|w| sanitizes_to(k, w)));
}

/// Metrics merge: move the app's scrape settings into `ISTIO_PROMETHEUS_ANNOTATIONS` on the proxy
/// and point the scrape annotations at the agent (`applyPrometheusMerge`). From 1.32 the ports
/// are checked first and a bad one rejects the pod (R38).
pub fn apply_prometheus_merge(
    ann: &mut Map<String, Value>,
    proxy: Option<&mut Value>,
    mesh: &Value,
    status_port: &str,
    behaviour: Behaviour,
) -> Result<(), String> {
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
        return Ok(());
    }
    if prometheus_port(ann).as_deref() == Some(status_port) {
        return Ok(());
    }
    let get = |k| annotation_by_sanitized(ann, k).unwrap_or("").to_string();
    let (scrape, mut path, mut port) = (get(SCRAPE), get(PATH), get(PORT));
    let targets: Vec<(String, String)> = if behaviour.has(Change::PrometheusScrapeTargets) {
        parse_targets(&get(TARGETS))
    } else {
        Vec::new()
    };
    if let Some((tp, tpath)) = targets.first() {
        // webhook.go86c9f01:940-941: the first target replaces port and path.
        port = tp.clone();
        path = tpath.clone();
    }
    if behaviour.has(Change::PrometheusPortChecked) {
        if targets.is_empty() {
            if !port.is_empty() {
                check_port(&port, status_port, "scrape configuration", "")?;
            }
        } else {
            for (p, _) in &targets {
                check_port(p, status_port, "scrape targets", "target ")?;
            }
        }
    }
    if !(scrape.is_empty() && path.is_empty() && port.is_empty() && targets.is_empty()) {
        push_env(proxy, scrape_config_json(&scrape, &path, &port, &targets));
    }
    clear_prometheus(ann, behaviour);
    put(ann, "prometheus.io/port", value!(status_port));
    put(ann, "prometheus.io/path", value!("/stats/prometheus"));
    put(ann, "prometheus.io/scrape", value!("true"));
    Ok(())
}

/// `port:path,port:path` (a missing path is empty; entries without a port are dropped).
fn parse_targets(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|t| {
            let t = t.trim();
            let (p, path) = t.split_once(':').unwrap_or((t, ""));
            (!p.is_empty()).then(|| (p.trim().to_string(), path.trim().to_string()))
        })
        .collect()
}

/// Go's `PrometheusScrapeConfiguration` as JSON: fields in declaration order, empty ones
/// omitted, `targets` a list of structs (port, then path when set).
fn scrape_config_json(
    scrape: &str,
    path: &str,
    port: &str,
    targets: &[(String, String)],
) -> String {
    let (scrape, path, port) = (value!(scrape), value!(path), value!(port));
    let mut cfg: Vec<(&str, &Value)> = Vec::new();
    for (k, v) in [("scrape", &scrape), ("path", &path), ("port", &port)] {
        if v.as_str().is_some_and(|s| !s.is_empty()) {
            cfg.push((k, v));
        }
    }
    let mut text = go::json::object(&cfg);
    if !targets.is_empty() {
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
    text
}

/// The port checks of webhook.go86c9f01:942-960 (R38): an integer in 1..65535 (Go's `Atoi`),
/// not the agent's port, not a port Istio reserves.
fn check_port(port: &str, agent: &str, what: &str, noun: &str) -> Result<(), String> {
    let n = port
        .parse::<i64>()
        .ok()
        .filter(|n| (1..=65535).contains(n))
        .ok_or_else(|| {
            format!(
                "invalid prometheus {what}: invalid {noun}port {}",
                go::fmt::quote(port)
            )
        })?;
    let canon = n.to_string();
    if canon == agent {
        return Err(format!(
            "invalid prometheus {what}: {noun}port {port} conflicts with agent port"
        ));
    }
    if let Some(reason) = reserved_reason(n) {
        return Err(format!(
            "invalid prometheus {what}: {noun}port {port} is reserved for Istio ({reason}) and \
             cannot be scraped"
        ));
    }
    Ok(())
}

/// Istio's reserved proxy ports (`status.IstioReservedPortReason` is not in the reference
/// material; these are the ports the sidecar itself listens on, as Istio documents them).
fn reserved_reason(port: i64) -> Option<&'static str> {
    Some(match port {
        15000 => "Envoy admin port",
        15001 => "Envoy outbound",
        15004 => "debug port",
        15006 => "Envoy inbound",
        15008 => "HBONE mTLS tunnel port",
        15009 => "HBONE port for secure networks",
        15020 => "merged Prometheus telemetry from Istio agent, Envoy, and application",
        15021 => "health checks",
        15053 => "DNS port",
        15090 => "Envoy Prometheus telemetry",
        _ => return None,
    })
}

/// `applySecurePrometheusAnnotation` (R40, from 1.32): unless an annotation sanitizes to
/// `prometheus_istio_io_secure_port`, copy the proxy's `ENVOY_SECURE_MERGED_METRICS_PORT`
/// (when not `""` or `"0"`) to `prometheus.istio.io/secure-port`.
pub fn apply_secure_port(ann: &mut Map<String, Value>, proxy: Option<&Value>) {
    if ann.keys().any(|k| sanitizes_to(k, SECURE_PORT)) {
        return;
    }
    let value = proxy
        .and_then(|p| p.get("env"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|e| e.get("name").and_then(Value::as_str) == Some("ENVOY_SECURE_MERGED_METRICS_PORT"))
        .and_then(|e| e.get("value").and_then(Value::as_str))
        .filter(|v| !v.is_empty() && *v != "0");
    if let Some(v) = value {
        put(ann, "prometheus.istio.io/secure-port", value!(v));
    }
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
        apply_prometheus_merge(
            &mut ann,
            Some(&mut proxy),
            &json!({}),
            "15020",
            Behaviour::default(),
        )
        .unwrap();
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
        apply_prometheus_merge(
            &mut ann,
            Some(&mut proxy),
            &json!({}),
            "15020",
            Behaviour::default(),
        )
        .unwrap();
        assert_eq!(
            proxy["env"][0]["value"],
            r#"{"path":"/m\u2028\u0026x","port":"9090"}"#
        );
    }

    #[test]
    fn scrape_false_disables_merge() {
        let mut ann = Map::new();
        ann.insert("prometheus.io.scrape".into(), json!("false"));
        apply_prometheus_merge(&mut ann, None, &json!({}), "15020", Behaviour::default()).unwrap();
        assert_eq!(ann.len(), 1);
    }

    fn at(version: &str) -> Behaviour {
        crate::versions::IstioVersion::parse(version)
            .unwrap()
            .behaviour()
    }

    fn merge(
        version: &str,
        pairs: &[(&str, &str)],
    ) -> (Result<(), String>, Map<String, Value>, Value) {
        let mut ann: Map<String, Value> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let mut proxy = json!({"name": "istio-proxy", "env": []});
        let r =
            apply_prometheus_merge(&mut ann, Some(&mut proxy), &json!({}), "15020", at(version));
        (r, ann, proxy)
    }

    /// R38: from 1.32 a bad, agent or reserved port rejects; before, it is copied as is.
    #[test]
    fn ports_checked_from_1_32() {
        let (r, _, _) = merge("1.32", &[("prometheus.io/port", "http")]);
        assert_eq!(
            r.unwrap_err(),
            "invalid prometheus scrape configuration: invalid port \"http\""
        );
        let (r, _, _) = merge("1.32", &[("prometheus.io/port", "+15020")]);
        assert_eq!(
            r.unwrap_err(),
            "invalid prometheus scrape configuration: port +15020 conflicts with agent port"
        );
        let (r, _, _) = merge("1.32", &[("prometheus.io/port", "15090")]);
        assert!(r
            .unwrap_err()
            .contains("port 15090 is reserved for Istio ("));
        let (r, _, _) = merge(
            "1.32",
            &[("prometheus.istio.io/scrape-targets", "8080:/m,70000:/x")],
        );
        assert_eq!(
            r.unwrap_err(),
            "invalid prometheus scrape targets: invalid target port \"70000\""
        );
        let (r, ann, proxy) = merge("1.30", &[("prometheus.io/port", "http")]);
        assert_eq!(r, Ok(()));
        assert_eq!(ann["prometheus.io/port"], "15020");
        assert_eq!(proxy["env"][0]["value"], r#"{"port":"http"}"#);
    }

    /// R39: scrape targets are read (and replace port/path) from 1.32; before, the annotation
    /// is ignored and stays on the pod.
    #[test]
    fn scrape_targets_from_1_32() {
        let pairs = [
            ("prometheus.io/port", "9000"),
            (
                "prometheus.istio.io/scrape-targets",
                "8080:/metrics,9100:/custom",
            ),
        ];
        let (r, ann, proxy) = merge("1.32", &pairs);
        assert_eq!(r, Ok(()));
        assert_eq!(
            proxy["env"][0]["value"],
            r#"{"path":"/metrics","port":"8080","targets":[{"port":"8080","path":"/metrics"},{"port":"9100","path":"/custom"}]}"#
        );
        assert!(!ann.contains_key("prometheus.istio.io/scrape-targets"));
        let (r, ann, proxy) = merge("1.30", &pairs);
        assert_eq!(r, Ok(()));
        assert_eq!(proxy["env"][0]["value"], r#"{"port":"9000"}"#);
        assert_eq!(
            ann["prometheus.istio.io/scrape-targets"],
            "8080:/metrics,9100:/custom"
        );
    }

    #[test]
    fn secure_port_from_the_proxy_env() {
        let proxy =
            json!({"env": [{"name": "ENVOY_SECURE_MERGED_METRICS_PORT", "value": "15091"}]});
        let mut ann = Map::new();
        apply_secure_port(&mut ann, Some(&proxy));
        assert_eq!(ann["prometheus.istio.io/secure-port"], "15091");
        let mut ann = Map::new();
        ann.insert("prometheus.istio.io.secure-port".into(), json!("1"));
        apply_secure_port(&mut ann, Some(&proxy));
        assert_eq!(ann.len(), 1);
        let zero = json!({"env": [{"name": "ENVOY_SECURE_MERGED_METRICS_PORT", "value": "0"}]});
        let mut ann = Map::new();
        apply_secure_port(&mut ann, Some(&zero));
        assert!(ann.is_empty());
    }
}
