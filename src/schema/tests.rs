//! `check_pod` against k8s-openapi's `Pod` deserialization (a dev-dependency): a pod with
//! every field of every struct set, then every node of it replaced by values of each JSON
//! type, must be accepted or rejected by both, with the same message.

use super::*;
use serde_json::json;

fn k8s_openapi(pod: &Value) -> Result<(), String> {
    <k8s_openapi::api::core::v1::Pod as serde::Deserialize>::deserialize(pod)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// A valid value of `ty` with every struct field set.
fn sample(ty: &Ty) -> Value {
    match ty {
        Ty::Bool => json!(true),
        Ty::I32 | Ty::I64 => json!(7),
        Ty::F64 => json!(0.5),
        Ty::Str => json!("s"),
        Ty::Quantity => json!("100m"),
        Ty::IntOrString => json!(8080),
        Ty::Time(_) => json!("2026-10-02T08:14:55Z"),
        Ty::Any => json!({"f:metadata": {}}),
        Ty::Seq(item) => json!([sample(item)]),
        Ty::Map(item) => json!({"k": sample(item)}),
        Ty::Struct(index) => {
            let def = &pod_types::STRUCTS[*index];
            let mut map = serde_json::Map::new();
            if let Some((api_version, kind)) = def.resource {
                map.insert("apiVersion".into(), json!(api_version));
                map.insert("kind".into(), json!(kind));
            }
            for f in def.fields {
                map.insert(f.name.to_string(), sample(&f.ty));
            }
            Value::Object(map)
        }
    }
}

/// JSON pointers of every node under `v`.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                out.push(p.clone());
                pointers(child, p, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers(child, p, out);
            }
        }
        _ => {}
    }
}

/// One value of each kind serde distinguishes, edge integers and timestamps included.
fn replacements() -> Vec<Value> {
    vec![
        json!(null),
        json!(false),
        json!(0),
        json!(-1),
        json!(2147483648u64),
        json!(-2147483649i64),
        json!(u64::MAX),
        json!(1.5),
        json!("x"),
        json!("2026-10-02T08:14:55.123456Z"),
        json!([]),
        json!([1]),
        json!({}),
        json!({"a": "b"}),
    ]
}

fn compare(pod: &Value) {
    assert_eq!(check_pod(pod), k8s_openapi(pod), "pod: {pod}");
}

#[test]
fn the_full_sample_pod_is_valid_for_both() {
    let pod = sample(&Ty::Struct(pod_types::POD));
    assert_eq!(k8s_openapi(&pod), Ok(()));
    assert_eq!(check_pod(&pod), Ok(()));
}

#[test]
fn every_field_of_every_struct_rejects_like_k8s_openapi() {
    let pod = sample(&Ty::Struct(pod_types::POD));
    let mut all = Vec::new();
    pointers(&pod, String::new(), &mut all);
    assert!(all.len() > 1000, "only {} nodes", all.len());
    let mut rejected = 0;
    for pointer in &all {
        for replacement in replacements() {
            let mut mutated = pod.clone();
            *mutated.pointer_mut(pointer).unwrap() = replacement;
            let expected = k8s_openapi(&mutated);
            assert_eq!(check_pod(&mutated), expected, "at {pointer}");
            rejected += usize::from(expected.is_err());
        }
    }
    // The comparison must have exercised rejections, not only acceptances.
    assert!(rejected > all.len(), "{rejected}");
}

#[test]
fn top_level_and_unknown_fields() {
    compare(&json!({"apiVersion": "v2", "kind": "Pod"}));
    compare(&json!({"apiVersion": "v1", "kind": "Deployment"}));
    compare(&json!({"apiVersion": null}));
    compare(&json!({"kind": 3}));
    compare(&json!({"x-unknown": {"anything": [1, 2]}, "spec": {"x": 1}}));
    compare(&json!({"metadata": null, "spec": null, "status": null}));
    compare(&json!({"spec": {"containers": [null]}}));
    compare(&json!({"spec": {"containers": [{"ports": [{"containerPort": "80"}]}]}}));
    compare(&json!({"metadata": {"creationTimestamp": "yesterday"}}));
    compare(&json!({"metadata": {"labels": {"a": null}}}));
    compare(&json!({"spec": {"overhead": {"cpu": true}}}));
    compare(&json!({"spec": {"containers": [{"env": "FOO=bar"}]}}));
    assert!(check_pod(&json!({"spec": {"containers": "app"}})).is_err());
}

#[test]
fn the_first_error_in_key_order_wins() {
    // Both `spec` and `metadata` are wrong: map order (`metadata` first) decides the message.
    let pod = json!({"spec": {"hostNetwork": "yes"}, "metadata": {"name": 5}});
    compare(&pod);
    assert_eq!(
        check_pod(&pod).unwrap_err(),
        "invalid type: integer `5`, expected a string"
    );
}
