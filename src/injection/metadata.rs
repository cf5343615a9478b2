//! Pod metadata written by injection: the template's labels and annotations, the prometheus
//! "metrics merge" rewrite, and the `sidecar.istio.io/status` record of what was injected.

use crate::json::Path;
use crate::json::{self, put, value};
use serde_json::{Map, Value};

use super::annotations::PROMETHEUS_MERGE_METRICS;
use super::helm::Key;
use super::proxy_config::ordered_json;
use super::proxy_env::go_json_text;
use super::template::Render;
use super::traffic;

pub const REV: &str = "istio.io/rev";
pub const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";
pub const DEFAULT_LOGS_CONTAINER: &str = "kubectl.kubernetes.io/default-logs-container";
const TLS_MODE: &str = "security.istio.io/tlsMode";
const CANONICAL_NAME: &str = "service.istio.io/canonical-name";
const CANONICAL_REVISION: &str = "service.istio.io/canonical-revision";
const MULTUS_NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";
const PROMETHEUS_ENV: &str = "ISTIO_PROMETHEUS_ANNOTATIONS";

/// Longest label value Kubernetes accepts.
const MAX_LABEL: usize = 63;

/// A label value cut to 63 characters, then one trailing `-` dropped (sprig's
/// `trunc 63 | trimSuffix "-"`).
fn label_value(s: &str) -> String {
    let cut: String = s.chars().take(MAX_LABEL).collect();
    cut.strip_suffix('-').unwrap_or(&cut).to_string()
}

/// The first non-empty label among `keys`.
fn first_label(labels: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter()
        .filter_map(|k| labels.get(*k).and_then(Value::as_str))
        .find(|v| !v.is_empty())
        .map(str::to_string)
}

/// `security.istio.io/tlsMode` and the canonical service labels.
pub fn template_labels(r: &Render) -> Value {
    let l = r.labels;
    let tls = first_label(l, &[TLS_MODE]).unwrap_or_else(|| "istio".into());
    let name = first_label(l, &[CANONICAL_NAME, "app.kubernetes.io/name", "app"])
        .unwrap_or_else(|| r.workload.name.clone());
    let revision = first_label(
        l,
        &[CANONICAL_REVISION, "app.kubernetes.io/version", "version"],
    )
    .unwrap_or_else(|| "latest".into());
    value!({
        TLS_MODE: tls,
        CANONICAL_NAME: (label_value(&name)),
        CANONICAL_REVISION: (label_value(&revision)),
    })
}

/// Go's `appendMultusNetwork`: add `istio-cni` to the pod's multus networks.
fn append_multus_network(existing: &str) -> String {
    const NET: &str = "istio-cni";
    if existing.is_empty() {
        return NET.into();
    }
    if let Some(i) = existing.rfind(']') {
        // Read as a `Value`: a typed read's "invalid type" error links serde's float formatting.
        let parsed = serde_json::from_str::<Value>(existing).ok();
        let parsed = parsed.as_ref().and_then(Value::as_array);
        return match parsed {
            None => existing.into(),
            Some(nets) if nets.iter().any(|n| n.get("name") == Some(&value!(NET))) => {
                existing.into()
            }
            Some(_) => format!(
                "{}, {{\"name\": \"{NET}\"}}{}",
                &existing[..i],
                &existing[i..]
            ),
        };
    }
    if existing.split(',').any(|n| n.trim() == NET) {
        return existing.into();
    }
    format!("{existing}, {NET}")
}

