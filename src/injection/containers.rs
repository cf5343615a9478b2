//! The containers of the `sidecar` template: `istio-init` (or `istio-validation` with CNI),
//! `enable-core-dump`, and `istio-proxy` with its env, probes, security context and mounts.

use crate::json::Path;
use crate::json::{put, value};
use serde_json::{Map, Value};

use super::annotations::{
    AGENT_LOG_LEVEL, READINESS_FAILURE_THRESHOLD, READINESS_INITIAL_DELAY, READINESS_PERIOD,
};
use super::helm::Key;
use super::proxy_config::proxy_metadata;
use super::proxy_env::{env_list, proxy_env};
use super::template::Render;
use super::{resources, traffic, volumes, InjectError};

const PROXY_IMAGE: &str = "sidecar.istio.io/proxyImage";
const PROXY_IMAGE_TYPE: &str = "sidecar.istio.io/proxyImageType";
const ENABLE_CORE_DUMP: &str = "sidecar.istio.io/enableCoreDump";
const LOG_LEVEL: &str = "sidecar.istio.io/logLevel";
const COMPONENT_LOG_LEVEL: &str = "sidecar.istio.io/componentLogLevel";
const CAP_NET_BIND_SERVICE: &str = "sidecar.istio.io/capNetBindService";

/// `istio-proxy`'s image: the annotation or `global.proxy.image` when it is a full reference,
/// else `<hub>/<global.proxy.image>:<tag>[-<imageType>]` (`ProxyImage`).
fn proxy_image(r: &Render) -> String {
    let name = r.ann_or_value(PROXY_IMAGE, Key::ProxyImage);
    if name.contains('/') {
        return name;
    }
    let mut image = r
        .helm
        .str(Key::ProxyImage)
        .filter(|s| !s.is_empty())
        .unwrap_or("proxyv2")
        .to_string();
    if image.contains('/') {
        image = "proxyv2".into();
    }
    r.hub_image(&image, &image_type(r))
}

