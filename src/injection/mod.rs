//! Rendering Istio's default `sidecar` template onto a pod. Owned by the injection work (issue 4).
//!
//! The template is Rust data: functions that build `serde_json::Value`s from the pod, the
//! helm values and the mesh config ([`template`]), strategically merged onto the pod the way
//! Istio's webhook does ([`overrides::strategic_merge`]), then post-processed like
//! `postProcessPod` (cluster env, prometheus merge, probe rewriting, status annotation,
//! container order).

pub mod annotations;
pub mod containers;
pub mod helm;
pub mod metadata;
pub mod override_policy;
pub mod overrides;
pub mod probes;
pub mod proxy_config;
pub mod proxy_env;
pub mod proxy_yaml;
pub mod reinject;
pub mod resources;
pub mod template;
pub mod traffic;
pub mod values;
pub mod volumes;
pub mod workload;

use crate::json::value;
use crate::json::Path;
use serde_json::{Map, Value};
use std::borrow::Cow;

use crate::settings::Settings;
use annotations::SIDECAR_STATUS;
use helm::{Helm, Key};
use reinject::meta_map;
use traffic::{go_sprint, TrafficConfig};

/// What the injector knows besides the pod itself.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub settings: &'a Settings,
    /// The namespace the pod is created in (request namespace, else the pod's, else `default`).
    pub namespace: &'a str,
}

/// Why a pod cannot be injected; becomes the rejection message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectError(pub String);

impl std::fmt::Display for InjectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

const PROXY: &str = "istio-proxy";
const NATIVE_SIDECAR: &str = "sidecar.istio.io/nativeSidecar";
const NETWORK_LABEL: &str = "topology.istio.io/network";
const INIT_BEFORE_PROXY: &str = "sidecar.istio.io/init-containers-before-proxy";

/// Return the injected pod. The input is never modified; fields the template does not own survive.
/// Override annotations the settings do not allow reject the pod (see [`override_policy`]).
pub fn inject(pod: &Value, ctx: &Context) -> Result<Value, InjectError> {
    inject_owned(pod.clone(), ctx)
}

/// [`inject`] of a pod the caller hands over: the pod becomes the output instead of being
/// copied (with 2,000 env vars the copy was most of a request's work).
pub fn inject_owned(pod: Value, ctx: &Context) -> Result<Value, InjectError> {
    let annotations = meta_map(&pod, "annotations");
    let allowed = ctx.settings.allowed_override_annotations.as_deref();
    let denied = override_policy::denied_overrides(&annotations, allowed);
    if !denied.is_empty() {
        let mut stripped = pod.clone();
        if let Some(a) = stripped
            .at_mut(&["metadata", "annotations"])
            .and_then(Value::as_object_mut)
        {
            a.retain(|k, _| !denied.contains(&k.as_str()));
        }
        let reference = render_pod(stripped, ctx)?;
        override_policy::check_against(&denied, &annotations, &reference).map_err(InjectError)?;
    }
    render_pod(pod, ctx)
}

fn render_pod(pod: Value, ctx: &Context) -> Result<Value, InjectError> {
    if !pod.is_object() {
        return Err(InjectError("the pod is not a JSON object".into()));
    }
    let annotations = meta_map(&pod, "annotations");
    annotations::validate(&annotations)?;
    let effective = values::effective(ctx.settings);
    let (helm, mesh) = (&effective.helm, &effective.mesh);
    let pod_mesh = proxy_config::apply_pod_proxy_config(mesh, &annotations)?;
    let status_port = mesh
        .at(&["defaultConfig", "statusPort"])
        .map(go_sprint)
        .unwrap_or_else(|| "15020".into());

    let view = reinject::template_view(&pod, &status_port)?;
    let view_annotations = meta_map(&view, "annotations");
    let view_labels = meta_map(&view, "labels");
    let workload = workload::workload_of(&pod, ctx.namespace);
    // Without a `proxy.istio.io/config` annotation the mesh config is the settings' own, and
    // so are the traffic capture and `PROXY_CONFIG` derived from it (computed once).
    let annotated;
    let (traffic, proxy_config_env) = match &pod_mesh {
        Cow::Borrowed(_) => (
            &effective.traffic,
            Some(effective.proxy_config_env.as_str()),
        ),
        Cow::Owned(m) => {
            annotated = TrafficConfig::from_settings(helm, m);
            (&annotated, None)
        }
    };
    let render = template::Render {
        helm,
        mesh: &pod_mesh,
        pod: &view,
        annotations: &view_annotations,
        labels: &view_labels,
        workload: &workload,
        revision: ctx.settings.revision_name(),
        native: native_mode(&annotations, ctx.settings),
        traffic,
        default_resources: &effective.proxy_resources,
        proxy_config_env,
    };
    let tpl = template::render(&render)?;
    let (native, hold) = (render.native, render.hold_application());
    let tproxy = traffic.interception_mode == "TPROXY";
    // What is needed of the template and of the submitted pod once both have moved.
    let status = metadata::status_annotation(&tpl, ctx.settings.revision_name());
    let rendered = overrides::TemplateContainers::of(&tpl);
    let original = overrides::submitted_parts(&pod, &rendered);

    let mut out = pod;
    if native {
        // A proxy customisation (or a classic injection) sits in `containers`; the native
        // template has it in `initContainers`: move it there before merging.
        move_container(&mut out, "containers", "initContainers", PROXY);
    }
    overrides::strategic_merge_into(&mut out, tpl, overrides::Ty::Struct("Pod"));
    overrides::reapply_overrides(&mut out, &original, &rendered, tproxy)?;

    let network = apply_cluster_env(&mut out, helm, &meta_map(&original, "labels"));
    apply_prometheus(&mut out, mesh, &status_port);
    apply_probe_rewrite(&mut out, helm, &status_port);
    if let Some(ann) = meta_map_mut(&mut out, "annotations") {
        ann.insert(SIDECAR_STATUS.into(), Value::String(status));
    }
    if let (Some(n), Some(labels)) = (network, meta_map_mut(&mut out, "labels")) {
        labels.insert(NETWORK_LABEL.into(), Value::String(n));
    }
    reorder(&mut out, hold);
    Ok(out)
}

