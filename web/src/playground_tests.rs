//! The seed's canary story (test-data/canary) through the playground's JSON interface.

use super::*;

const OLD: &str = include_str!("../../test-data/canary/settings-old.yaml");
const NEW: &str = include_str!("../../test-data/canary/settings-new.yaml");
const REQUEST: &str = include_str!("../../test-data/canary/request.json");
const REQUEST_POD_REV: &str = include_str!("../../test-data/canary/request-pod-rev.json");

fn pod_yaml(review: &str) -> String {
    let review: Value = serde_json::from_str(review).unwrap();
    serde_norway::to_string(&review["request"]["object"]).unwrap()
}

fn run(labels: &str, pod: &str) -> Value {
    let input = json!({
        "revisions": [OLD, NEW],
        "namespace": "",
        "namespaceLabels": labels,
        "pod": pod,
    });
    serde_json::from_str(&evaluate_json(&input.to_string())).unwrap()
}

fn row<'a>(out: &'a Value, revision: &str) -> &'a Value {
    out["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["revision"] == revision)
        .unwrap_or_else(|| panic!("no row for {revision}: {out}"))
}

#[test]
fn relabelled_namespace_moves_the_pod_to_the_new_revision() {
    let out = run("istio.io/rev=asm-1240-1", &pod_yaml(REQUEST));
    assert_eq!(out["errors"], json!([]), "{out}");
    assert_eq!(out["namespace"], "shop");
    assert_eq!(out["injectedBy"], json!(["asm-1240-1"]));
    let new = row(&out, "asm-1240-1");
    assert_eq!(
        (&new["rule"], &new["injected"]),
        (&json!("rev.namespace"), &json!(true))
    );
    let old = row(&out, "asm-1233-2 (default)");
    assert_eq!(
        (&old["rule"], &old["injected"]),
        (&json!("none"), &json!(false))
    );
    assert!(old["injectedPod"].is_null() && old["patch"].is_null());
    // Each revision is its own Istio version.
    assert_eq!(new["istioVersion"], "1.24.0");
    assert_eq!(old["istioVersion"], "1.23.3");

    // The patch takes the pod to the injected pod, and the injected pod names the revision.
    let injected: Value = serde_norway::from_str(new["injectedPod"].as_str().unwrap()).unwrap();
    assert_eq!(
        injected.pointer("/metadata/annotations/istio.io~1rev"),
        Some(&json!("asm-1240-1"))
    );
    let mut patched: Value = serde_norway::from_str(out["pod"].as_str().unwrap()).unwrap();
    let patch: json_patch::Patch = serde_json::from_value(new["patch"].clone()).unwrap();
    json_patch::patch(&mut patched, &patch).unwrap();
    assert_eq!(patched, injected);
}

#[test]
fn pod_label_cannot_override_the_namespace() {
    let out = run("istio.io/rev: asm-1233-2", &pod_yaml(REQUEST_POD_REV));
    assert_eq!(out["injectedBy"], json!(["asm-1233-2 (default)"]));
    let old = row(&out, "asm-1233-2 (default)");
    let warnings = old["warnings"].to_string();
    assert!(
        warnings.contains("istio.io/rev=asm-1240-1 is ignored"),
        "{warnings}"
    );
    assert_eq!(row(&out, "asm-1240-1")["injected"], false);
}

#[test]
fn leftover_istio_injection_goes_to_the_default_revision() {
    let out = run(
        "istio.io/rev=asm-1240-1,istio-injection=enabled",
        &pod_yaml(REQUEST),
    );
    let old = row(&out, "asm-1233-2 (default)");
    assert_eq!(
        (&old["rule"], &old["injected"]),
        (&json!("namespace"), &json!(true))
    );
    assert!(old["warnings"].to_string().contains("IST0123"), "{old}");
    assert_eq!(row(&out, "asm-1240-1")["injected"], false);
}

#[test]
fn unserved_revision_labels_are_noted() {
    let out = run("istio.io/rev=asm-9999-1", &pod_yaml(REQUEST));
    assert_eq!(out["injectedBy"], json!([]));
    assert_eq!(
        out["notes"],
        json!(["no installed revision serves the namespace label istio.io/rev=asm-9999-1"])
    );
}

#[test]
fn every_bad_field_is_reported_by_name() {
    let input = json!({
        "revisions": [OLD, "revision: [unclosed"],
        "namespace": "Not_A_Name",
        "namespaceLabels": "novalue",
        "pod": "kind: Pod\nmetadata: {name: x\n",
    });
    let out: Value = serde_json::from_str(&evaluate_json(&input.to_string())).unwrap();
    let fields: Vec<&str> = out["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["revisions[1]", "namespace", "namespaceLabels", "pod"]
    );
    assert_eq!(out["revisions"], json!([]));
    let garbage: Value = serde_json::from_str(&evaluate_json("not json")).unwrap();
    assert_eq!(garbage["errors"][0]["field"], "input");
}

#[test]
fn a_rejected_pod_is_a_row_not_an_error() {
    let strict = "revision: asm-1240-1\nallowedOverrideAnnotations: []";
    let pod = "metadata:\n  name: p\n  annotations: {sidecar.istio.io/proxyCPU: '2'}\nspec:\n  containers: [{name: a, image: a}]";
    let input =
        json!({"revisions": [strict], "namespaceLabels": "istio.io/rev=asm-1240-1", "pod": pod});
    let out: Value = serde_json::from_str(&evaluate_json(&input.to_string())).unwrap();
    let row = &out["revisions"][0];
    assert_eq!(
        (&row["allowed"], &row["injected"]),
        (&json!(false), &json!(false)),
        "{out}"
    );
    assert!(
        row["reason"].as_str().unwrap().starts_with("rejected:"),
        "{row}"
    );
    assert_eq!(out["namespace"], "default");
}
