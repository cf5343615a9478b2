//! `sidecar.istio.io/status`: the record of what was injected (Istio's `SidecarInjectionStatus`,
//! `json.Marshal`led), so that a later injection can strip it again.

use crate::json::Path;
use serde_json::Value;

use crate::go::json::{write_string, write_value};
use crate::schema::Ty;

/// Append the names of the `name`d items of `spec[field]` of the template pod as a JSON
/// list, or `null` when there are none.
fn write_names(out: &mut String, template: &Value, field: &str) {
    let items = template.at(&["spec", field]).and_then(Value::as_array);
    let mut names = items.into_iter().flatten().filter_map(|i| i.get("name"));
    let Some(first) = names.next() else {
        out.push_str("null");
        return;
    };
    out.push('[');
    write_value(out, first, &Ty::Any);
    for name in names {
        out.push(',');
        write_value(out, name, &Ty::Any);
    }
    out.push(']');
}

/// `sidecar.istio.io/status`: what the template injected, so that it can be stripped again.
/// Written straight to text (through `format!` and `Value`'s `Display` it was 3 % of a
/// request).
pub fn status_annotation(template: &Value, revision: &str) -> String {
    let rev = if revision.is_empty() {
        "default"
    } else {
        revision
    };
    let mut out = String::with_capacity(192);
    for (i, field) in [
        "initContainers",
        "containers",
        "volumes",
        "imagePullSecrets",
    ]
    .into_iter()
    .enumerate()
    {
        out.push_str(if i == 0 { "{\"" } else { ",\"" });
        out.push_str(field);
        out.push_str("\":");
        write_names(&mut out, template, field);
    }
    out.push_str(",\"revision\":");
    write_string(&mut out, rev);
    out.push('}');
    out
}

/// Names listed under `key` in the `sidecar.istio.io/status` annotation.
pub fn status_names(status: &Value, key: &str) -> Vec<String> {
    status
        .get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
