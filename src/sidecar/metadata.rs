//! The pod metadata the template writes: labels (TLS mode, canonical service) and
//! annotations (revision, default containers, with CNI the capture settings).

use crate::json::value;
use serde_json::{Map, Value};

use super::{capture, Render};
use crate::values::helm::Key;

pub const REV: &str = "istio.io/rev";
pub const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";
pub const DEFAULT_LOGS_CONTAINER: &str = "kubectl.kubernetes.io/default-logs-container";
const TLS_MODE: &str = "security.istio.io/tlsMode";
const CANONICAL_NAME: &str = "service.istio.io/canonical-name";
const CANONICAL_REVISION: &str = "service.istio.io/canonical-revision";
const MULTUS_NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";

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
        for (k, v) in capture::cni_annotations(r.annotations, r.traffic) {
            a.insert(k, value!(v));
        }
    }
    Value::Object(a)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn multus_network_is_appended_once() {
        assert_eq!(append_multus_network(""), "istio-cni");
        assert_eq!(append_multus_network("a, istio-cni"), "a, istio-cni");
        assert_eq!(
            append_multus_network(r#"[{"name": "a"}]"#),
            r#"[{"name": "a"}, {"name": "istio-cni"}]"#
        );
    }
}
