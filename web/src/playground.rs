//! The playground's one operation: run a pod through every installed revision's policy
//! instance, with the namespace lookup answered from the given labels, exactly as
//! `revinject check` does natively (same [`admission::evaluate`], no wasm host in between).
//!
//! Input and output are JSON text so the same function serves the page and native tests.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

use crate::inputs::{self, FieldError};
use revision_injector::admission::{self, Cluster, DECISION_AUDIT_KEY};
use revision_injector::revision::{served_names, REV_LABEL};

/// What the page sends: the raw text of each field.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Request {
    /// Settings (YAML or JSON) of each installed revision.
    pub revisions: Vec<String>,
    /// Namespace name; empty: the pod's `metadata.namespace`, else `default`.
    pub namespace: String,
    pub namespace_labels: String,
    pub pod: String,
}

/// What one revision does with the pod.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    /// `asm-1240-1`, or `canary (prod)` with its tags.
    pub revision: String,
    /// The Istio version whose injector the revision reproduces (its `istioVersion`).
    pub istio_version: String,
    /// The decision's rule (webhook or skipping step), `-` when rejected before deciding.
    pub rule: String,
    pub webhook: Option<String>,
    pub injected: bool,
    /// False when the policy rejected the pod (e.g. a disallowed override annotation).
    pub allowed: bool,
    pub reason: String,
    pub warnings: Vec<String>,
    /// The injected pod as YAML, when this revision injects.
    pub injected_pod: Option<String>,
    /// RFC 6902 JSONPatch from the pod to the injected pod, as the host sends it.
    pub patch: Option<Value>,
}

/// The page's answer: field errors, or the verdicts.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    pub errors: Vec<FieldError>,
    pub namespace: String,
    /// The pod as admitted, as YAML (the left side of the diff).
    pub pod: Option<String>,
    pub revisions: Vec<Verdict>,
    pub injected_by: Vec<String>,
    /// `istio.io/rev` values no installed revision serves (Istio ignores them silently).
    pub notes: Vec<String>,
}

/// The namespace lookup, answered from the page's labels.
struct Labelled<'a> {
    labels: &'a BTreeMap<String, String>,
}

impl Cluster for Labelled<'_> {
    fn namespace(&self, name: &str) -> Result<Value, String> {
        Ok(json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": self.labels},
        }))
    }
}

/// JSON in, JSON out; never panics, and a malformed request is reported as a field error.
pub fn evaluate_json(input: &str) -> String {
    let response = match serde_json::from_str::<Request>(input) {
        Ok(request) => evaluate(&request),
        Err(e) => Response {
            errors: vec![FieldError::new(
                "input",
                format!("bad request from the page: {e}"),
            )],
            ..Response::default()
        },
    };
    serde_json::to_string(&response).unwrap_or_else(|e| {
        json!({"errors": [{"field": "input", "message": format!("cannot encode the answer: {e}")}]})
            .to_string()
    })
}

