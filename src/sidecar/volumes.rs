//! The template's volumes and `istio-proxy`'s volume mounts, including the user volumes of
//! `sidecar.istio.io/userVolume` / `userVolumeMount`.

use crate::json::{put, value};
use serde_json::{Map, Value};

use super::Render;
use crate::values::helm::Key;
use crate::values::mesh::str_at;
use crate::values::InjectError;
use crate::versions::Change;

const USER_VOLUME: &str = "sidecar.istio.io/userVolume";
const USER_VOLUME_MOUNT: &str = "sidecar.istio.io/userVolumeMount";
const BOOTSTRAP_OVERRIDE: &str = "sidecar.istio.io/bootstrapOverride";

fn gke_certs(r: &Render) -> bool {
    r.helm.str(Key::CaName) == Some("GkeWorkloadCertificate")
}

fn istiod_certs(r: &Render) -> bool {
    r.helm.str(Key::PilotCertProvider) == Some("istiod")
}

/// Up to 1.23, `pilotCertProvider: kubernetes` mounts the cluster's root CA (R06).
fn kube_ca_cert(r: &Render) -> bool {
    !r.behaviour.has(Change::NoKubeCaCert)
        && r.helm.str(Key::PilotCertProvider) == Some("kubernetes")
}

/// A string value the template pipes through `default`: its text when truthy.
fn value_or(r: &Render, key: Key, default: &str) -> String {
    if r.helm.truthy(key) {
        r.helm.text(key)
    } else {
        default.to_string()
    }
}

/// The CRL ConfigMap: `pilot.crlConfigMapName` from 1.29 (R28), else `istio-ca-crl`.
fn crl_config_map(r: &Render) -> String {
    if r.behaviour.has(Change::CrlConfigMapName) {
        value_or(r, Key::CrlConfigMapName, "istio-ca-crl")
    } else {
        "istio-ca-crl".to_string()
    }
}

/// The `istiod-ca-cert` volume: the root-cert ConfigMap (`global.trustBundleName` from 1.27,
/// R23), or from 1.26 a projected ClusterTrustBundle when
/// `pilot.env.ENABLE_CLUSTER_TRUST_BUNDLE_API` is boolean `true` (R18). The template compares
/// with `eq … true`, which fails (and so fails the injection) for a value of another type.
fn istiod_ca_cert(r: &Render) -> Result<Value, InjectError> {
    if r.behaviour.has(Change::ClusterTrustBundle) {
        match r.helm.get(Key::ClusterTrustBundleApi) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => {}
            Some(Value::Bool(true)) => {
                let name = [
                    "istio.io:istiod-ca:",
                    &value_or(r, Key::TrustBundleName, "root-cert"),
                ]
                .concat();
                return Ok(value!({"name": "istiod-ca-cert", "projected": {"sources": [
                    {"clusterTrustBundle": {"name": name, "path": "root-cert.pem"}}
                ]}}));
            }
            Some(other) => {
                return Err(InjectError(format!(
                    "values.pilot.env.ENABLE_CLUSTER_TRUST_BUNDLE_API: the template compares it with the boolean true, and {} is not a boolean (error calling eq: incompatible types for comparison)",
                    crate::go::fmt::sprint(other)
                )))
            }
        }
    }
    let name = if r.behaviour.has(Change::TrustBundleName) {
        value_or(r, Key::TrustBundleName, "istio-ca-root-cert")
    } else {
        "istio-ca-root-cert".to_string()
    };
    Ok(value!({"name": "istiod-ca-cert", "configMap": {"name": name}}))
}

/// Entries of a JSON-map annotation (`{"<name>": {...}}`), by name, as `{"name": <name>, ...}`.
fn named_entries(r: &Render, annotation: &str) -> Result<Vec<Value>, InjectError> {
    let Some(text) = r.annotations.get(annotation) else {
        return Ok(Vec::new());
    };
    let bad = |why: &str| {
        InjectError(format!(
            "invalid value '{}' for annotation '{annotation}': {why}",
            crate::go::fmt::sprint(text)
        ))
    };
    let parsed: Value = text
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
        .ok_or_else(|| bad("not valid JSON"))?;
    let map = parsed
        .as_object()
        .ok_or_else(|| bad("must be a JSON map of names to definitions"))?;
    // In name order, as Go's sorted range over the decoded map: a `Map` iterates in key order.
    let mut entries = Vec::with_capacity(map.len());
    for (name, definition) in map {
        let Value::Object(fields) = definition else {
            return Err(bad(&format!("the definition of '{name}' must be a map")));
        };
        let mut entry = Map::new();
        put(&mut entry, "name", value!(name));
        for (k, v) in fields {
            entry.insert(k.clone(), v.clone());
        }
        entries.push(Value::Object(entry));
    }
    Ok(entries)
}

