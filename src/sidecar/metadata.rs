//! The pod metadata the template writes: labels (TLS mode, canonical service) and
//! annotations (revision, default containers, with CNI the capture settings).

use crate::json::value;
use crate::json::Path;
use serde_json::{Map, Value};

use super::{capture, Render};
use crate::values::helm::Key;
use crate::versions::{Behaviour, Change};

pub const REV: &str = "istio.io/rev";
pub const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";
pub const DEFAULT_LOGS_CONTAINER: &str = "kubectl.kubernetes.io/default-logs-container";
const TLS_MODE: &str = "security.istio.io/tlsMode";
const TUNNEL: &str = "networking.istio.io/tunnel";
const CANONICAL_NAME: &str = "service.istio.io/canonical-name";
const CANONICAL_REVISION: &str = "service.istio.io/canonical-revision";
const MULTUS_NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";

/// Longest label value Kubernetes accepts.
const MAX_LABEL: usize = 63;

/// `service.istio.io/canonical-name` as the template writes it: cut to 63 characters
/// (sprig's `trunc 63`), then up to 1.30 one trailing `-` dropped (`trimSuffix "-"`), from
/// 1.32 every leading and trailing `-`, `_` and `.` (`trimAll "-_."`, R32).
fn canonical_name(s: &str, behaviour: Behaviour) -> String {
    let cut: String = s.chars().take(MAX_LABEL).collect();
    if behaviour.has(Change::CanonicalNameTrimAll) {
        cut.trim_matches(['-', '_', '.']).to_string()
    } else {
        cut.strip_suffix('-').unwrap_or(&cut).to_string()
    }
}

/// The first non-empty label among `keys`.
fn first_label(labels: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter()
        .filter_map(|k| labels.get(*k).and_then(Value::as_str))
        .find(|v| !v.is_empty())
        .map(str::to_string)
}

/// `security.istio.io/tlsMode`, with HBONE (`ISTIO_META_ENABLE_HBONE: "true"` in the
/// ProxyConfig's `proxyMetadata`) `networking.istio.io/tunnel`, and the canonical service labels.
pub fn template_labels(r: &Render) -> Value {
    let mut labels = service_labels(r);
    let hbone = r
        .pc()
        .at(&["proxyMetadata", "ISTIO_META_ENABLE_HBONE"])
        .and_then(Value::as_str)
        == Some("true");
    if let (true, Value::Object(m)) = (hbone, &mut labels) {
        let tunnel = first_label(r.labels, &[TUNNEL]).unwrap_or_else(|| "http".into());
        m.insert(TUNNEL.into(), value!(tunnel));
    }
    labels
}

fn service_labels(r: &Render) -> Value {
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
        CANONICAL_NAME: (canonical_name(&name, r.behaviour)),
        // No version cuts or trims the canonical revision.
        CANONICAL_REVISION: revision,
    })
}

/// The network the template passes to `appendMultusNetwork` in every version.
const ISTIO_CNI_NETWORK: &str = "default/istio-cni";

/// Go's `appendMultusNetwork(existing, "default/istio-cni")`. In a JSON list the entry is
/// `{"name": "default/istio-cni"}` up to 1.24, and from 1.25 `{"name": "istio-cni",
/// "namespace": "default"}` (R14); a comma list names `default/istio-cni` in every version.
fn append_multus_network(existing: &str, behaviour: Behaviour) -> String {
    const NET: &str = ISTIO_CNI_NETWORK;
    if existing.is_empty() {
        return NET.into();
    }
    if let Some(i) = existing.rfind(']') {
        // Go decodes into `[]map[string]any`: anything but a list of objects (or nulls) is an
        // error, and the value is kept as it is.
        // Read as a `Value`: a typed read's "invalid type" error links serde's float formatting.
        let parsed = serde_json::from_str::<Value>(existing).ok();
        let nets = match parsed.as_ref() {
            Some(Value::Array(nets)) if nets.iter().all(|n| n.is_object() || n.is_null()) => nets,
            _ => return existing.into(),
        };
        let (ns, name) = NET.split_once('/').unwrap_or(("", NET));
        let present = nets.iter().any(|n| {
            if !behaviour.has(Change::MultusNamespacedEntry) {
                return n.get("name").and_then(Value::as_str) == Some(NET);
            }
            let namespace = match n.get("namespace") {
                None | Some(Value::Null) => Some(""),
                Some(v) => v.as_str(),
            };
            n.get("name").and_then(Value::as_str) == Some(name) && namespace == Some(ns)
        });
        if present {
            return existing.into();
        }
        return format!("{}{}{}", &existing[..i], entry(behaviour), &existing[i..]);
    }
    if existing.split(',').any(|n| n.trim() == NET) {
        return existing.into();
    }
    format!("{existing}, {NET}")
}

