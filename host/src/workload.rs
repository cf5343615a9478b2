//! From a manifest file to the Pods and AdmissionRequests Istio's webhook test builds
//! (`splitYamlFile`, `objectToPod`, `simulateOwnerRef`, `runWebhook`), as the conformance
//! suite's README ("From an input file to AdmissionRequests") describes.
//!
//! This file is self-contained (serde_json, serde_norway, anyhow) so the integration tests can
//! include it.

use anyhow::{anyhow, bail, Context as _};
use serde_json::{json, Map, Value};

/// Kinds whose documents become a request; every other document is skipped.
pub const WORKLOAD_KINDS: [&str; 9] = [
    "Deployment",
    "DeploymentConfig",
    "DaemonSet",
    "StatefulSet",
    "Job",
    "ReplicaSet",
    "ReplicationController",
    "CronJob",
    "Pod",
];

/// The namespace a request without one is sent with, as the API server would.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Split a manifest on `"\n---"`, parse each part and keep the workload documents, in order.
pub fn workload_documents(text: &str) -> anyhow::Result<Vec<Value>> {
    let mut documents = Vec::new();
    for (index, part) in text.split("\n---").enumerate() {
        let document: Value = serde_norway::from_str(part)
            .with_context(|| format!("document {} is not valid YAML", index + 1))?;
        if document.is_null() {
            continue;
        }
        let kind = document.get("kind").and_then(Value::as_str).unwrap_or("");
        if kind == "List" {
            bail!(
                "document {} is a List, which this suite does not use",
                index + 1
            );
        }
        if WORKLOAD_KINDS.contains(&kind) {
            documents.push(document);
        }
    }
    Ok(documents)
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn required_str<'a>(doc: &'a Value, pointer: &str, kind: &str) -> anyhow::Result<&'a str> {
    str_at(doc, pointer)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| anyhow!("the {kind} has no `{}`", pointer.replace('/', ".")))
}

/// The Pod a workload document stands for. Converted workloads get `generateName` and a
/// controller ownerReference like Istio's test (a Deployment through a fake ReplicaSet with
/// `pod-template-hash: fake`), and `apiVersion: v1`/`kind: Pod` like a real request.
pub fn to_pod(doc: &Value) -> anyhow::Result<Value> {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind == "Pod" {
        return Ok(doc.clone());
    }
    if !WORKLOAD_KINDS.contains(&kind) {
        bail!("a {kind:?} document cannot be turned into a Pod");
    }
    let name = required_str(doc, "/metadata/name", kind)?;
    let api_version = required_str(doc, "/apiVersion", kind)?;
    let template_pointer = if kind == "CronJob" {
        "/spec/jobTemplate/spec/template"
    } else {
        "/spec/template"
    };
    let template = doc
        .pointer(template_pointer)
        .and_then(Value::as_object)
        .ok_or_else(|| {
            anyhow!(
                "the {kind} {name:?} has no pod template at `{}`",
                template_pointer.replace('/', ".")
            )
        })?;

    let mut pod = Map::new();
    pod.insert("apiVersion".into(), json!("v1"));
    pod.insert("kind".into(), json!("Pod"));
    for (key, value) in template {
        pod.insert(key.clone(), value.clone());
    }
    let metadata = pod
        .entry("metadata")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| {
            anyhow!("the {kind} {name:?} has a pod template whose metadata is not a map")
        })?;
    let owner = if kind == "Deployment" {
        let replica_set = format!("{name}-fake");
        metadata.insert("generateName".into(), json!(format!("{replica_set}-")));
        let labels = metadata
            .entry("labels")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .ok_or_else(|| {
                anyhow!("the {kind} {name:?} has pod template labels that are not a map")
            })?;
        labels.insert("pod-template-hash".into(), json!("fake"));
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": replica_set, "controller": true})
    } else {
        metadata.insert("generateName".into(), json!(name));
        json!({"apiVersion": api_version, "kind": kind, "name": name, "controller": true})
    };
    metadata.insert("ownerReferences".into(), json!([owner]));
    Ok(Value::Object(pod))
}

/// The request namespace for a document: its own `metadata.namespace`, else `default`.
pub fn request_namespace(doc: &Value) -> String {
    str_at(doc, "/metadata/namespace")
        .filter(|s| !s.is_empty())
        .unwrap_or(DEFAULT_NAMESPACE)
        .to_string()
}

/// A CREATE AdmissionRequest for `pod`, with what Istio's test sets (no name, no oldObject)
/// plus the fields every real request carries.
pub fn admission_request(uid: &str, namespace: &str, pod: &Value) -> Value {
    json!({
        "uid": uid,
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
        "requestResource": {"group": "", "version": "v1", "resource": "pods"},
        "operation": "CREATE",
        "namespace": namespace,
        "userInfo": {"username": "revinject-conformance"},
        "object": pod,
        "dryRun": false,
    })
}

/// The Namespace the runner answers the policy's lookup with: labelled so that `revision`
/// selects it (`istio-injection: enabled` for the default revision).
pub fn namespace_object(name: &str, revision: &str) -> Value {
    let mut labels = Map::new();
    labels.insert("kubernetes.io/metadata.name".into(), json!(name));
    if revision.is_empty() || revision == "default" {
        labels.insert("istio-injection".into(), json!("enabled"));
    } else {
        labels.insert("istio.io/rev".into(), json!(revision));
    }
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": labels},
    })
}
