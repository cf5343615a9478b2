//! Everything the `sidecar` template reads, gathered once, and the template pod it renders:
//! metadata (labels, annotations) and spec (init containers, containers, volumes, pull secrets).

use serde_json::{json, Map, Value};

use super::containers;
use super::metadata;
use super::traffic::{self, go_sprint, TrafficConfig};
use super::values::{str_at, text_at, truthy_at};
use super::volumes;
use super::workload::Workload;
use super::InjectError;

/// The template's inputs (Istio's `SidecarTemplateData`).
pub struct Render<'a> {
    /// Effective helm values.
    pub values: &'a Value,
    /// Effective MeshConfig, with the pod's `proxy.istio.io/config` applied.
    pub mesh: &'a Value,
    /// The pod as the template sees it: previous injection stripped, overrides re-inserted.
    pub pod: &'a Value,
    pub annotations: &'a Map<String, Value>,
    pub labels: &'a Map<String, Value>,
    pub workload: &'a Workload,
    /// The revision written to `istio.io/rev` and the status annotation.
    pub revision: &'a str,
    /// Native sidecar mode: istio-proxy is an init container with `restartPolicy: Always`.
    pub native: bool,
    pub traffic: &'a TrafficConfig,
}

impl Render<'_> {
    /// The effective ProxyConfig.
    pub fn pc(&self) -> &Value {
        super::proxy_config::proxy_config(self.mesh)
    }

    /// The template's `annotation` helper: the pod annotation if present, else `default`.
    pub fn ann(&self, name: &str, default: &str) -> String {
        self.annotations
            .get(name)
            .map(go_sprint)
            .unwrap_or_else(|| default.to_string())
    }

    /// `annotation name <helm value at path>`.
    pub fn ann_or_value(&self, name: &str, path: &[&str]) -> String {
        self.ann(name, &text_at(self.values, path))
    }

    pub fn has(&self, name: &str) -> bool {
        self.annotations.contains_key(name)
    }

    pub fn cni(&self) -> bool {
        self.traffic.cni_enabled
    }

    pub fn interception_mode(&self) -> String {
        traffic::interception_mode(self.annotations, self.traffic)
    }

    pub fn status_port(&self) -> String {
        traffic::status_port(self.annotations, self.traffic)
    }

    /// `holdApplicationUntilProxyStarts` from the ProxyConfig or the helm values.
    pub fn hold_application(&self) -> bool {
        super::proxy_config::hold_application(self.pc())
            || truthy_at(
                self.values,
                &["global", "proxy", "holdApplicationUntilProxyStarts"],
            )
    }

    /// The pod's app containers (every container but istio-proxy), by name.
    pub fn app_containers(&self) -> Vec<String> {
        self.pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| c.get("name").and_then(Value::as_str))
                    .filter(|n| *n != "istio-proxy")
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Image built from the helm hub and tag (`imageURL`), with an image type suffix.
    pub fn hub_image(&self, name: &str, image_type: &str) -> String {
        let hub = str_at(self.values, &["global", "hub"]).unwrap_or("");
        let tag = text_at(self.values, &["global", "tag"]);
        format!("{hub}/{name}:{}", with_image_type(&tag, image_type))
    }
}

/// `updateImageTypeIfPresent`: replace a known `-distroless`/`-debug` suffix by the wanted type.
fn with_image_type(tag: &str, image_type: &str) -> String {
    if image_type.is_empty() {
        return tag.to_string();
    }
    let mut tag = tag;
    for known in ["distroless", "debug"] {
        if let Some(t) = tag.strip_suffix(&format!("-{known}")) {
            tag = t;
            break;
        }
    }
    if image_type == "default" {
        tag.to_string()
    } else {
        format!("{tag}-{image_type}")
    }
}

/// The rendered template as a partial pod (what Istio overlays onto the pod).
pub fn render(r: &Render) -> Result<Value, InjectError> {
    let mut init_containers = Vec::new();
    if r.interception_mode() != "NONE" {
        init_containers.push(containers::init_container(r)?);
    }
    if let Some(c) = containers::core_dump_container(r)? {
        init_containers.push(c);
    }
    let proxy = containers::proxy_container(r)?;
    let mut containers = Vec::new();
    if r.native {
        init_containers.push(proxy);
    } else {
        containers.push(proxy);
    }
    let mut spec = Map::new();
    if !init_containers.is_empty() {
        spec.insert("initContainers".into(), Value::Array(init_containers));
    }
    if !containers.is_empty() {
        spec.insert("containers".into(), Value::Array(containers));
    }
    spec.insert("volumes".into(), Value::Array(volumes::volumes(r)?));
    let secrets = image_pull_secrets(r.values);
    if !secrets.is_empty() {
        spec.insert("imagePullSecrets".into(), Value::Array(secrets));
    }
    Ok(json!({
        "metadata": {
            "labels": metadata::template_labels(r),
            "annotations": metadata::template_annotations(r),
        },
        "spec": spec,
    }))
}

/// `values.global.imagePullSecrets` as LocalObjectReferences.
fn image_pull_secrets(values: &Value) -> Vec<Value> {
    values
        .pointer("/global/imagePullSecrets")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(|s| match s {
                    Value::String(s) => Some(json!({"name": s})),
                    Value::Object(o) => o.get("name").map(|n| json!({"name": n})),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_type_replaces_known_suffix() {
        assert_eq!(with_image_type("1.2", ""), "1.2");
        assert_eq!(with_image_type("1.2-debug", "distroless"), "1.2-distroless");
        assert_eq!(with_image_type("1.2-distroless", "default"), "1.2");
    }
}
