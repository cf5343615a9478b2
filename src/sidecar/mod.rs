//! The sidecar's parts: Istio's `sidecar` template as Rust data. [`Render`] gathers what the
//! template reads; [`render`] builds the partial pod it renders (labels and annotations, init
//! containers, the proxy container, volumes, pull secrets), each part in its own module.

pub mod capture;
pub mod init;
pub mod metadata;
pub mod proxy;
pub mod proxy_env;
pub mod resources;
#[cfg(test)]
mod version_rows;
pub mod volumes;

use crate::json::Path;
use crate::json::{put, value};
use serde_json::{Map, Value};

use crate::go::fmt::sprint;
use crate::values::helm::{Helm, Key};
use crate::values::traffic::{self, TrafficConfig};
use crate::values::workload::Workload;
use crate::values::InjectError;
use crate::versions::{Behaviour, Change};

/// The injected proxy container.
pub const PROXY_CONTAINER: &str = "istio-proxy";
/// The init container that sets up traffic capture.
pub const INIT_CONTAINER: &str = "istio-init";
/// With CNI, the init container that checks the CNI plugin's capture instead.
pub const VALIDATION_CONTAINER: &str = "istio-validation";
/// The pod annotation that replaces the proxy (and init) image.
const PROXY_IMAGE: &str = "sidecar.istio.io/proxyImage";
const PROXY_IMAGE_TYPE: &str = "sidecar.istio.io/proxyImageType";
const ENABLE_CORE_DUMP: &str = "sidecar.istio.io/enableCoreDump";

/// The template's inputs (Istio's `SidecarTemplateData`).
pub struct Render<'a> {
    /// Effective helm values.
    pub helm: &'a Helm,
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
    /// What the settings' Istio version renders (`crate::versions`).
    pub behaviour: Behaviour,
    pub traffic: &'a TrafficConfig,
    /// `values.global.proxy.resources`, canonical (or why it is not valid).
    pub default_resources: &'a Result<Value, String>,
    /// `PROXY_CONFIG`'s value when the mesh config is the settings' own (no
    /// `proxy.istio.io/config` annotation): computed once per settings.
    pub proxy_config_env: Option<&'a str>,
}

