//! The answer: the whole admission decision as plain Rust, request in, outcome out (the
//! revision's decision, then the pod's injection, [`inject`]), and the settings check that
//! runs every layer's own check ([`validate_settings`]).
//!
//! The waPC glue in `lib.rs` and every native caller (tests, benchmarks) go through
//! [`evaluate`], so what runs natively is what runs in `policy.wasm`.

pub mod inject;
mod settings_check;

use crate::json::{self, labels_of, put, Path};
use serde_json::Value;
use std::collections::BTreeMap;

use crate::revision::{self, Decision};
use crate::settings::{LookupFailure, Settings};
use crate::values::annotations::SIDECAR_STATUS;

pub use settings_check::validate_settings;

/// Audit annotation carrying the selection decision (JSON), so operators and `revinject check`
/// can see which rule matched for every admitted pod.
pub const DECISION_AUDIT_KEY: &str = "revision-injector/decision";

/// Access to the cluster the policy needs: the pod's Namespace.
pub trait Cluster {
    /// Return the `v1/Namespace` object called `name`, or a description of the failure.
    fn namespace(&self, name: &str) -> Result<Value, String>;
}

/// The policy's answer, mirroring Kubewarden's `ValidationResponse`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outcome {
    pub accepted: bool,
    pub message: Option<String>,
    pub code: Option<u16>,
    pub mutated_object: Option<Value>,
    pub warnings: Vec<String>,
    pub audit_annotations: BTreeMap<String, String>,
}

impl Outcome {
    pub fn accept() -> Outcome {
        Outcome {
            accepted: true,
            ..Default::default()
        }
    }

    pub fn reject(message: impl Into<String>, code: u16) -> Outcome {
        Outcome {
            accepted: false,
            message: Some(message.into()),
            code: Some(code),
            ..Default::default()
        }
    }