/// The image type suffix: the pod annotation, else the ProxyConfig's `image.imageType`.
fn image_type(r: &Render) -> String {
    r.annotations
        .get(PROXY_IMAGE_TYPE)
        .map(traffic::go_sprint)
        .or_else(|| {
            r.pc()
                .at(&["image", "imageType"])
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default()
}

/// The init containers' image: the annotation or `global.proxy_init.image` when it is a full
/// reference, else `<hub>/<global.proxy_init.image>:<tag>`.
fn init_image(r: &Render) -> String {
    let name = r.ann_or_value(PROXY_IMAGE, Key::InitImage);
    if name.contains('/') {
        return name;
    }
    let image = r
        .helm
        .str(Key::InitImage)
        .filter(|s| !s.is_empty())
        .unwrap_or("proxyv2");
    r.hub_image(image, &image_type(r))
}

/// `imagePullPolicy`, only when the helm value sets one.
fn pull_policy(r: &Render, c: &mut Map<String, Value>) {
    if let Some(p) = r.helm.str(Key::ImagePullPolicy).filter(|s| !s.is_empty()) {
        put(c, "imagePullPolicy", value!(p));
    }
}

fn resources_of(r: &Render) -> Result<Value, InjectError> {
    if !resources::has_resource_annotations(r.annotations) {
        return r
            .default_resources
            .clone()
            .map_err(|e| InjectError(format!("invalid values.global.proxy.resources: {e}")));
    }
    let values = r.helm.get(Key::Resources).unwrap_or(&Value::Null);
    resources::proxy_resources(values, r.annotations)
}

/// `istio-init`, or `istio-validation` when CNI sets up the redirection.
pub fn init_container(r: &Render) -> Result<Value, InjectError> {
    let cni = r.cni();
    let privileged = r.helm.truthy(Key::Privileged);
    let mut c = Map::new();
    put(
        &mut c,
        "name",
        value!(if cni {
            "istio-validation"
        } else {
            "istio-init"
        }),
    );
    put(&mut c, "image", value!(init_image(r)));
    put(
        &mut c,
        "args",
        value!(traffic::init_args(r.pod, r.traffic)?),
    );
    pull_policy(r, &mut c);
    let metadata = proxy_metadata(r.pc());
    if !metadata.is_empty() {
        put(&mut c, "env", env_list(&metadata));
    }
    put(&mut c, "resources", resources_of(r)?);
    let security = if cni {
        value!({
            "allowPrivilegeEscalation": privileged,
            "privileged": privileged,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": true,
            "runAsGroup": 1337,
            "runAsUser": 1337,
            "runAsNonRoot": true,
        })
    } else {
        value!({
            "allowPrivilegeEscalation": privileged,
            "privileged": privileged,
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
            "readOnlyRootFilesystem": false,
            "runAsGroup": 0,
            "runAsNonRoot": false,
            "runAsUser": 0,
        })
    };
    put(&mut c, "securityContext", security);
    Ok(Value::Object(c))
}

fn core_dump_enabled(r: &Render) -> bool {
    r.ann_or_value(ENABLE_CORE_DUMP, Key::EnableCoreDump) == "true"
}

/// `enable-core-dump`, when the annotation or helm value asks for it.
pub fn core_dump_container(r: &Render) -> Result<Option<Value>, InjectError> {
    if !core_dump_enabled(r) {
        return Ok(None);
    }
    let mut c = Map::new();
    put(&mut c, "name", value!("enable-core-dump"));
    put(
        &mut c,
        "args",
        value!([
            "-c",
            "sysctl -w kernel.core_pattern=/var/lib/istio/data/core.proxy && ulimit -c unlimited"
        ]),
    );
    put(&mut c, "command", value!(["/bin/sh"]));
    put(&mut c, "image", value!(init_image(r)));
    pull_policy(r, &mut c);
    put(&mut c, "resources", resources_of(r)?);
    put(
        &mut c,
        "securityContext",
        value!({
            "allowPrivilegeEscalation": true,
            "capabilities": {"add": ["SYS_ADMIN"], "drop": ["ALL"]},
            "privileged": true,
            "readOnlyRootFilesystem": false,
            "runAsGroup": 0,
            "runAsNonRoot": false,
            "runAsUser": 0,
        }),
    );
    Ok(Some(Value::Object(c)))
}

fn proxy_args(r: &Render) -> Vec<String> {
    let h = r.helm;
    let mut args = vec![
        "proxy".to_string(),
        "sidecar".into(),
        "--domain".into(),
        // Joined with `concat`, not `format!` (core::fmt is slow for plain text).
        ["$(POD_NAMESPACE).svc.", &h.text(Key::ClusterDomain)].concat(),
        [
            "--proxyLogLevel=",
            &r.ann_or_value(LOG_LEVEL, Key::LogLevel),
        ]
        .concat(),
        [
            "--proxyComponentLogLevel=",
            &r.ann_or_value(COMPONENT_LOG_LEVEL, Key::ComponentLogLevel),
        ]
        .concat(),
        [
            "--log_output_level=",
            &r.ann_or_value(AGENT_LOG_LEVEL, Key::LoggingLevel),
        ]
        .concat(),
    ];
    if h.truthy(Key::StsPort) {
        args.push(["--stsPort=", &h.text(Key::StsPort)].concat());
    }
    if h.truthy(Key::LogAsJson) {
        args.push("--log_as_json".into());
    }
    args
}

/// A probe integer from an annotation or helm value (validated earlier; bad text becomes 0).
fn probe_int(r: &Render, annotation: &str, key: Key) -> i64 {
    let text = r.ann_or_value(annotation, key);
    text.trim().parse().unwrap_or(0)
}

fn lifecycle(r: &Render) -> Option<Value> {
    if let Some(l) = r.helm.get(Key::Lifecycle).filter(|l| truthy(l)) {
        return Some(l.clone());
    }
    if r.native {
        return Some(value!({"preStop": {"exec": {"command": [
            "pilot-agent", "request", (["--debug-port=", &r.status_port()].concat()), "POST", "drain"
        ]}}}));
    }
    if r.hold_application() {
        return Some(value!({"postStart": {"exec": {"command": ["pilot-agent", "wait"]}}}));
    }
    None
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

fn proxy_security_context(r: &Render) -> Value {
    let privileged = r.helm.truthy(Key::Privileged);
    let read_only = !super::containers::core_dump_enabled(r);
    let tproxy = r.interception_mode() == "TPROXY";
    let bind = r.ann(CAP_NET_BIND_SERVICE, &r.helm.text(Key::CapNetBindService)) == "true";
    let trace = r
        .pc()
        .at(&["proxyMetadata", "IPTABLES_TRACE_LOGGING"])
        .and_then(Value::as_str)
        == Some("true");
    if trace {
        return value!({
            "allowPrivilegeEscalation": true,
            "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
            "privileged": true,
            "readOnlyRootFilesystem": read_only,
            "runAsGroup": 1337,
            "runAsNonRoot": false,
            "runAsUser": 0,
        });
    }
    let mut caps = Map::new();
    let mut add = Vec::new();
    if tproxy {
        add.push("NET_ADMIN");
    }
    if bind {
        add.push("NET_BIND_SERVICE");
    }
    if !add.is_empty() {
        put(&mut caps, "add", value!(add));
    }
    put(&mut caps, "drop", value!(["ALL"]));
    let root = tproxy || bind;
    value!({
        "allowPrivilegeEscalation": privileged,
        "capabilities": caps,
        "privileged": privileged,
        "readOnlyRootFilesystem": read_only,
        "runAsGroup": 1337,
        "runAsNonRoot": (!root),
        "runAsUser": (if root { 0 } else { 1337 }),
    })
}

/// `istio-proxy`.
pub fn proxy_container(r: &Render) -> Result<Value, InjectError> {
    let mut c = Map::new();
    put(&mut c, "name", value!("istio-proxy"));
    put(&mut c, "image", value!(proxy_image(r)));
    put(
        &mut c,
        "ports",
        value!([{"containerPort": 15090, "protocol": "TCP", "name": "http-envoy-prom"}]),
    );
    put(&mut c, "args", value!(proxy_args(r)));
    if let Some(l) = lifecycle(r) {
        put(&mut c, "lifecycle", l);
    }
    put(&mut c, "env", Value::Array(proxy_env(r)));
    pull_policy(r, &mut c);
    if r.status_port() != "0" {
        put(
            &mut c,
            "readinessProbe",
            value!({
                "httpGet": {"path": "/healthz/ready", "port": 15021},
                "initialDelaySeconds": (probe_int(r, READINESS_INITIAL_DELAY, Key::ReadinessInitialDelay)),
                "periodSeconds": (probe_int(r, READINESS_PERIOD, Key::ReadinessPeriod)),
                "timeoutSeconds": 3,
                "failureThreshold": (probe_int(r, READINESS_FAILURE_THRESHOLD, Key::ReadinessFailureThreshold)),
            }),
        );
        if r.helm.truthy(Key::StartupProbeEnabled) {
            let threshold = r
                .helm
                .get(Key::StartupProbeFailureThreshold)
                .and_then(Value::as_i64)
                .unwrap_or(600);
            put(
                &mut c,
                "startupProbe",
                value!({
                    "httpGet": {"path": "/healthz/ready", "port": 15021},
                    "initialDelaySeconds": 0,
                    "periodSeconds": 1,
                    "timeoutSeconds": 3,
                    "failureThreshold": threshold,
                }),
            );
        }
    }
    put(&mut c, "securityContext", proxy_security_context(r));
    if r.native {
        put(&mut c, "restartPolicy", value!("Always"));
    }
    put(&mut c, "resources", resources_of(r)?);
    put(
        &mut c,
        "volumeMounts",
        Value::Array(volumes::proxy_mounts(r)?),
    );
    Ok(Value::Object(c))
}