/// The template's annotations: revision, default containers and, with CNI, the capture settings.
pub fn template_annotations(r: &Render) -> Value {
    let mut a = Map::new();
    a.insert(REV.into(), value!(r.revision));
    if let Some(first) = r.app_containers().first() {
        for key in [DEFAULT_LOGS_CONTAINER, DEFAULT_CONTAINER] {
            if !r.has(key) {
                a.insert(key.into(), value!(first));
            }
        }
    }
    if r.cni() {
        let provider = r.helm.str(Key::CniProvider).unwrap_or("default");
        if provider == "multus" {
            let existing = r.ann(MULTUS_NETWORKS, "");
            a.insert(
                MULTUS_NETWORKS.into(),
                value!(append_multus_network(&existing)),
            );
        }
        for (k, v) in traffic::cni_annotations(r.annotations, r.traffic) {
            a.insert(k, value!(v));
        }
    }
    Value::Object(a)
}

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
        .and_then(super::annotations::parse_go_bool)
        .unwrap_or(true);
    let merge_on = ann
        .get(PROMETHEUS_MERGE_METRICS)
        .and_then(Value::as_str)
        .and_then(super::annotations::parse_go_bool)
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
        let mut cfg: Vec<(String, Value)> = Vec::new();
        for (k, v) in [("scrape", &scrape), ("path", &path), ("port", &port)] {
            if !v.is_empty() {
                cfg.push((k.into(), value!(v)));
            }
        }
        if !targets.is_empty() {
            let list: Vec<String> = targets
                .iter()
                .map(|(p, path)| {
                    let mut t = vec![("port".to_string(), value!(p))];
                    if !path.is_empty() {
                        t.push(("path".into(), value!(path)));
                    }
                    ordered_json(&t)
                })
                .collect();
            cfg.push(("targets".into(), Value::Null));
            let text = ordered_json(&cfg).replace(
                "\"targets\":null",
                &format!("\"targets\":[{}]", list.join(",")),
            );
            push_env(proxy, &text);
        } else {
            push_env(proxy, &ordered_json(&cfg));
        }
    }
    clear_prometheus(ann);
    put(ann, "prometheus.io/port", value!(status_port));
    put(ann, "prometheus.io/path", value!("/stats/prometheus"));
    put(ann, "prometheus.io/scrape", value!("true"));
}

fn push_env(proxy: Option<&mut Value>, value: &str) {
    if let Some(env) = proxy
        .and_then(|p| p.as_object_mut())
        .map(|p| p.entry("env").or_insert_with(|| value!([])))
        .and_then(Value::as_array_mut)
    {
        env.push(value!({"name": PROMETHEUS_ENV, "value": (go_json_text(value))}));
    }
}

/// Append the names of the `name`d items of `spec[field]` of the template pod as a JSON
/// list, or `null` when there are none.
fn write_names(out: &mut Vec<u8>, template: &Value, field: &str) {
    let items = template.at(&["spec", field]).and_then(Value::as_array);
    let mut names = items.into_iter().flatten().filter_map(|i| i.get("name"));
    let Some(first) = names.next() else {
        out.extend_from_slice(b"null");
        return;
    };
    out.push(b'[');
    let _ = json::write_value(out, first);
    for name in names {
        out.push(b',');
        let _ = json::write_value(out, name);
    }
    out.push(b']');
}

/// `sidecar.istio.io/status`: what the template injected, so that it can be stripped again.
/// Written straight to text (through `format!` and `Value`'s `Display` it was 3 % of a
/// request).
pub fn status_annotation(template: &Value, revision: &str) -> String {
    let rev = if revision.is_empty() {
        "default"
    } else {
        revision
    };
    let mut out = Vec::with_capacity(192);
    for (i, field) in [
        "initContainers",
        "containers",
        "volumes",
        "imagePullSecrets",
    ]
    .into_iter()
    .enumerate()
    {
        out.extend_from_slice(if i == 0 { b"{\"" } else { b",\"" });
        out.extend_from_slice(field.as_bytes());
        out.extend_from_slice(b"\":");
        write_names(&mut out, template, field);
    }
    out.extend_from_slice(b",\"revision\":");
    json::write_str(&mut out, rev);
    out.push(b'}');
    json::into_text(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_values_are_truncated() {
        let long = "a".repeat(70);
        assert_eq!(label_value(&long).len(), 63);
        assert_eq!(label_value("abc-"), "abc");
        let name = "helloworld-helloworld-helloworld-helloworld-helloworld-hellowo-ld";
        assert_eq!(
            label_value(name),
            "helloworld-helloworld-helloworld-helloworld-helloworld-hellowo"
        );
    }

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

    #[test]
    fn scrape_false_disables_merge() {
        let mut ann = Map::new();
        ann.insert("prometheus.io.scrape".into(), json!("false"));
        apply_prometheus_merge(&mut ann, None, &json!({}), "15020");
        assert_eq!(ann.len(), 1);
    }

    #[test]
    fn multus_network_is_appended_once() {
        assert_eq!(append_multus_network(""), "istio-cni");
        assert_eq!(append_multus_network("a, istio-cni"), "a, istio-cni");
        assert_eq!(
            append_multus_network(r#"[{"name": "a"}]"#),
            r#"[{"name": "a"}, {"name": "istio-cni"}]"#
        );
    }
}