impl Render<'_> {
    /// The effective ProxyConfig.
    pub fn pc(&self) -> &Value {
        crate::values::proxy_config::proxy_config(self.mesh)
    }

    /// The template's `annotation` helper: the pod annotation if present, else `default`.
    pub fn ann(&self, name: &str, default: &str) -> String {
        self.annotations
            .get(name)
            .map(sprint)
            .unwrap_or_else(|| default.to_string())
    }

    /// `annotation name <helm value at path>`.
    pub fn ann_or_value(&self, name: &str, key: Key) -> String {
        match self.annotations.get(name) {
            Some(v) => sprint(v),
            None => self.helm.text(key),
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.annotations.contains_key(name)
    }

    /// CNI mode (`istio-validation`, the CNI annotations) at this version (R03).
    pub fn cni(&self) -> bool {
        self.traffic.cni(self.behaviour)
    }

    pub fn interception_mode(&self) -> String {
        traffic::interception_mode(self.annotations, self.traffic)
    }

    pub fn status_port(&self) -> String {
        traffic::status_port(self.annotations, self.traffic)
    }

    /// `holdApplicationUntilProxyStarts` from the ProxyConfig or the helm values.
    pub fn hold_application(&self) -> bool {
        crate::values::proxy_config::hold_application(self.pc())
            || self.helm.truthy(Key::HoldApplication)
    }

    /// The pod's app containers (every container but istio-proxy), by name.
    pub fn app_containers(&self) -> Vec<String> {
        self.pod
            .at(&["spec", "containers"])
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| c.get("name").and_then(Value::as_str))
                    .filter(|n| *n != PROXY_CONTAINER)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Image built from the helm hub and tag (`imageURL`), with an image type suffix.
    pub fn hub_image(&self, name: &str, image_type: &str) -> String {
        let hub = self.helm.str(Key::Hub).unwrap_or("");
        let tag = self.helm.text(Key::Tag);
        [hub, "/", name, ":", &with_image_type(&tag, image_type)].concat()
    }

    /// Go's `ProxyImage` (the template's `.ProxyImage`): `<hub>/<global.proxy.image or
    /// proxyv2>:<tag>` with the proxy's image type.
    pub fn proxy_image_url(&self) -> String {
        let name = self
            .helm
            .str(Key::ProxyImage)
            .filter(|s| !s.is_empty())
            .unwrap_or("proxyv2");
        self.hub_image(name, &self.image_type())
    }

    /// Go's `ProxyInitImage` (1.32's `.ProxyInitImage`): `<hub>/<global.proxy_init.image or
    /// proxyv2>:<tag>`, typed by the `proxyImageType` annotation, else `global.variant`; the
    /// ProxyConfig's `image.imageType` is not read.
    pub fn proxy_init_image_url(&self) -> String {
        let name = self
            .helm
            .str(Key::InitImage)
            .filter(|s| !s.is_empty())
            .unwrap_or("proxyv2");
        let image_type = self
            .annotations
            .get(PROXY_IMAGE_TYPE)
            .map(sprint)
            .unwrap_or_else(|| self.helm.text(Key::Variant));
        self.hub_image(name, &image_type)
    }

    /// The proxy image type suffix ([`proxy::image_type`]).
    fn image_type(&self) -> String {
        proxy::image_type(self)
    }

    /// `imagePullPolicy`, only when the helm value sets one.
    fn pull_policy(&self, c: &mut Map<String, Value>) {
        if let Some(p) = self
            .helm
            .str(Key::ImagePullPolicy)
            .filter(|s| !s.is_empty())
        {
            put(c, "imagePullPolicy", value!(p));
        }
    }

    /// Up to 1.23, `sidecar.istio.io/enableCoreDump` (else `global.proxy.enableCoreDump`)
    /// printing as `true` adds `enable-core-dump` and a writable proxy root (R05).
    fn core_dump_enabled(&self) -> bool {
        !self.behaviour.has(Change::NoCoreDump)
            && self.ann_or_value(ENABLE_CORE_DUMP, Key::EnableCoreDump) == "true"
    }
}

/// A string as the template pastes it into its YAML (R37). From 1.32 it is Go-quoted, so it
/// arrives verbatim. Before, it sat between `"…"`: YAML's double-quote escapes apply, and a
/// value that ends the scalar early makes the template's output fail to decode, which rejects
/// the pod (`what` names the annotation or value it came from).
pub fn pasted_in_quotes(s: &str, behaviour: Behaviour, what: &str) -> Result<String, InjectError> {
    if behaviour.has(Change::QuotedTemplateStrings) || !s.contains(['"', '\\']) {
        return Ok(s.to_string());
    }
    match crate::go::yaml::parse(&["\"", s, "\""].concat()) {
        Ok(Value::String(v)) => Ok(v),
        _ => Err(invalid_yaml(s, what)),
    }
}

/// A string the template pastes as a plain YAML scalar before 1.32 (R37), such as
/// `--proxyLogLevel=<v>` or the bootstrap ConfigMap name: YAML reads it (` #` starts a
/// comment, `123` is a number), and what is not a string, or not YAML, rejects the pod. From
/// 1.32 it is Go-quoted, so it arrives verbatim.
pub fn pasted_plain(text: &str, behaviour: Behaviour, what: &str) -> Result<Value, InjectError> {
    if behaviour.has(Change::QuotedTemplateStrings) {
        return Ok(Value::String(text.to_string()));
    }
    // A continuation line would sit left of the template's indentation.
    if text.contains(['\n', '\r']) {
        return Err(invalid_yaml(text, what));
    }
    match crate::go::yaml::parse(text) {
        Ok(v @ (Value::String(_) | Value::Null)) => Ok(v),
        _ => Err(invalid_yaml(text, what)),
    }
}

