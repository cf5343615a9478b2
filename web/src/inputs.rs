//! Parsing the page's text fields. Every error names the field it belongs to, so the page can
//! show it next to that field.

use serde_json::{json, Value};
use std::collections::BTreeMap;

use revision_injector::selector::{validate_dns_label, validate_key, validate_value};
use revision_injector::settings::Settings;

/// An input error, shown next to `field` (`revisions[0]`, `namespace`, `namespaceLabels`, `pod`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// YAML (or JSON, which YAML reads too) into a JSON value.
fn parse_yaml(field: &str, text: &str) -> Result<Value, FieldError> {
    serde_norway::from_str::<Value>(text)
        .map_err(|e| FieldError::new(field, format!("not valid YAML: {e}")))
}

/// One installed revision's settings, parsed and validated like `validate_settings` does.
/// An empty text is all defaults (the default revision), as with `kwctl run`.
pub fn settings(field: &str, text: &str) -> Result<(Value, Settings), FieldError> {
    let value = match parse_yaml(field, text)? {
        Value::Null => json!({}),
        v @ Value::Object(_) => v,
        _ => return Err(FieldError::new(field, "settings must be a map of keys")),
    };
    let parsed = Settings::from_value(&value).map_err(|e| FieldError::new(field, e))?;
    revision_injector::admission::validate_settings(&parsed)
        .map_err(|e| FieldError::new(field, format!("invalid settings: {e}")))?;
    Ok((value, parsed))
}

/// Namespace labels: a YAML map (`istio.io/rev: canary`) or `k=v` pairs separated by commas or
/// new lines (`istio.io/rev=canary`), as `revinject check --namespace-labels` takes them.
pub fn labels(field: &str, text: &str) -> Result<BTreeMap<String, String>, FieldError> {
    let mut out = BTreeMap::new();
    let pairs: Vec<(String, String)> = match serde_norway::from_str::<Value>(text) {
        Ok(Value::Null) => Vec::new(),
        Ok(Value::Object(map)) => map
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k, s)),
                Value::Bool(_) | Value::Number(_) => Err(FieldError::new(
                    field,
                    format!("label {k:?}: the value {v} must be quoted (labels are strings)"),
                )),
                _ => Err(FieldError::new(
                    field,
                    format!("label {k:?}: the value must be a string"),
                )),
            })
            .collect::<Result<_, _>>()?,
        _ => text
            .split([',', '\n'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|item| {
                item.split_once('=')
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .ok_or_else(|| {
                        FieldError::new(
                            field,
                            format!("{item:?} is neither key=value nor a YAML map entry"),
                        )
                    })
            })
            .collect::<Result<_, _>>()?,
    };
    for (k, v) in pairs {
        validate_key(&k).map_err(|e| FieldError::new(field, format!("label key {k:?}: {e}")))?;
        validate_value(&v)
            .map_err(|e| FieldError::new(field, format!("label {k:?} value {v:?}: {e}")))?;
        out.insert(k, v);
    }
    Ok(out)
}

/// A namespace name (empty: none given).
pub fn namespace(field: &str, text: &str) -> Result<Option<String>, FieldError> {
    let name = text.trim();
    if name.is_empty() {
        return Ok(None);
    }
    validate_dns_label(name).map_err(|e| FieldError::new(field, format!("{name:?}: {e}")))?;
    Ok(Some(name.to_string()))
}

/// The pod: a Pod manifest, or a workload (Deployment, StatefulSet, DaemonSet, ReplicaSet,
/// Job, CronJob) whose pod template is what the API server would admit.
pub fn pod(field: &str, text: &str) -> Result<Value, FieldError> {
    let doc = parse_yaml(field, text)?;
    if !doc.is_object() {
        return Err(FieldError::new(
            field,
            "expected a Pod manifest (a YAML map)",
        ));
    }
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("Pod");
    let template = match kind {
        "Pod" => return Ok(doc),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => "/spec/template",
        "CronJob" => "/spec/jobTemplate/spec/template",
        other => {
            return Err(FieldError::new(
                field,
                format!("kind {other:?}: expected a Pod or a workload with a pod template"),
            ))
        }
    };
    let mut pod = match doc.pointer(template) {
        Some(Value::Object(t)) => t.clone(),
        _ => {
            return Err(FieldError::new(
                field,
                format!(
                    "the {kind} has no pod template at {}",
                    template.replace('/', ".")
                ),
            ))
        }
    };
    pod.insert("apiVersion".into(), json!("v1"));
    pod.insert("kind".into(), json!("Pod"));
    if let (Some(ns), Some(Value::Object(meta))) = (
        doc.pointer("/metadata/namespace").cloned(),
        pod.get_mut("metadata"),
    ) {
        meta.entry("namespace").or_insert(ns);
    }
    Ok(Value::Object(pod))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_accept_yaml_maps_and_pairs() {
        let want = BTreeMap::from([
            ("istio.io/rev".to_string(), "canary".to_string()),
            ("team".to_string(), "shop".to_string()),
        ]);
        assert_eq!(
            labels("l", "istio.io/rev: canary\nteam: shop").unwrap(),
            want
        );
        assert_eq!(labels("l", "istio.io/rev=canary, team=shop").unwrap(), want);
        assert_eq!(
            labels("l", "istio.io/rev=canary\nteam=shop\n").unwrap(),
            want
        );
        assert!(labels("l", "").unwrap().is_empty());
    }

    #[test]
    fn bad_labels_name_the_field_and_the_label() {
        let e = labels("namespaceLabels", "istio-injection: true").unwrap_err();
        assert_eq!(e.field, "namespaceLabels");
        assert!(e.message.contains("quoted"), "{}", e.message);
        assert!(labels("l", "novalue")
            .unwrap_err()
            .message
            .contains("novalue"));
        assert!(labels("l", "bad key=1")
            .unwrap_err()
            .message
            .contains("bad key"));
    }

    #[test]
    fn settings_are_validated_with_the_policy_rules() {
        let (value, s) = settings("revisions[0]", "revision: asm-1240-1").unwrap();
        assert_eq!(value, json!({"revision": "asm-1240-1"}));
        assert_eq!(s.revision_name(), "asm-1240-1");
        let e = settings("revisions[1]", "revison: typo").unwrap_err();
        assert_eq!(e.field, "revisions[1]");
        assert!(e.message.contains("revison"), "{}", e.message);
        assert!(settings("r", "revision: Bad_Name").is_err());
        assert!(settings("r", "revision: [unclosed")
            .unwrap_err()
            .message
            .contains("YAML"));
        assert_eq!(settings("r", "").unwrap().1.revision_name(), "default");
    }

    #[test]
    fn workloads_become_their_pod_template() {
        let p = pod(
            "pod",
            "kind: Deployment\nmetadata: {name: web, namespace: shop}\nspec:\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: nginx}]}",
        )
        .unwrap();
        assert_eq!(p["kind"], "Pod");
        assert_eq!(p.pointer("/metadata/namespace"), Some(&json!("shop")));
        assert_eq!(p.pointer("/spec/containers/0/name"), Some(&json!("web")));
        let e = pod("pod", "kind: Service\nmetadata: {name: x}").unwrap_err();
        assert!(e.message.contains("Service"), "{}", e.message);
        assert!(pod("pod", "- a list").is_err());
        assert!(pod("pod", "kind: Deployment\nspec: {}")
            .unwrap_err()
            .message
            .contains("template"));
    }
}