/// `istio-proxy`'s volume mounts, in template order.
pub fn proxy_mounts(r: &Render) -> Result<Vec<Value>, InjectError> {
    let mount = |name: &str, path: &str| value!({"name": name, "mountPath": path});
    let mut m = vec![
        mount("workload-socket", "/var/run/secrets/workload-spiffe-uds"),
        mount("credential-socket", "/var/run/secrets/credential-uds"),
    ];
    if gke_certs(r) {
        m.push(value!({"name": "gke-workload-certificate",
            "mountPath": "/var/run/secrets/workload-spiffe-credentials", "readOnly": true}));
    } else {
        m.push(mount(
            "workload-certs",
            "/var/run/secrets/workload-spiffe-credentials",
        ));
    }
    if istiod_certs(r) {
        m.push(mount("istiod-ca-cert", "/var/run/secrets/istio"));
        if r.behaviour.has(Change::CrlVolume) {
            m.push(mount("istio-ca-crl", "/var/run/secrets/istio/crl"));
        }
    }
    if kube_ca_cert(r) {
        m.push(mount("kube-ca-cert", "/var/run/secrets/istio/kubernetes"));
    }
    m.push(mount("istio-data", "/var/lib/istio/data"));
    if r.has(BOOTSTRAP_OVERRIDE) {
        m.push(mount(
            "custom-bootstrap-volume",
            "/etc/istio/custom-bootstrap",
        ));
    }
    m.push(mount("istio-envoy", "/etc/istio/proxy"));
    m.push(mount("istio-token", "/var/run/secrets/tokens"));
    if r.helm.truthy(Key::MountMtlsCerts) {
        m.push(value!({"name": "istio-certs", "mountPath": "/etc/certs/", "readOnly": true}));
    }
    m.push(mount("istio-podinfo", "/etc/istio/pod"));
    m.extend(named_entries(r, USER_VOLUME_MOUNT)?);
    Ok(m)
}

/// The template's volumes, in template order.
pub fn volumes(r: &Render) -> Result<Vec<Value>, InjectError> {
    let empty = |name: &str| value!({"name": name, "emptyDir": {}});
    let mut v = vec![empty("workload-socket"), empty("credential-socket")];
    if gke_certs(r) {
        v.push(value!({"name": "gke-workload-certificate",
            "csi": {"driver": "workloadcertificates.security.cloud.google.com"}}));
    } else {
        v.push(empty("workload-certs"));
    }
    if let Some(cm) = r.annotations.get(BOOTSTRAP_OVERRIDE) {
        // A plain YAML scalar before 1.32 (R37).
        let cm = super::pasted_plain(&crate::go::fmt::sprint(cm), r.behaviour, BOOTSTRAP_OVERRIDE)?;
        v.push(value!({"name": "custom-bootstrap-volume", "configMap": {"name": cm}}));
    }
    v.push(value!({"name": "istio-envoy", "emptyDir": {"medium": "Memory"}}));
    v.push(empty("istio-data"));
    v.push(value!({"name": "istio-podinfo", "downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
    ]}}));
    let audience = r.helm.str(Key::SdsAudience).unwrap_or("istio-ca");
    v.push(
        value!({"name": "istio-token", "projected": {"sources": [{"serviceAccountToken": {
        "path": "istio-token", "expirationSeconds": 43200, "audience": audience}}]}}),
    );
    if istiod_certs(r) {
        v.push(istiod_ca_cert(r)?);
    }
    if kube_ca_cert(r) {
        v.push(value!({"name": "kube-ca-cert", "configMap": {"name": "kube-root-ca.crt"}}));
    }
    // Outside the `istiod` condition: every certificate provider gets the volume (R22).
    if r.behaviour.has(Change::CrlVolume) {
        v.push(value!({"name": "istio-ca-crl", "configMap": {"name": (crl_config_map(r)), "optional": true}}));
    }
    if r.helm.truthy(Key::MountMtlsCerts) {
        let sa = str_at(r.pod, &["spec", "serviceAccountName"])
            .filter(|s| !s.is_empty())
            .unwrap_or("default");
        v.push(value!({"name": "istio-certs", "secret": {"optional": true, "secretName": (format!("istio.{sa}"))}}));
    }
    v.extend(named_entries(r, USER_VOLUME)?);
    Ok(v)
}