fn invalid_yaml(s: &str, what: &str) -> InjectError {
    InjectError(format!(
        "invalid value '{s}' for '{what}': the injection template renders it as invalid YAML"
    ))
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
        init_containers.push(init::init_container(r)?);
    }
    if let Some(c) = init::core_dump_container(r)? {
        init_containers.push(c);
    }
    let proxy = proxy::proxy_container(r)?;
    let mut containers = Vec::new();
    if r.native {
        init_containers.push(proxy);
    } else {
        containers.push(proxy);
    }
    let mut spec = Map::new();
    if !init_containers.is_empty() {
        put(&mut spec, "initContainers", Value::Array(init_containers));
    } else if !r.behaviour.has(Change::NoneInterceptionKeepsInitContainers) {
        // Up to 1.25 the template renders an empty `initContainers:`, a null that deletes the
        // pod's own init containers (R16; istio/istio#54562).
        put(&mut spec, "initContainers", Value::Null);
    }
    if !containers.is_empty() {
        put(&mut spec, "containers", Value::Array(containers));
    }
    put(&mut spec, "volumes", Value::Array(volumes::volumes(r)?));
    let secrets = image_pull_secrets(r.helm);
    if !secrets.is_empty() {
        put(&mut spec, "imagePullSecrets", Value::Array(secrets));
    }
    // Built by hand: `json!` would deep-copy every interpolated value through `to_value`.
    let mut meta = Map::new();
    put(&mut meta, "labels", metadata::template_labels(r));
    put(&mut meta, "annotations", metadata::template_annotations(r));
    let mut out = Map::new();
    put(&mut out, "metadata", Value::Object(meta));
    put(&mut out, "spec", Value::Object(spec));
    Ok(Value::Object(out))
}

