//! Kubernetes object metadata read from JSON: the lookups selection and injection share.

use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;

use super::Path;

/// `metadata.labels` of an object, string values only.
pub fn labels_of(object: &Value) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let entries = object
        .at(&["metadata", "labels"])
        .and_then(Value::as_object);
    for (k, v) in entries.into_iter().flatten() {
        if let Some(v) = v.as_str() {
            labels.insert(k.clone(), v.to_string());
        }
    }
    labels
}

/// `metadata.<field>` of an object as a map (empty when absent), borrowed.
pub fn meta_map<'a>(object: &'a Value, field: &str) -> Cow<'a, Map<String, Value>> {
    match object
        .get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_object)
    {
        Some(map) => Cow::Borrowed(map),
        None => Cow::Owned(Map::new()),
    }
}