/// The text `appendMultusNetwork` inserts before a JSON list's final `]`.
fn entry(behaviour: Behaviour) -> &'static str {
    if behaviour.has(Change::MultusNamespacedEntry) {
        r#", {"name": "istio-cni", "namespace": "default"}"#
    } else {
        r#", {"name": "default/istio-cni"}"#
    }
}

/// With CNI, whether the template adds the multus networks annotation: `pilot.cni.provider`
/// is `multus`, and up to 1.23 also `istio_cni.provider` is, or `istio_cni.chained` is not
/// truthy (R04).
fn multus(r: &Render) -> bool {
    let is_multus = |key: Key| r.helm.str(key) == Some("multus");
    is_multus(Key::CniProvider)
        || (!r.behaviour.has(Change::CniFromPilotOnly)
            && (is_multus(Key::IstioCniProvider) || !r.helm.truthy(Key::IstioCniChained)))
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
        if multus(r) {
            let existing = r.ann(MULTUS_NETWORKS, "");
            a.insert(
                MULTUS_NETWORKS.into(),
                value!(append_multus_network(&existing, r.behaviour)),
            );
        }
        for (k, v) in capture::cni_annotations(r.annotations, r.traffic, r.behaviour) {
            a.insert(k, value!(v));
        }
    }
    Value::Object(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names_are_truncated_and_trimmed() {
        let main = Behaviour::default();
        let long = "a".repeat(70);
        assert_eq!(canonical_name(&long, main).len(), 63);
        assert_eq!(canonical_name("abc-", main), "abc");
        let name = "helloworld-helloworld-helloworld-helloworld-helloworld-hellowo-ld";
        assert_eq!(
            canonical_name(name, main),
            "helloworld-helloworld-helloworld-helloworld-helloworld-hellowo"
        );
        let v130 = crate::versions::IstioVersion::parse("1.30")
            .unwrap()
            .behaviour();
        assert_eq!(canonical_name("_a.b--", v130), "_a.b-");
        assert_eq!(canonical_name("_a.b--", main), "a.b");
    }

    #[test]
    fn multus_network_is_appended_once() {
        let main = Behaviour::default();
        assert_eq!(append_multus_network("", main), "default/istio-cni");
        assert_eq!(
            append_multus_network("a, default/istio-cni", main),
            "a, default/istio-cni"
        );
        assert_eq!(
            append_multus_network(r#"[{"name": "a"}]"#, main),
            r#"[{"name": "a"}, {"name": "istio-cni", "namespace": "default"}]"#
        );
        // Not a list of objects: kept as it is, as Go's decoding fails.
        assert_eq!(append_multus_network("[1]", main), "[1]");
        assert_eq!(append_multus_network("[oops]", main), "[oops]");
        // A missing namespace is "", which is not `default`.
        assert_eq!(
            append_multus_network(r#"[{"name": "istio-cni"}]"#, main),
            r#"[{"name": "istio-cni"}, {"name": "istio-cni", "namespace": "default"}]"#
        );
    }
}
