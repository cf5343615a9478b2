//! The settings read from JSON by hand, with the messages serde's derived `Deserialize` gives.
//!
//! Settings arrive with every request, so they are read on every call; the derived visitors
//! (and through serde_json's errors, core's float formatting) were ~45 KB of policy.wasm. The
//! rules are the derive's: unknown keys are refused (`deny_unknown_fields`), missing keys take
//! their defaults, `null` is not a missing key, the first error in key order wins. One
//! difference, on purpose: a struct written as a JSON array (serde's sequence form, fields by
//! position) is refused here rather than accepted. The tests compare both readers on
//! generated settings.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

use super::{InjectPolicy, LookupFailure, Settings};
use crate::json::unexpected::{invalid_type, one_of};
use crate::selector::{LabelSelector, Operator, Requirement};

type Result<T> = std::result::Result<T, String>;

const SETTINGS_FIELDS: &[&str] = &[
    "revision",
    "tags",
    "defaultRevision",
    "enableNamespacesByDefault",
    "policy",
    "neverInjectSelector",
    "alwaysInjectSelector",
    "ignoredNamespaces",
    "istioNamespace",
    "namespaceLookupFailure",
    "nativeSidecars",
    "values",
    "meshConfig",
    "allowedOverrideAnnotations",
];

/// `Settings` from a map of its camelCase fields.
pub fn settings(v: &Value) -> Result<Settings> {
    let mut s = Settings::default();
    for (key, value) in object(v, "struct Settings")? {
        match key.as_str() {
            "revision" => s.revision = string(value)?,
            "tags" => s.tags = strings(value)?,
            "defaultRevision" => s.default_revision = boolean(value)?,
            "enableNamespacesByDefault" => s.enable_namespaces_by_default = boolean(value)?,
            "policy" => s.policy = inject_policy(value)?,
            "neverInjectSelector" => s.never_inject_selector = selectors(value)?,
            "alwaysInjectSelector" => s.always_inject_selector = selectors(value)?,
            "ignoredNamespaces" => s.ignored_namespaces = strings(value)?,
            "istioNamespace" => s.istio_namespace = string(value)?,
            "namespaceLookupFailure" => {
                s.namespace_lookup_failure = variant(
                    value,
                    &[
                        ("reject", LookupFailure::Reject),
                        ("skip", LookupFailure::Skip),
                    ],
                )?
            }
            "nativeSidecars" => s.native_sidecars = boolean(value)?,
            "values" => s.values = value.clone(),
            "meshConfig" => s.mesh_config = value.clone(),
            "allowedOverrideAnnotations" => {
                s.allowed_override_annotations = match value {
                    Value::Null => None,
                    v => Some(strings(v)?),
                }
            }
            other => return Err(unknown_field(other, SETTINGS_FIELDS)),
        }
    }
    Ok(s)
}

/// `enabled` or `disabled`.
pub fn inject_policy(v: &Value) -> Result<InjectPolicy> {
    variant(
        v,
        &[
            ("enabled", InjectPolicy::Enabled),
            ("disabled", InjectPolicy::Disabled),
        ],
    )
}

/// A list of label selectors.
pub fn selectors(v: &Value) -> Result<Vec<LabelSelector>> {
    list(v, selector)
}

fn selector(v: &Value) -> Result<LabelSelector> {
    let mut s = LabelSelector::default();
    for (key, value) in object(v, "struct LabelSelector")? {
        match key.as_str() {
            "matchLabels" => {
                let mut labels = BTreeMap::new();
                for (k, v) in object(value, "a map")? {
                    labels.insert(k.clone(), string(v)?);
                }
                s.match_labels = labels;
            }
            "matchExpressions" => s.match_expressions = list(value, requirement)?,
            other => return Err(unknown_field(other, &["matchLabels", "matchExpressions"])),
        }
    }
    Ok(s)
}

fn requirement(v: &Value) -> Result<Requirement> {
    const OPERATORS: &[(&str, Operator)] = &[
        ("In", Operator::In),
        ("NotIn", Operator::NotIn),
        ("Exists", Operator::Exists),
        ("DoesNotExist", Operator::DoesNotExist),
    ];
    let (mut key, mut operator, mut values) = (None, None, Vec::new());
    for (name, value) in object(v, "struct Requirement")? {
        match name.as_str() {
            "key" => key = Some(string(value)?),
            "operator" => operator = Some(variant(value, OPERATORS)?),
            "values" => values = strings(value)?,
            other => return Err(unknown_field(other, &["key", "operator", "values"])),
        }
    }
    let key = key.ok_or("missing field `key`")?;
    let operator = operator.ok_or("missing field `operator`")?;
    Ok(Requirement {
        key,
        operator,
        values,
    })
}

fn object<'a>(v: &'a Value, expected: &str) -> Result<&'a Map<String, Value>> {
    v.as_object().ok_or_else(|| invalid_type(v, expected))
}

fn array(v: &Value) -> Result<&Vec<Value>> {
    v.as_array().ok_or_else(|| invalid_type(v, "a sequence"))
}

fn string(v: &Value) -> Result<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        _ => Err(invalid_type(v, "a string")),
    }
}

fn strings(v: &Value) -> Result<Vec<String>> {
    list(v, string)
}

/// Each item of a sequence read by `item`, the first error returned. A loop, not
/// `collect::<Result<_>>()`, whose adapter is ~3 KB of policy.wasm per item type.
fn list<T>(v: &Value, item: fn(&Value) -> Result<T>) -> Result<Vec<T>> {
    let items = array(v)?;
    let mut out = Vec::with_capacity(items.len());
    for i in items {
        out.push(item(i)?);
    }
    Ok(out)
}

fn boolean(v: &Value) -> Result<bool> {
    v.as_bool().ok_or_else(|| invalid_type(v, "a boolean"))
}

/// A unit enum variant, spelled as a string. serde_json also takes `{"name": null}`; nobody
/// writes that, and it is refused here as not a string.
fn variant<T: Copy>(v: &Value, variants: &[(&str, T)]) -> Result<T> {
    let name = match v {
        Value::String(name) => name,
        Value::Object(_) => return Err(invalid_type(v, "a string")),
        _ => return Err(invalid_type(v, "string or map")),
    };
    match variants.iter().find(|(n, _)| n == name) {
        Some((_, value)) => Ok(*value),
        None => {
            let names: Vec<&str> = variants.iter().map(|(n, _)| *n).collect();
            Err(format!(
                "unknown variant `{name}`, expected {}",
                one_of(&names)
            ))
        }
    }
}

fn unknown_field(name: &str, fields: &[&str]) -> String {
    format!("unknown field `{name}`, expected {}", one_of(fields))
}

#[cfg(test)]
mod tests;