    /// [`Outcome::to_validation_response`] serialized, without copying the mutated pod into
    /// a temporary `Value` first: the same bytes (keys in the same sorted order, absent
    /// fields as `null`), written with [`json::write_value`]'s faster string escaping.
    ///
    /// Kept instead of the SDK's `ValidationResponse` through `serde_json::to_vec` (same
    /// answer, the pod moved into it): that costs a fresh hello request 885,669 -> 947,078
    /// guest instructions per call (+6.9 %, `MODE=fresh scripts/guest-profile.sh hello 20`).
    pub fn validation_response_json(&self) -> serde_json::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(4096);
        out.extend_from_slice(b"{\"accepted\":");
        out.extend_from_slice(if self.accepted { b"true" } else { b"false" });
        out.extend_from_slice(b",\"audit_annotations\":");
        if self.audit_annotations.is_empty() {
            out.extend_from_slice(b"null");
        } else {
            out.push(b'{');
            for (i, (key, value)) in self.audit_annotations.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json::write_str(&mut out, key);
                out.push(b':');
                json::write_str(&mut out, value);
            }
            out.push(b'}');
        }
        out.extend_from_slice(b",\"code\":");
        match self.code {
            Some(code) => out.extend_from_slice(code.to_string().as_bytes()),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"message\":");
        match &self.message {
            Some(message) => json::write_str(&mut out, message),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"mutated_object\":");
        match &self.mutated_object {
            Some(pod) => json::write_value(&mut out, pod)?,
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"warnings\":");
        if self.warnings.is_empty() {
            out.extend_from_slice(b"null");
        } else {
            out.push(b'[');
            for (i, warning) in self.warnings.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json::write_str(&mut out, warning);
            }
            out.push(b']');
        }
        out.push(b'}');
        Ok(out)
    }

    /// The response Kubewarden's SDK would serialize (`ValidationResponse`).
    pub fn to_validation_response(&self) -> Value {
        let mut out = serde_json::Map::new();
        put(&mut out, "accepted", Value::Bool(self.accepted));
        put(
            &mut out,
            "message",
            self.message.clone().map_or(Value::Null, Value::String),
        );
        put(&mut out, "code", self.code.map_or(Value::Null, Value::from));
        put(
            &mut out,
            "mutated_object",
            self.mutated_object.clone().unwrap_or(Value::Null),
        );
        put(
            &mut out,
            "audit_annotations",
            if self.audit_annotations.is_empty() {
                Value::Null
            } else {
                serde_json::to_value(&self.audit_annotations).unwrap_or(Value::Null)
            },
        );
        put(
            &mut out,
            "warnings",
            if self.warnings.is_empty() {
                Value::Null
            } else {
                Value::from(self.warnings.clone())
            },
        );
        Value::Object(out)
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

/// Evaluate one AdmissionRequest (the `request` of an AdmissionReview) with `settings`.
pub fn evaluate(request: &Value, settings: &Settings, cluster: &dyn Cluster) -> Outcome {
    let (namespace, outcome) = match select(request, settings, cluster) {
        Ok(selected) => selected,
        Err(done) => return done,
    };
    let Some(pod) = request.get("object") else {
        return outcome;
    };
    let ctx = inject::Context {
        settings,
        namespace: &namespace,
    };
    finish(outcome, inject::inject(pod, &ctx), |m| m != pod)
}

/// [`evaluate`] of a request the caller hands over (the waPC glue): the pod moves into the
/// injected output instead of being copied. Same answer, byte for byte.
pub fn evaluate_owned(mut request: Value, settings: &Settings, cluster: &dyn Cluster) -> Outcome {
    let (namespace, outcome) = match select(&request, settings, cluster) {
        Ok(selected) => selected,
        Err(done) => return done,
    };
    let Some(pod) = request.get_mut("object").map(Value::take) else {
        return outcome;
    };
    // Injection always writes the status annotation, so only a pod that already carries
    // one can come out unchanged: only that pod is kept to compare.
    let previous = pod
        .at(&["metadata", "annotations", SIDECAR_STATUS])
        .is_some()
        .then(|| pod.clone());
    let ctx = inject::Context {
        settings,
        namespace: &namespace,
    };
    finish(outcome, inject::inject_owned(pod, &ctx), |m| {
        previous.as_ref().is_none_or(|p| m != p)
    })
}

/// The injection's result in the outcome; `changed` tells whether it differs from the pod.
fn finish(
    mut outcome: Outcome,
    injected: Result<Value, inject::InjectError>,
    changed: impl FnOnce(&Value) -> bool,
) -> Outcome {
    match injected {
        Ok(mutated) => {
            if changed(&mutated) {
                outcome.mutated_object = Some(mutated);
            }
            outcome
        }
        Err(e) => Outcome {
            warnings: outcome.warnings,
            ..Outcome::reject(e.0, 400)
        },
    }
}

/// Everything before injection: the request's checks, the namespace lookup and the revision
/// decision. `Ok` carries the pod's namespace and the accepting outcome (decision audit
/// annotation, warnings) of a pod to inject; `Err` is the final answer for any other.
fn select(
    request: &Value,
    settings: &Settings,
    cluster: &dyn Cluster,
) -> Result<(String, Outcome), Outcome> {
    if !request.is_object() {
        return Err(Outcome::reject(
            "the admission request is not a JSON object",
            400,
        ));
    }
    match request.get("operation").and_then(Value::as_str) {
        Some("CREATE") => {}
        Some(_) => return Err(Outcome::accept()),
        None => {
            return Err(Outcome::reject(
                "the admission request has no `operation`",
                400,
            ))
        }
    }
    let kind = str_at(request, &["kind", "kind"]).unwrap_or("");
    let group = str_at(request, &["kind", "group"]).unwrap_or("");
    if kind != "Pod" || !group.is_empty() {
        let shown = if kind.is_empty() { "nothing" } else { kind };
        return Err(Outcome::reject(
            format!("this policy only admits core v1 Pods, the request is for {shown}"),
            400,
        ));
    }
    let Some(pod) = request.get("object").filter(|o| !o.is_null()) else {
        return Err(Outcome::reject(
            "the admission request has no `object` (the Pod)",
            400,
        ));
    };
    if !pod.is_object() {
        return Err(Outcome::reject(
            "the admission request's `object` is not a JSON object",
            400,
        ));
    }
    if let Err(e) = crate::schema::check_pod(pod) {
        return Err(Outcome::reject(
            format!("the Pod does not match the v1 Pod schema: {e}"),
            400,
        ));
    }

    let namespace = str_at(pod, &["metadata", "namespace"])
        .filter(|s| !s.is_empty())
        .or_else(|| str_at(request, &["namespace"]).filter(|s| !s.is_empty()))
        .unwrap_or("default");

    let namespace_labels = match cluster
        .namespace(namespace)
        .and_then(|ns| namespace_labels(&ns))
    {
        Ok(labels) => labels,
        Err(e) => {
            let message =
                format!("cannot read Namespace \"{namespace}\" to select a revision: {e}");
            return Err(match settings.namespace_lookup_failure {
                LookupFailure::Reject => Outcome::reject(message, 500),
                LookupFailure::Skip => Outcome {
                    warnings: vec![format!("{message}; pod admitted without injection")],
                    ..Outcome::accept()
                },
            });
        }
    };

    let decision = revision::decide(settings, namespace, &namespace_labels, pod);
    let mut outcome = Outcome::accept();
    outcome.warnings = decision.warnings.clone();
    outcome
        .audit_annotations
        .insert(DECISION_AUDIT_KEY.into(), decision_json(&decision));
    if !decision.inject {
        return Err(outcome);
    }
    Ok((namespace.to_string(), outcome))
}

fn decision_json(decision: &Decision) -> String {
    serde_json::to_string(decision).unwrap_or_default()
}

/// The labels of the Namespace the cluster answered; a malformed answer is a lookup failure
/// (it follows `namespaceLookupFailure`) rather than an unlabelled namespace.
fn namespace_labels(ns: &Value) -> Result<BTreeMap<String, String>, String> {
    let malformed = |what: &str| Err(format!("the Namespace answer is malformed: {what}"));
    if !ns.is_object() {
        return malformed("not a JSON object");
    }
    match ns.get("metadata") {
        None => {}
        Some(m) if m.is_object() => {}
        Some(_) => return malformed("metadata is not an object"),
    }
    match ns.at(&["metadata", "labels"]) {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) if m.values().all(Value::is_string) => {}
        Some(_) => return malformed("metadata.labels is not a map of strings"),
    }
    Ok(labels_of(ns))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn validation_response_json_is_the_serialized_validation_response() {
        let mut full = Outcome::accept();
        full.mutated_object =
            Some(json!({"metadata": {"name": "p"}, "spec": {"x": [1, "\u{e9}"]}}));
        full.warnings = vec!["w1".into(), "w\"2".into()];
        full.audit_annotations
            .insert(DECISION_AUDIT_KEY.into(), "{\"inject\":true}".into());
        let odd = Outcome::reject("a \"quoted\"\tmessage\n\u{1}: é", 500);
        for outcome in [
            Outcome::accept(),
            Outcome::reject("no <way>", 400),
            odd,
            full,
        ] {
            let expected = serde_json::to_vec(&outcome.to_validation_response()).unwrap();
            assert_eq!(outcome.validation_response_json().unwrap(), expected);
        }
    }
}
