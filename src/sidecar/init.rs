//! The init containers: `istio-init` (or `istio-validation` with CNI) and `enable-core-dump`.

use crate::json::{put, value};
use serde_json::{Map, Value};

use super::capture::init_args;
use super::proxy_env::env_list;
use super::resources::resources_of;
use super::{pasted_in_quotes, Render, INIT_CONTAINER, PROXY_IMAGE, VALIDATION_CONTAINER};
use crate::values::helm::Key;
use crate::values::proxy_config::proxy_metadata;
use crate::values::InjectError;
use crate::versions::Change;

/// The init containers' image: the `sidecar.istio.io/proxyImage` annotation (else
/// `global.proxy_init.image`) when it contains a `/`; else, up to 1.30, the proxy's image
/// (`.ProxyImage`), and from 1.32 `<hub>/<global.proxy_init.image>:<tag>` (R33).
fn init_image(r: &Render) -> Result<String, InjectError> {
    let name = r.ann_or_value(PROXY_IMAGE, Key::InitImage);
    if name.contains('/') {
        return pasted_in_quotes(&name, r.behaviour, PROXY_IMAGE);
    }
    Ok(if r.behaviour.has(Change::ProxyInitImage) {
        r.proxy_init_image_url()
    } else {
        r.proxy_image_url()
    })
}

/// From 1.28, a non-empty `global.proxy.seccompProfile` goes into the securityContext of the
/// init container and of the proxy (R26).
pub fn seccomp_profile<'a>(r: &Render<'a>) -> Option<&'a Value> {
    if !r.behaviour.has(Change::SeccompProfile) || !r.helm.truthy(Key::SeccompProfile) {
        return None;
    }
    r.helm.get(Key::SeccompProfile)
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
            VALIDATION_CONTAINER
        } else {
            INIT_CONTAINER
        }),
    );
    put(&mut c, "image", value!(init_image(r)?));
    put(
        &mut c,
        "args",
        value!(init_args(r.pod, r.traffic, r.behaviour)?),
    );
    r.pull_policy(&mut c);
    let metadata = proxy_metadata(r.pc());
    if !metadata.is_empty() {
        put(&mut c, "env", env_list(&metadata));
    }
    put(&mut c, "resources", resources_of(r)?);
    let mut security = if cni {
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
    if let (Some(profile), Value::Object(sc)) = (seccomp_profile(r), &mut security) {
        sc.insert("seccompProfile".into(), profile.clone());
    }
    put(&mut c, "securityContext", security);
    Ok(Value::Object(c))
}

/// `enable-core-dump`, up to 1.23, when the annotation or helm value asks for it (R05; the
/// template renders it even without interception).
pub fn core_dump_container(r: &Render) -> Result<Option<Value>, InjectError> {
    if !r.core_dump_enabled() {
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
    put(&mut c, "image", value!(init_image(r)?));
    r.pull_policy(&mut c);
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