/// Checks on `values` / `meshConfig` done once, at settings validation time.
pub fn validate_settings(settings: &Settings) -> Result<(), String> {
    values::validate(settings)
}

/// The pod annotation wins over the settings (`true` means native, any other value classic).
fn native_mode(annotations: &Map<String, Value>, settings: &Settings) -> bool {
    match annotations.get(NATIVE_SIDECAR) {
        Some(v) => v.as_str() == Some("true"),
        None => settings.native_sidecars,
    }
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

/// Move the first container called `name` from `spec[from]` to the end of `spec[to]`.
fn move_container(pod: &mut Value, from: &str, to: &str, name: &str) {
    let Some(src) = list_mut(pod, from) else {
        return;
    };
    let Some(i) = src.iter().position(|c| is_named(c, name)) else {
        return;
    };
    let c = src.remove(i);
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        let dst = spec.entry(to).or_insert_with(|| value!([]));
        if let Some(d) = dst.as_array_mut() {
            d.push(c);
        }
    }
}

/// The injected proxy container, wherever it sits.
fn sidecar_mut(pod: &mut Value) -> Option<&mut Value> {
    let in_containers = pod
        .at(&["spec", "containers"])
        .and_then(Value::as_array)
        .is_some_and(|l| l.iter().any(|c| is_named(c, PROXY)));
    let list = if in_containers {
        "containers"
    } else {
        "initContainers"
    };
    list_mut(pod, list)?.iter_mut().find(|c| is_named(c, PROXY))
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
/// back (an absent map stays absent when the merge adds nothing).
fn apply_prometheus(pod: &mut Value, mesh: &Value, status_port: &str) {
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
    metadata::apply_prometheus_merge(&mut ann, sidecar_mut(pod), mesh, status_port);
    if had || !ann.is_empty() {
        if let Some(slot) = meta_map_mut(pod, "annotations") {
            *slot = ann;
        }
    }
}

/// App probes redirected through the agent, their originals in `ISTIO_KUBE_APP_PROBERS`
/// (merged with the ones a previous injection recorded).
fn apply_probe_rewrite(pod: &mut Value, helm: &Helm, status_port: &str) {
    let default = helm.truthy(Key::RewriteAppHttpProbe);
    let port: u16 = status_port.parse().unwrap_or(15020);
    probes::rewrite_probes(pod, port, default);
}

#[derive(Clone, Copy)]
enum Place {
    First,
    Last,
}

/// `modifyContainers`: move the container called `name` first or last.
fn place(list: &mut Vec<Value>, name: &str, at: Place) {
    let Some(i) = list.iter().rposition(|c| is_named(c, name)) else {
        return;
    };
    let c = list.remove(i);
    list.retain(|c| !is_named(c, name));
    match at {
        Place::First => list.insert(0, c),
        Place::Last => list.push(c),
    }
}

/// `reorderPod`: proxy last among containers (first when holding the application); with a
/// native sidecar, init containers run istio-init/istio-validation, the proxy, then the rest.
fn reorder(pod: &mut Value, hold: bool) {
    let before: Vec<String> = meta_map(pod, "annotations")
        .get(INIT_BEFORE_PROXY)
        .and_then(Value::as_str)
        .map(|s| {
            let mut seen: Vec<String> = Vec::new();
            for n in s.split(',') {
                if !seen.iter().any(|x| x == n) {
                    seen.push(n.to_string());
                }
            }
            seen
        })
        .unwrap_or_default();
    if let Some(cs) = list_mut(pod, "containers") {
        place(cs, PROXY, if hold { Place::First } else { Place::Last });
    }
    let Some(init) = list_mut(pod, "initContainers") else {
        return;
    };
    if init.iter().any(|c| is_named(c, PROXY)) {
        place(init, "enable-core-dump", Place::First);
        place(init, PROXY, Place::First);
        for name in before.iter().rev() {
            place(init, name, Place::First);
        }
        place(init, "istio-validation", Place::First);
        place(init, "istio-init", Place::First);
    } else {
        place(init, "istio-validation", Place::First);
        place(init, "istio-init", Place::Last);
        place(init, "enable-core-dump", Place::Last);
    }
}