/// `values.global.imagePullSecrets` as LocalObjectReferences.
fn image_pull_secrets(helm: &Helm) -> Vec<Value> {
    helm.get(Key::ImagePullSecrets)
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(|s| match s {
                    Value::String(s) => Some(value!({"name": s})),
                    Value::Object(o) => o.get("name").map(|n| value!({"name": n})),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::inject::{inject, Context};
    use crate::settings::Settings;
    use serde_json::json;

    fn pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "labels": {"app": "web", "version": "v2"},
                         "annotations": {"prometheus.io/port": "9090"}},
            "spec": {
                "x-unknown-field": {"kept": true},
                "containers": [{"name": "web", "image": "nginx",
                    "ports": [{"containerPort": 8080, "name": "http"}],
                    "readinessProbe": {"httpGet": {"port": 8080, "path": "/ready"}},
                    "x-vendor": 1}],
                "volumes": [{"name": "data", "emptyDir": {}}]
            }
        })
    }

    fn run(pod: &Value, settings: &Settings) -> Value {
        inject(
            pod,
            &Context {
                settings,
                namespace: "apps",
            },
        )
        .unwrap()
    }

    fn proxy(pod: &Value) -> &Value {
        ["initContainers", "containers"]
            .iter()
            .filter_map(|l| pod["spec"][l].as_array())
            .flatten()
            .find(|c| c["name"] == "istio-proxy")
            .unwrap()
    }

    fn env<'a>(c: &'a Value, name: &str) -> &'a Value {
        &c["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap()["value"]
    }

    fn names(pod: &Value, list: &str) -> Vec<String> {
        pod["spec"][list]
            .as_array()
            .map(|l| {
                l.iter()
                    .map(|c| c["name"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn revision_flows_into_ca_addr_proxy_config_and_annotations() {
        let s = Settings {
            revision: "canary".into(),
            ..Settings::default()
        };
        let out = run(&pod(), &s);
        let p = proxy(&out);
        assert_eq!(env(p, "CA_ADDR"), "istiod-canary.istio-system.svc:15012");
        assert_eq!(
            env(p, "PROXY_CONFIG"),
            "{\"discoveryAddress\":\"istiod-canary.istio-system.svc:15012\"}\n"
        );
        assert_eq!(out["metadata"]["annotations"]["istio.io/rev"], "canary");
        let status = out["metadata"]["annotations"]["sidecar.istio.io/status"]
            .as_str()
            .unwrap();
        assert!(status.ends_with(r#""revision":"canary"}"#), "{status}");
        assert_eq!(
            env(p, "ISTIO_META_OWNER"),
            "kubernetes://apis/v1/namespaces/apps/pods/web"
        );
        assert_eq!(
            out["metadata"]["labels"]["service.istio.io/canonical-revision"],
            "v2"
        );
    }

    #[test]
    fn unknown_fields_survive_and_user_volumes_follow_the_template() {
        let out = run(&pod(), &Settings::default());
        assert_eq!(out["spec"]["x-unknown-field"], json!({"kept": true}));
        assert_eq!(out["spec"]["containers"][0]["x-vendor"], 1);
        let volumes = names(&out, "volumes");
        assert_eq!(volumes.first().map(String::as_str), Some("workload-socket"));
        assert_eq!(volumes.last().map(String::as_str), Some("data"));
    }

    #[test]
    fn injection_is_idempotent() {
        let s = Settings::default();
        let once = run(&pod(), &s);
        assert_eq!(run(&once, &s), once);
        let classic = Settings {
            native_sidecars: Some(false),
            ..Settings::default()
        };
        let once = run(&pod(), &classic);
        assert_eq!(run(&once, &classic), once);
    }

    #[test]
    fn another_revisions_injection_is_re_rendered() {
        let canary = Settings {
            revision: "canary".into(),
            ..Settings::default()
        };
        let stable = Settings::default();
        let out = run(&run(&pod(), &canary), &stable);
        assert_eq!(out, run(&pod(), &stable));
        assert_eq!(names(&out, "initContainers"), ["istio-init", "istio-proxy"]);
    }

    #[test]
    fn classic_mode_holds_the_application() {
        let s = Settings {
            native_sidecars: Some(false),
            values: json!({"global": {"proxy": {"holdApplicationUntilProxyStarts": true}}}),
            ..Settings::default()
        };
        let out = run(&pod(), &s);
        assert_eq!(names(&out, "containers"), ["istio-proxy", "web"]);
        assert_eq!(names(&out, "initContainers"), ["istio-init"]);
        assert_eq!(
            out["spec"]["containers"][0]["lifecycle"]["postStart"]["exec"]["command"],
            json!(["pilot-agent", "wait"])
        );
    }

    #[test]
    fn cni_and_no_interception_change_the_init_container() {
        let cni = Settings {
            values: json!({"pilot": {"cni": {"enabled": true}}}),
            ..Settings::default()
        };
        assert_eq!(
            names(&run(&pod(), &cni), "initContainers"),
            ["istio-validation", "istio-proxy"]
        );
        let mut none = pod();
        none["metadata"]["annotations"]["sidecar.istio.io/interceptionMode"] = json!("NONE");
        assert_eq!(
            names(&run(&none, &Settings::default()), "initContainers"),
            ["istio-proxy"]
        );
    }

    #[test]
    fn bad_proxy_config_annotation_rejects_naming_it() {
        let mut p = pod();
        p["metadata"]["annotations"]["proxy.istio.io/config"] = json!("{not yaml: [");
        let err = inject(
            &p,
            &Context {
                settings: &Settings::default(),
                namespace: "apps",
            },
        )
        .unwrap_err();
        assert!(err.0.contains("proxy.istio.io/config"), "{err}");
    }

    #[test]
    fn default_hub_and_tag_are_a_release() {
        let out = run(&pod(), &Settings::default());
        assert_eq!(
            proxy(&out)["image"],
            format!("docker.io/istio/proxyv2:{}", crate::values::DEFAULT_TAG)
        );
    }

    #[test]
    fn image_type_replaces_known_suffix() {
        assert_eq!(with_image_type("1.2", ""), "1.2");
        assert_eq!(with_image_type("1.2-debug", "distroless"), "1.2-distroless");
        assert_eq!(with_image_type("1.2-distroless", "default"), "1.2");
    }
}