/// Parse every field (collecting all errors), then evaluate the pod once per revision.
pub fn evaluate(request: &Request) -> Response {
    let mut errors = Vec::new();
    let mut installed = Vec::new();
    if request.revisions.is_empty() {
        errors.push(FieldError::new(
            "revisions",
            "install at least one revision",
        ));
    }
    for (i, text) in request.revisions.iter().enumerate() {
        match inputs::settings(&format!("revisions[{i}]"), text) {
            Ok(s) => installed.push(s),
            Err(e) => errors.push(e),
        }
    }
    let ns_name = inputs::namespace("namespace", &request.namespace).map_err(|e| errors.push(e));
    let labels =
        inputs::labels("namespaceLabels", &request.namespace_labels).map_err(|e| errors.push(e));
    let pod = inputs::pod("pod", &request.pod).map_err(|e| errors.push(e));
    let (Ok(ns_name), Ok(labels), Ok(mut pod)) = (ns_name, labels, pod) else {
        return Response {
            errors,
            ..Response::default()
        };
    };
    if !errors.is_empty() {
        return Response {
            errors,
            ..Response::default()
        };
    }

    let namespace = ns_name
        .or_else(|| {
            pod.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "default".to_string());
    if let Some(meta) = pod.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("namespace".into(), json!(namespace));
    }
    let request = admission_request(&namespace, &pod);
    let cluster = Labelled { labels: &labels };
    let revisions: Vec<Verdict> = installed
        .iter()
        .map(|(_, settings)| {
            let outcome = admission::evaluate(&request, settings, &cluster);
            let mut v = verdict(&display_name(settings), &pod, &outcome);
            v.istio_version = settings.istio_version.to_string();
            v
        })
        .collect();
    let injected_by: Vec<String> = revisions
        .iter()
        .filter(|v| v.injected)
        .map(|v| v.revision.clone())
        .collect();
    let notes = if injected_by.is_empty() {
        unserved(&installed, &labels, &pod)
    } else {
        Vec::new()
    };
    Response {
        errors,
        namespace,
        pod: serde_norway::to_string(&pod).ok(),
        revisions,
        injected_by,
        notes,
    }
}

/// A CREATE AdmissionRequest for `pod`, as the API server sends it.
fn admission_request(namespace: &str, pod: &Value) -> Value {
    json!({
        "uid": "playground",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "operation": "CREATE",
        "namespace": namespace,
        "userInfo": {"username": "playground"},
        "object": pod,
    })
}

/// `canary (prod)`: the revision, then the tags it serves.
fn display_name(settings: &revision_injector::settings::Settings) -> String {
    match served_names(settings).split_first() {
        Some((rev, tags)) if !tags.is_empty() => format!("{rev} ({})", tags.join(", ")),
        _ => settings.revision_name().to_string(),
    }
}

fn verdict(revision: &str, pod: &Value, outcome: &admission::Outcome) -> Verdict {
    let decision: Value = outcome
        .audit_annotations
        .get(DECISION_AUDIT_KEY)
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or(Value::Null);
    let text = |k: &str| decision.get(k).and_then(Value::as_str).map(str::to_string);
    let decided = decision.get("inject").and_then(Value::as_bool) == Some(true);
    let injected = outcome.accepted && decided;
    let reason = match (outcome.accepted, text("reason")) {
        (false, _) => format!(
            "rejected: {}",
            outcome.message.as_deref().unwrap_or("no message")
        ),
        (true, Some(r)) => r,
        (true, None) => "admitted without a decision".to_string(),
    };
    let mutated = outcome.mutated_object.as_ref().filter(|_| injected);
    Verdict {
        revision: revision.to_string(),
        istio_version: String::new(),
        rule: text("rule").unwrap_or_else(|| "-".to_string()),
        webhook: text("webhook"),
        injected,
        allowed: outcome.accepted,
        reason,
        warnings: outcome.warnings.clone(),
        injected_pod: mutated.and_then(|m| serde_norway::to_string(m).ok()),
        patch: mutated.and_then(|m| serde_json::to_value(json_patch::diff(pod, m)).ok()),
    }
}

/// The namespace's and the pod's `istio.io/rev` values that no installed revision serves.
fn unserved(
    installed: &[(Value, revision_injector::settings::Settings)],
    ns_labels: &BTreeMap<String, String>,
    pod: &Value,
) -> Vec<String> {
    let served = |name: &str| {
        installed
            .iter()
            .any(|(_, s)| served_names(s).iter().any(|n| n == name))
    };
    let pod_labels = revision_injector::json::labels_of(pod);
    [("namespace", ns_labels), ("pod", &pod_labels)]
        .into_iter()
        .filter_map(|(what, labels)| {
            let rev = labels.get(REV_LABEL).filter(|r| !served(r))?;
            Some(format!(
                "no installed revision serves the {what} label {REV_LABEL}={rev}"
            ))
        })
        .collect()
}

#[cfg(test)]
#[path = "playground_tests.rs"]
mod tests;
