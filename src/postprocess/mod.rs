//! Istio's post-processing of the merged pod (`postProcessPod` and what `injectPod` does
//! around it): the user's own sidecar containers merged back ([`overrides`]), cluster and
//! network env, prometheus merge, probe rewriting, the status annotation, container order.
//! [`reinject`] is the step before rendering: the pod as the template sees it.

pub mod order;
pub mod overrides;
pub mod probes;
pub mod prometheus;
pub mod reinject;
pub mod status;

use crate::json::value;
use crate::json::Path;
use crate::versions::{Behaviour, Change};
use serde_json::{Map, Value};

use crate::json::meta_map;
use crate::sidecar::PROXY_CONTAINER;
use crate::values::annotations::SIDECAR_STATUS;
use crate::values::helm::{Helm, Key};
use crate::values::InjectError;
use overrides::TemplateContainers;

pub const NETWORK_LABEL: &str = "topology.istio.io/network";

/// What post-processing reads besides the merged pod.
pub struct Inputs<'a> {
    pub helm: &'a Helm,
    /// The effective MeshConfig (without the pod's ProxyConfig annotation).
    pub mesh: &'a Value,
    /// `meshConfig.defaultConfig.statusPort`.
    pub status_port: &'a str,
    /// What [`overrides::submitted_parts`] kept of the submitted pod.
    pub original: &'a Value,
    /// The containers the template rendered.
    pub rendered: &'a TemplateContainers,
    /// The `sidecar.istio.io/status` text.
    pub status: String,
    /// TPROXY interception: the proxy stays root.
    pub tproxy: bool,
    /// The proxy holds the application until it is ready (it goes first).
    pub hold: bool,
    /// What the settings' Istio version does.
    pub behaviour: Behaviour,
}

/// Post-process the pod the template was merged into.
pub fn run(pod: &mut Value, i: Inputs) -> Result<(), InjectError> {
    overrides::reapply_overrides(pod, i.original, i.rendered, i.tproxy)?;
    let network = apply_cluster_env(pod, i.helm, &meta_map(i.original, "labels"));
    apply_prometheus(pod, i.mesh, i.status_port, i.behaviour).map_err(InjectError)?;
    apply_probe_rewrite(pod, i.helm, i.status_port, i.behaviour);
    if let Some(ann) = meta_map_mut(pod, "annotations") {
        ann.insert(SIDECAR_STATUS.into(), Value::String(i.status));
    }
    if let (Some(n), Some(labels)) = (network, meta_map_mut(pod, "labels")) {
        labels.insert(NETWORK_LABEL.into(), Value::String(n));
    }
    order::reorder(pod, i.hold);
    Ok(())
}

/// `metadata.<field>` of the pod for editing, made a map when absent (or not a map).
/// `None` only when the pod itself is not an object (rejected before rendering).
fn meta_map_mut<'a>(pod: &'a mut Value, field: &str) -> Option<&'a mut Map<String, Value>> {
    let meta = ensure_map(
        pod.as_object_mut()?
            .entry("metadata")
            .or_insert(Value::Null),
    )?;
    ensure_map(meta.entry(field).or_insert(Value::Null))
}

/// `v` as a map, replaced by an empty one when it is anything else.
fn ensure_map(v: &mut Value) -> Option<&mut Map<String, Value>> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    v.as_object_mut()
}

fn list_mut<'a>(pod: &'a mut Value, list: &str) -> Option<&'a mut Vec<Value>> {
    pod.at_mut(&["spec", list]).and_then(Value::as_array_mut)
}

fn is_named(c: &Value, name: &str) -> bool {
    c.get("name").and_then(Value::as_str) == Some(name)
}

/// The injected proxy container, wherever it sits.
fn sidecar_mut(pod: &mut Value) -> Option<&mut Value> {
    let in_containers = pod
        .at(&["spec", "containers"])
        .and_then(Value::as_array)
        .is_some_and(|l| l.iter().any(|c| is_named(c, PROXY_CONTAINER)));
    let list = if in_containers {
        "containers"
    } else {
        "initContainers"
    };
    list_mut(pod, list)?
        .iter_mut()
        .find(|c| is_named(c, PROXY_CONTAINER))
}

/// Cluster ID and network set for the pod (`overwriteClusterInfo`): their env vars move to the
/// end of the proxy env, sorted. Returns the network, which also becomes a pod label.
fn apply_cluster_env(pod: &mut Value, helm: &Helm, labels: &Map<String, Value>) -> Option<String> {
    let cluster = helm.text(Key::ClusterName);
    let mut network = helm.text(Key::Network);
    if let Some(n) = labels.get(NETWORK_LABEL).and_then(Value::as_str) {
        network = n.to_string();
    }
    let mut envs: Vec<(&str, String)> = Vec::new();
    if !cluster.is_empty() {
        envs.push(("ISTIO_META_CLUSTER_ID", cluster));
    }
    if !network.is_empty() {
        envs.push(("ISTIO_META_NETWORK", network.clone()));
    }
    if envs.is_empty() {
        return None;
    }
    if let Some(env) = sidecar_mut(pod)
        .and_then(Value::as_object_mut)
        .map(|c| c.entry("env").or_insert_with(|| value!([])))
        .and_then(Value::as_array_mut)
    {
        env.retain(|e| !envs.iter().any(|(n, _)| is_named(e, n)));
        for (n, v) in &envs {
            env.push(value!({"name": n, "value": v}));
        }
    }
    (!network.is_empty()).then_some(network)
}

/// The annotations are taken out of the pod while the proxy container is edited, then put
/// back (an absent map stays absent when nothing is added). From 1.32 the merge can reject
/// (R38), and `prometheus.istio.io/secure-port` follows the proxy env (R40).
fn apply_prometheus(
    pod: &mut Value,
    mesh: &Value,
    status_port: &str,
    behaviour: Behaviour,
) -> Result<(), String> {
    let existing = pod
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        .filter(|a| a.is_object())
        .map(std::mem::take);
    let had = existing.is_some();
    let mut ann = match existing {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    let merged = prometheus::apply_prometheus_merge(
        &mut ann,
        sidecar_mut(pod),
        mesh,
        status_port,
        behaviour,
    );
    if merged.is_ok() && behaviour.has(Change::PrometheusSecurePort) {
        prometheus::apply_secure_port(&mut ann, sidecar_mut(pod).map(|p| &*p));
    }
    if had || !ann.is_empty() {
        if let Some(slot) = meta_map_mut(pod, "annotations") {
            *slot = ann;
        }
    }
    merged
}

/// App probes redirected through the agent, their originals in `ISTIO_KUBE_APP_PROBERS`
/// (merged with the ones a previous injection recorded).
fn apply_probe_rewrite(pod: &mut Value, helm: &Helm, status_port: &str, behaviour: Behaviour) {
    let default = helm.truthy(Key::RewriteAppHttpProbe);
    let port: u16 = status_port.parse().unwrap_or(15020);
    probes::rewrite_probes_at(pod, port, default, behaviour);
}
