//! Kubernetes strategic merge of a (partial) pod onto a pod, as JSON, the way Istio overlays its
//! rendered template and user container overrides (`strategicpatch.StrategicMergePatch`).
//!
//! Maps merge recursively and `null` deletes a key. Lists with a patch merge key (containers by
//! name, env by name, volumes by name, ports by containerPort, ...) merge item by item; other
//! lists are replaced. The order of a merged list follows the apiserver's
//! `normalizeElementOrder`: patch items in patch order, server-only items interleaved where the
//! original list had them.

use serde_json::{Map, Value};

/// What kind of object a JSON map is, which decides the merge keys of its list fields.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Pod,
    Meta,
    Spec,
    Container,
    Other,
}

impl Kind {
    /// The kind of the value found under `field`.
    fn child(self, field: &str) -> Kind {
        match (self, field) {
            (Kind::Pod, "metadata") => Kind::Meta,
            (Kind::Pod, "spec") => Kind::Spec,
            (Kind::Spec, "containers" | "initContainers" | "ephemeralContainers") => {
                Kind::Container
            }
            _ => Kind::Other,
        }
    }

    /// The patch merge key of the list under `field`, if it is merged rather than replaced.
    fn merge_key(self, field: &str) -> Option<&'static str> {
        match (self, field) {
            (Kind::Spec, "containers" | "initContainers" | "ephemeralContainers") => Some("name"),
            (Kind::Spec, "volumes" | "imagePullSecrets" | "resourceClaims") => Some("name"),
            (Kind::Spec, "hostAliases") => Some("ip"),
            (Kind::Spec, "topologySpreadConstraints") => Some("topologyKey"),
            (Kind::Container, "env") => Some("name"),
            (Kind::Container, "ports") => Some("containerPort"),
            (Kind::Container, "volumeMounts") => Some("mountPath"),
            (Kind::Container, "volumeDevices") => Some("devicePath"),
            (Kind::Container, "resizePolicy") => Some("resourceName"),
            (Kind::Meta, "ownerReferences") => Some("uid"),
            _ => None,
        }
    }
}

/// Merge `patch` onto `target`, both of kind `kind`.
pub fn merge(target: &mut Value, patch: &Value, kind: Kind) {
    let (Some(t), Some(p)) = (target.as_object_mut(), patch.as_object()) else {
        *target = patch.clone();
        return;
    };
    for (k, pv) in p {
        if pv.is_null() {
            t.remove(k);
            continue;
        }
        let child = kind.child(k);
        match (t.get_mut(k), pv) {
            (Some(tv @ Value::Object(_)), Value::Object(_)) => merge(tv, pv, child),
            (Some(Value::Array(tl)), Value::Array(pl)) => match kind.merge_key(k) {
                Some(key) => {
                    let merged = merge_list(tl, pl, key, child);
                    *tl = merged;
                }
                None => *tl = pl.clone(),
            },
            _ => {
                t.insert(k.clone(), without_nulls(pv));
            }
        }
    }
}

/// A copy of a patch value as stored when nothing is there to merge with.
fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

fn key_of<'a>(item: &'a Value, key: &str) -> Option<&'a Value> {
    item.get(key)
}

fn index_of(list: &[Value], item: &Value, key: &str) -> Option<usize> {
    let k = key_of(item, key)?;
    list.iter().position(|i| key_of(i, key) == Some(k))
}

/// Merge two lists keyed by `key`, ordered like the apiserver does.
fn merge_list(original: &[Value], patch: &[Value], key: &str, kind: Kind) -> Vec<Value> {
    // Server-only items keep their original order; patch items (merged with their original
    // counterpart when there is one) follow the patch order.
    let mut server_only = Vec::new();
    for item in original {
        if index_of(patch, item, key).is_none() {
            server_only.push(item.clone());
        }
    }
    let mut patch_items = Vec::new();
    for p in patch {
        if p.get("$patch").and_then(Value::as_str) == Some("delete") {
            continue;
        }
        match index_of(original, p, key) {
            Some(i) => {
                let mut merged = original[i].clone();
                merge(&mut merged, p, kind);
                patch_items.push(merged);
            }
            None => patch_items.push(without_nulls(p)),
        }
    }
    let mut out = Vec::with_capacity(server_only.len() + patch_items.len());
    let (mut i, mut j) = (0, 0);
    while i < server_only.len() || j < patch_items.len() {
        let take_left = match (server_only.get(i), patch_items.get(j)) {
            (Some(_), None) => true,
            (None, _) => false,
            (Some(l), Some(r)) => match (index_of(original, l, key), index_of(original, r, key)) {
                (Some(li), Some(ri)) => li < ri,
                _ => false,
            },
        };
        if take_left {
            out.push(server_only[i].clone());
            i += 1;
        } else {
            out.push(patch_items[j].clone());
            j += 1;
        }
    }
    out
}

/// Merge a container onto the same-named container of `spec[field]` (appending it when absent),
/// as `applyContainer` / `applyInitContainer` do.
pub fn merge_container(pod: &mut Value, field: &str, container: &Value) {
    let mut patch_spec = Map::new();
    patch_spec.insert(field.to_string(), Value::Array(vec![container.clone()]));
    let mut patch = Map::new();
    patch.insert("spec".into(), Value::Object(patch_spec));
    merge(pod, &Value::Object(patch), Kind::Pod);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn env_order_interleaves_server_only_items() {
        let mut c = json!({"env": [{"name": "A"}, {"name": "B"}, {"name": "X"}, {"name": "C"}]});
        let patch = json!({"env": [{"name": "J"}, {"name": "A", "value": "1"}, {"name": "B"}, {"name": "C"}]});
        merge(&mut c, &patch, Kind::Container);
        let names: Vec<_> = c["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["J", "A", "B", "X", "C"]);
        assert_eq!(c["env"][1]["value"], "1");
    }

    #[test]
    fn new_patch_items_come_before_server_only_ones() {
        let mut pod = json!({"spec": {"volumes": [{"name": "data"}]}});
        let patch = json!({"spec": {"volumes": [{"name": "a"}, {"name": "b"}]}});
        merge(&mut pod, &patch, Kind::Pod);
        assert_eq!(
            pod["spec"]["volumes"],
            json!([{"name": "a"}, {"name": "b"}, {"name": "data"}])
        );
    }

    #[test]
    fn plain_lists_replace_and_null_deletes() {
        let mut c = json!({"args": ["a", "b"], "tty": true, "resources": {"limits": {"cpu": "1"}}});
        merge(
            &mut c,
            &json!({"args": ["c"], "tty": null, "resources": {"requests": {"cpu": "2"}}}),
            Kind::Container,
        );
        assert_eq!(
            c,
            json!({"args": ["c"], "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "2"}}})
        );
    }
}
