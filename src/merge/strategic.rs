//! Kubernetes' strategic merge patch over JSON values, typed by the Pod schema
//! ([`crate::schema`]): maps merge, a `null` deletes, lists with a merge key merge by it and
//! keep Kubernetes' element order, other lists and scalars are replaced. Only the fields the
//! schema lists with Go data are merged field by field; the others are replaced whole.

use serde_json::Value;

use crate::schema::{self, Ty};

/// The strategic merge of `patch` onto `original`, both of type `ty`.
pub fn merge(original: &Value, patch: &Value, ty: &Ty) -> Value {
    let mut out = original.clone();
    merge_into(&mut out, patch.clone(), ty);
    out
}

/// [`merge`] in place, consuming the patch: `target` becomes the merge of itself and
/// `patch`; nothing of either is copied (the template's containers move into the pod).
pub fn merge_into(target: &mut Value, patch: Value, ty: &Ty) {
    match (target, patch) {
        (Value::Object(out), Value::Object(p))
            if matches!(ty, Ty::Struct(_) | Ty::Map(_) | Ty::Any) =>
        {
            for (key, pv) in p {
                if key.starts_with('$') {
                    continue;
                }
                if pv.is_null() {
                    out.remove(&key);
                    continue;
                }
                let (fty, merge_key) = child(ty, &key);
                match out.get_mut(&key) {
                    Some(ov) => merge_field_into(ov, pv, fty, merge_key),
                    None => {
                        out.insert(key, pv);
                    }
                }
            }
        }
        (target, patch) => *target = patch,
    }
}

/// The type of the values under `key` in a value of type `ty`, and the field's list merge
/// key. Fields without Go data are opaque ([`Ty::Any`] with no merge key).
fn child<'a>(ty: &'a Ty, key: &str) -> (&'a Ty, Option<&'static str>) {
    match ty {
        Ty::Map(inner) => (inner, None),
        _ => match schema::field(ty, key).filter(|f| f.go.is_some()) {
            Some(f) => (&f.ty, f.merge_key),
            None => (&Ty::Any, None),
        },
    }
}

fn merge_field_into(original: &mut Value, patch: Value, ty: &Ty, merge_key: Option<&str>) {
    match (ty, &mut *original, patch, merge_key) {
        (Ty::Seq(elem), Value::Array(o), Value::Array(p), Some(key)) => {
            let o = std::mem::take(o);
            *original = merge_list(o, p, key, elem);
        }
        (Ty::Struct(_) | Ty::Map(_), Value::Object(_), patch @ Value::Object(_), _) => {
            merge_into(original, patch, ty);
        }
        (_, _, patch, _) => *original = patch,
    }
}

fn same_key(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => x.as_f64() == y.as_f64(),
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

fn position(list: &[Value], item: &Value, key: &str) -> Option<usize> {
    list.iter()
        .position(|o| same_key(o.get(key), item.get(key)))
}

/// apimachinery's `mergeSlice` for lists of maps with a merge key, including its ordering:
/// patch items keep the patch's order, items only in the original keep theirs, and the two are
/// interleaved by their positions in the original. Items move; only merge keys are copied.
pub fn merge_list(original: Vec<Value>, patch: Vec<Value>, key: &str, elem: &Ty) -> Value {
    if original.iter().chain(&patch).any(|v| v.get(key).is_none()) {
        return Value::Array(patch);
    }
    let keys = |list: &[Value]| -> Vec<Value> {
        list.iter()
            .map(|o| o.get(key).cloned().unwrap_or(Value::Null))
            .collect()
    };
    let (original_keys, patch_keys) = (keys(&original), keys(&patch));
    let index = |keys: &[Value], v: &Value| keys.iter().position(|k| same_key(Some(k), v.get(key)));
    let mut merged = original;
    for p in patch {
        match position(&merged, &p, key) {
            Some(i) => merge_into(&mut merged[i], p, elem),
            None => merged.push(p),
        }
    }
    let (mut patch_items, mut server_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|m| index(&patch_keys, m).is_some());
    // Stable sorts (items with equal keys keep their order), as Go's `sort.SliceStable`.
    let order = |i: Option<usize>| i.map_or(-1, |i| i as i64);
    patch_items.sort_by_cached_key(|v| order(index(&patch_keys, v)));
    server_only.sort_by_cached_key(|v| order(index(&original_keys, v)));
    let mut out = Vec::with_capacity(patch_items.len() + server_only.len());
    let (mut left, mut right) = (
        server_only.into_iter().peekable(),
        patch_items.into_iter().peekable(),
    );
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => match (index(&original_keys, l), index(&original_keys, r)) {
                (Some(li), Some(ri)) => li < ri,
                _ => false,
            },
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    Value::Array(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::CONTAINER;
    use serde_json::json;

    #[test]
    fn merge_list_keeps_kubernetes_order() {
        let key = |v: &Value| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|e| e["name"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        let elem = Ty::Any;
        // Patch items come first unless the original orders a server-only item before them.
        let original = [
            json!({"name": "a"}),
            json!({"name": "b"}),
            json!({"name": "c"}),
        ];
        let patch = [json!({"name": "c", "value": "1"}), json!({"name": "x"})];
        let merged = merge_list(original.to_vec(), patch.to_vec(), "name", &elem);
        assert_eq!(key(&merged), ["a", "b", "c", "x"]);
        assert_eq!(merged[2], json!({"name": "c", "value": "1"}));
        let patch = [json!({"name": "x"}), json!({"name": "a"})];
        assert_eq!(
            key(&merge_list(
                original.to_vec(),
                patch.to_vec(),
                "name",
                &elem
            )),
            ["x", "a", "b", "c"]
        );
    }

    #[test]
    fn deletes_nulls_and_replaces_plain_lists() {
        let original = json!({"name": "c", "args": ["a", "b"], "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}});
        let patch = json!({"args": ["z"], "resources": {"limits": {"cpu": null}}});
        assert_eq!(
            merge(&original, &patch, &Ty::Struct(CONTAINER)),
            json!({"name": "c", "args": ["z"], "resources": {"limits": {"memory": "1Gi"}}})
        );
    }

    #[test]
    fn keyed_lists_merge_by_their_schema_key() {
        let original = json!({"env": [{"name": "A", "value": "1"}], "volumeMounts": [{"mountPath": "/a", "name": "x"}]});
        let patch = json!({"env": [{"name": "B", "value": "2"}], "volumeMounts": [{"mountPath": "/a", "readOnly": true}]});
        let merged = merge(&original, &patch, &Ty::Struct(CONTAINER));
        assert_eq!(merged["env"].as_array().unwrap().len(), 2);
        assert_eq!(
            merged["volumeMounts"],
            json!([{"mountPath": "/a", "name": "x", "readOnly": true}])
        );
    }
}
