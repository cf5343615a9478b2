//! The `istio-proxy` container: image, args, env, probes, security context, mounts.

use crate::json::Path;
use crate::json::{put, value};
use serde_json::{Map, Value};

use super::proxy_env::proxy_env;
use super::resources::resources_of;
use super::{volumes, Render, PROXY_CONTAINER, PROXY_IMAGE, PROXY_IMAGE_TYPE};
use crate::go::fmt::sprint;
use crate::values::annotations::{
    AGENT_LOG_LEVEL, READINESS_FAILURE_THRESHOLD, READINESS_INITIAL_DELAY, READINESS_PERIOD,
};
use crate::values::helm::Key;
use crate::values::InjectError;
use crate::versions::Change;

const LOG_LEVEL: &str = "sidecar.istio.io/logLevel";
const COMPONENT_LOG_LEVEL: &str = "sidecar.istio.io/componentLogLevel";
const CAP_NET_BIND_SERVICE: &str = "sidecar.istio.io/capNetBindService";

/// `istio-proxy`'s image: the annotation or `global.proxy.image` when it is a full reference,
/// else `<hub>/<global.proxy.image>:<tag>[-<imageType>]` (`ProxyImage`).
fn proxy_image(r: &Render) -> Result<String, InjectError> {
    let name = r.ann_or_value(PROXY_IMAGE, Key::ProxyImage);
    if name.contains('/') {
        return super::pasted_in_quotes(&name, r.behaviour, PROXY_IMAGE);
    }
    Ok(r.proxy_image_url())
}

/// The proxy image type (`ProxyImage`'s): the `sidecar.istio.io/proxyImageType` annotation,
/// else the ProxyConfig's `image.imageType`, else `global.variant`. Up to 1.30 a ProxyConfig
/// `image` replaces the variant even when its `imageType` is empty; from 1.32 an empty one
/// falls back to the variant (R34).
pub(super) fn image_type(r: &Render) -> String {
    if let Some(t) = r.annotations.get(PROXY_IMAGE_TYPE) {
        return sprint(t);
    }
    let variant = || r.helm.text(Key::Variant);
    match r.pc().get("image").filter(|i| !i.is_null()) {
        None => variant(),
        Some(image) => {
            let t = image
                .get("imageType")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if t.is_empty() && r.behaviour.has(Change::ImageTypeFallback) {
                variant()
            } else {
                t.to_string()
            }
        }
    }
}

fn proxy_args(r: &Render) -> Result<Vec<Value>, InjectError> {
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
    if r.behaviour.has(Change::OutlierLogPath) && h.truthy(Key::OutlierLogPath) {
        args.push(["--outlierLogPath=", &h.text(Key::OutlierLogPath)].concat());
    }
    // Before 1.32 the three log levels are plain YAML scalars (R37).
    let plain = |i: usize, what| super::pasted_plain(&args[i], r.behaviour, what);
    let levels = [
        plain(4, LOG_LEVEL)?,
        plain(5, COMPONENT_LOG_LEVEL)?,
        plain(6, AGENT_LOG_LEVEL)?,
    ];
    let mut out: Vec<Value> = args.iter().map(|a| value!(a.as_str())).collect();
    out.splice(4..7, levels);
    Ok(out)
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
    let mut sc = proxy_security_context_fields(r);
    if let (Some(profile), Value::Object(m)) = (super::init::seccomp_profile(r), &mut sc) {
        m.insert("seccompProfile".into(), profile.clone());
    }
    sc
}

fn proxy_security_context_fields(r: &Render) -> Value {
    let privileged = r.helm.truthy(Key::Privileged);
    let read_only = !r.core_dump_enabled();
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
    put(&mut c, "name", value!(PROXY_CONTAINER));
    put(&mut c, "image", value!(proxy_image(r)?));
    put(
        &mut c,
        "ports",
        value!([{"containerPort": 15090, "protocol": "TCP", "name": "http-envoy-prom"}]),
    );
    put(&mut c, "args", Value::Array(proxy_args(r)?));
    if let Some(l) = lifecycle(r) {
        put(&mut c, "lifecycle", l);
    }
    put(&mut c, "env", Value::Array(proxy_env(r)));
    r.pull_policy(&mut c);
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

#[cfg(test)]
#[path = "proxy_tests.rs"]
mod tests;
