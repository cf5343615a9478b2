use super::*;
use serde_json::json;

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn settings(v: Value) -> Settings {
    Settings::from_value(&v).unwrap()
}

fn canary() -> Settings {
    settings(json!({"revision": "canary", "tags": ["prod"]}))
}

fn default_rev() -> Settings {
    settings(json!({"revision": "default", "defaultRevision": true}))
}

fn pod(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Value {
    json!({
        "metadata": {"name": "p", "labels": map(labels), "annotations": map(annotations)},
        "spec": {"containers": [{"name": "app", "image": "app"}]}
    })
}

fn run(s: &Settings, ns: &[(&str, &str)], pod: &Value) -> Decision {
    decide(s, "apps", &map(ns), pod)
}

#[test]
fn rev_namespace_selects_revision_and_tags() {
    let d = run(&canary(), &[(REV_LABEL, "canary")], &pod(&[], &[]));
    assert!(d.inject, "{d:?}");
    assert_eq!(d.rule, "rev.namespace");
    assert_eq!(d.revision, "canary");
    let d = run(&canary(), &[(REV_LABEL, "prod")], &pod(&[], &[]));
    assert!(d.inject);
    assert_eq!(d.rule, "rev.namespace (tag prod)");
    let d = run(&canary(), &[(REV_LABEL, "stable")], &pod(&[], &[]));
    assert!(!d.inject);
    assert_eq!(d.rule, "none");
    assert!(d.reason.contains("istio.io/rev=stable"), "{}", d.reason);
    assert!(
        d.warnings.is_empty(),
        "unknown revisions are not warned: {:?}",
        d.warnings
    );
}

#[test]
fn rev_namespace_is_blocked_by_istio_injection_and_pod_opt_out() {
    let both = [(REV_LABEL, "canary"), (INJECTION_LABEL, "disabled")];
    let d = run(&canary(), &both, &pod(&[], &[]));
    assert!(!d.inject);
    assert!(
        d.reason.contains("istio-injection=disabled"),
        "{}",
        d.reason
    );
    assert_eq!(d.warnings.len(), 1);
    assert!(d.warnings[0].contains("IST0123"));
    let d = run(
        &canary(),
        &[(REV_LABEL, "canary")],
        &pod(&[(INJECT_LABEL, "false")], &[]),
    );
    assert!(!d.inject);
    assert_eq!(d.rule, "none");
    assert!(d.reason.contains("opts out"), "{}", d.reason);
}

#[test]
fn rev_object_selects_by_pod_label_only_in_unlabelled_namespaces() {
    let p = pod(&[(REV_LABEL, "prod")], &[]);
    let d = run(&canary(), &[], &p);
    assert!(d.inject);
    assert_eq!(d.rule, "rev.object (tag prod)");
    // A namespace revision wins over the pod's.
    let d = run(&canary(), &[(REV_LABEL, "default")], &p);
    assert!(!d.inject);
    assert!(d.reason.contains("does not override"), "{}", d.reason);
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    // ... and the revision that does inject says the pod's label was ignored.
    let d = run(&default_rev(), &[(REV_LABEL, "default")], &p);
    assert!(d.inject);
    assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
    assert!(
        d.warnings[0].contains("istio.io/rev=prod is ignored"),
        "{:?}",
        d.warnings
    );
}

#[test]
fn namespace_webhook_belongs_to_the_default_revision() {
    let ns = [(INJECTION_LABEL, "enabled")];
    let d = run(&default_rev(), &ns, &pod(&[], &[]));
    assert!(d.inject);
    assert_eq!(d.rule, "namespace");
    let d = run(&canary(), &ns, &pod(&[], &[]));
    assert!(!d.inject);
    assert!(d.reason.contains("default revision"), "{}", d.reason);
    // Revision "" is the default revision too, and so is a `default` tag.
    assert!(run(&settings(json!({})), &ns, &pod(&[], &[])).inject);
    let tagged = settings(json!({"revision": "canary", "tags": ["default"]}));
    assert!(run(&tagged, &ns, &pod(&[], &[])).inject);
}

#[test]
fn istio_injection_enabled_overrides_a_revision_label_with_a_warning() {
    let ns = [(INJECTION_LABEL, "enabled"), (REV_LABEL, "canary")];
    let d = run(&default_rev(), &ns, &pod(&[], &[]));
    assert!(d.inject);
    assert_eq!(d.rule, "namespace");
    assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
    assert!(d.warnings[0].contains("IST0123") && d.warnings[0].contains("not canary"));
    // The overridden revision stays quiet: one warning per pod, not one per revision.
    let d = run(&canary(), &ns, &pod(&[], &[]));
    assert!(!d.inject);
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
}

#[test]
fn object_webhook_needs_exactly_true() {
    let d = run(&default_rev(), &[], &pod(&[(INJECT_LABEL, "true")], &[]));
    assert!(d.inject);
    assert_eq!(d.rule, "object");
    let d = run(&default_rev(), &[], &pod(&[(INJECT_LABEL, "yes")], &[]));
    assert!(!d.inject);
    assert!(
        d.warnings.iter().any(|w| w.contains("\"yes\"")),
        "{:?}",
        d.warnings
    );
    assert!(!run(&canary(), &[], &pod(&[(INJECT_LABEL, "true")], &[])).inject);
}

#[test]
fn auto_webhook_needs_enable_namespaces_by_default() {
    let d = run(&default_rev(), &[], &pod(&[], &[]));
    assert!(!d.inject);
    assert!(
        d.reason.contains("enableNamespacesByDefault"),
        "{}",
        d.reason
    );
    let auto = settings(json!({"defaultRevision": true, "enableNamespacesByDefault": true}));
    let d = run(&auto, &[], &pod(&[], &[]));
    assert!(d.inject);
    assert_eq!(d.rule, "auto");
    let d = decide(&auto, "kube-system", &BTreeMap::new(), &pod(&[], &[]));
    assert!(!d.inject);
    assert!(d.reason.contains("kube-system"), "{}", d.reason);
    // Only the default revision auto-injects.
    let c = settings(json!({"revision": "canary", "enableNamespacesByDefault": true}));
    assert!(!run(&c, &[], &pod(&[], &[])).inject);
}

#[test]
fn chain_host_network_skips() {
    let mut p = pod(&[], &[]);
    p["spec"]["hostNetwork"] = json!(true);
    let d = run(&canary(), &[(REV_LABEL, "canary")], &p);
    assert!(!d.inject);
    assert_eq!(d.rule, "hostNetwork");
    assert_eq!(d.webhook.as_deref(), Some("rev.namespace"));
}

#[test]
fn chain_ignored_namespace_skips_but_istio_system_is_not_ignored() {
    let ns = map(&[(REV_LABEL, "canary")]);
    let d = decide(&canary(), "kube-public", &ns, &pod(&[], &[]));
    assert_eq!((d.inject, d.rule.as_str()), (false, "ignoredNamespace"));
    assert!(decide(&canary(), "istio-system", &ns, &pod(&[], &[])).inject);
}

#[test]
fn chain_label_overrides_annotation() {
    let ns = [(REV_LABEL, "canary")];
    let d = run(&canary(), &ns, &pod(&[], &[(INJECT_LABEL, "false")]));
    assert_eq!((d.inject, d.rule.as_str()), (false, "podAnnotation"));
    assert!(
        d.warnings.iter().any(|w| w.contains("IST0135")),
        "{:?}",
        d.warnings
    );
    let d = run(
        &canary(),
        &ns,
        &pod(&[(INJECT_LABEL, "true")], &[(INJECT_LABEL, "false")]),
    );
    assert!(d.inject);
    assert!(
        d.warnings.iter().any(|w| w.contains("overrides")),
        "{:?}",
        d.warnings
    );
    // Only exact values count: "False" falls through to the policy.
    let d = run(&canary(), &ns, &pod(&[], &[(INJECT_LABEL, "False")]));
    assert!(d.inject);
    assert_eq!(
        d.warnings.len(),
        1,
        "one warning, not two: {:?}",
        d.warnings
    );
    assert!(
        d.warnings[0].contains("\"False\" is ignored"),
        "{:?}",
        d.warnings
    );
    let d = run(&canary(), &ns, &pod(&[(INJECT_LABEL, "yes")], &[]));
    assert!(d.inject);
    assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
    assert!(d.warnings[0].contains("label"), "{:?}", d.warnings);
}

#[test]
fn chain_never_then_always_then_policy() {
    let s = settings(json!({
        "revision": "canary",
        "policy": "disabled",
        "neverInjectSelector": [{}, {"matchLabels": {"app": "db"}}],
        "alwaysInjectSelector": [{"matchExpressions": [{"key": "app", "operator": "Exists"}]}]
    }));
    let ns = [(REV_LABEL, "canary")];
    let d = run(&s, &ns, &pod(&[("app", "db")], &[]));
    assert_eq!((d.inject, d.rule.as_str()), (false, "neverInjectSelector"));
    assert!(d.reason.contains("neverInjectSelector[1]"), "{}", d.reason);
    let d = run(&s, &ns, &pod(&[("app", "web")], &[]));
    assert!(d.inject);
    assert!(d.reason.contains("alwaysInjectSelector[0]"), "{}", d.reason);
    let d = run(&s, &ns, &pod(&[], &[]));
    assert_eq!((d.inject, d.rule.as_str()), (false, "policy"));
    // An explicit "true" beats policy and the never selector.
    let d = run(&s, &ns, &pod(&[("app", "db"), (INJECT_LABEL, "true")], &[]));
    assert!(d.inject);
}

#[test]
fn annotation_alone_does_not_select_and_only_the_default_warns() {
    let p = pod(&[], &[(INJECT_LABEL, "true")]);
    let d = run(&default_rev(), &[], &p);
    assert!(!d.inject);
    assert!(
        d.warnings.iter().any(|w| w.contains("IST0135")),
        "{:?}",
        d.warnings
    );
    assert!(run(&canary(), &[], &p).warnings.is_empty());
}

#[test]
fn webhook_table_shape() {
    let names: Vec<String> = webhooks(&canary()).into_iter().map(|w| w.name).collect();
    assert_eq!(
        names,
        [
            "rev.namespace",
            "rev.object",
            "rev.namespace (tag prod)",
            "rev.object (tag prod)"
        ]
    );
    let s = settings(
        json!({"revision": "canary", "defaultRevision": true, "enableNamespacesByDefault": true}),
    );
    let names: Vec<String> = webhooks(&s).into_iter().map(|w| w.name).collect();
    assert_eq!(
        names,
        [
            "rev.namespace",
            "rev.object",
            "rev.namespace (tag default)",
            "rev.object (tag default)",
            "namespace",
            "object",
            "auto"
        ]
    );
    for w in webhooks(&s) {
        w.namespace_selector.validate().unwrap();
        w.object_selector.validate().unwrap();
    }
}

#[test]
fn settings_names_are_validated() {
    let bad = |v: Value| crate::admission::validate_settings(&settings(v)).unwrap_err();
    assert!(bad(json!({"revision": "Canary"})).contains("revision"));
    assert!(bad(json!({"revision": "canary", "tags": ["canary"]})).contains("tags[0]"));
    assert!(bad(json!({"tags": ["a", "a"]})).contains("tags[1]"));
    assert!(bad(json!({"tags": ["bad tag"]})).contains("tags[0]"));
    assert!(bad(json!({"istioNamespace": ""})).contains("istioNamespace"));
    assert!(bad(json!({"ignoredNamespaces": ["x_y"]})).contains("ignoredNamespaces[0]"));
    let err = bad(
        json!({"neverInjectSelector": [{"matchExpressions": [{"key": "a", "operator": "In"}]}]}),
    );
    assert!(err.contains("neverInjectSelector[0]"), "{err}");
}

#[test]
fn decision_serializes_for_the_audit_annotation() {
    let d = run(&canary(), &[(REV_LABEL, "prod")], &pod(&[], &[]));
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(v["inject"], json!(true));
    assert_eq!(v["rule"], json!("rev.namespace (tag prod)"));
    assert_eq!(v["revision"], json!("canary"));
    assert_eq!(v["webhook"], json!("rev.namespace (tag prod)"));
}

/// Settings alternating between calls (one instance serving two policies' settings in
/// turn) each get their own webhooks.
#[test]
fn webhooks_follow_the_settings_of_each_call() {
    let ns = [(REV_LABEL, "canary")];
    for _ in 0..2 {
        assert!(run(&canary(), &ns, &pod(&[], &[])).inject);
        let d = run(&default_rev(), &ns, &pod(&[], &[]));
        assert!(!d.inject, "{d:?}");
        assert_eq!(d.webhook, None);
    }
    let retagged = settings(json!({"revision": "stable", "tags": ["canary"]}));
    let d = run(&retagged, &ns, &pod(&[], &[]));
    assert!(d.inject, "{d:?}");
    assert_eq!(d.revision, "stable");
}

fn at(version: &str) -> Settings {
    settings(json!({"revision": "canary", "istioVersion": version}))
}

/// R20: up to 1.26 `sidecar.istio.io/inject` is read as a YAML bool (lower-cased
/// y/yes/true/on inject, "" is undecided, anything else skips); from 1.27 only exact
/// true/false decide and anything else falls through to the policy.
#[test]
fn inject_value_reading_follows_the_version() {
    let ns = [(REV_LABEL, "canary")];
    let label = |v: &str| pod(&[(INJECT_LABEL, v)], &[]);
    // Pod label "no" on a namespace whose policy injects.
    let d = run(&at("1.26"), &ns, &label("no"));
    assert_eq!((d.inject, d.rule.as_str()), (false, "podLabel"), "{d:?}");
    assert!(
        d.warnings
            .iter()
            .any(|w| w.contains("\"no\" is read as false")),
        "{:?}",
        d.warnings
    );
    let d = run(&at("1.27"), &ns, &label("no"));
    assert_eq!(
        (d.inject, d.rule.as_str()),
        (true, "rev.namespace"),
        "{d:?}"
    );
    assert!(
        d.warnings.iter().any(|w| w.contains("\"no\" is ignored")),
        "{:?}",
        d.warnings
    );
    // "YES" injects explicitly up to 1.26, even under policy disabled; from 1.27 it is ignored.
    let disabled =
        |v: &str| settings(json!({"revision": "canary", "policy": "disabled", "istioVersion": v}));
    let d = run(&disabled("1.22.8"), &ns, &label("YES"));
    assert!(d.inject, "{d:?}");
    assert!(d.reason.contains("\"YES\""), "{d:?}");
    let d = run(&disabled("1.27.9"), &ns, &label("YES"));
    assert_eq!((d.inject, d.rule.as_str()), (false, "policy"), "{d:?}");
    // The never-inject selector loses to an explicit "on" up to 1.26 only.
    let never = |v: &str| {
        settings(json!({"revision": "canary", "istioVersion": v,
            "neverInjectSelector": [{"matchLabels": {"app": "x"}}]}))
    };
    let p = pod(&[(INJECT_LABEL, "on"), ("app", "x")], &[]);
    assert!(run(&never("1.26"), &ns, &p).inject);
    let d = run(&never("1.32"), &ns, &p);
    assert_eq!((d.inject, d.rule.as_str()), (false, "neverInjectSelector"));
    // The annotation alone is read the same way, and "" is undecided in both.
    let ann = |v: &str| pod(&[], &[(INJECT_LABEL, v)]);
    assert_eq!(run(&at("1.25"), &ns, &ann("off")).rule, "podAnnotation");
    assert!(run(&at("1.30"), &ns, &ann("off")).inject);
    let d = run(&at("1.25"), &ns, &ann(""));
    assert!(d.inject, "{d:?}");
    assert_eq!(explicit_inject("", at("1.25").behaviour()), None);
    assert_eq!(explicit_inject("On", at("1.26").behaviour()), Some(true));
    assert_eq!(explicit_inject("True", at("1.27").behaviour()), None);
}

#[test]
fn the_decision_names_the_istio_version_it_reproduces() {
    let old = settings(json!({"revision": "asm-1233-2", "istioVersion": "1.23.3"}));
    let d = run(&old, &[(REV_LABEL, "asm-1233-2")], &pod(&[], &[]));
    assert_eq!(d.istio_version, "1.23.3");
    let text = serde_json::to_string(&d).unwrap();
    assert!(text.contains(r#""istioVersion":"1.23.3""#), "{text}");
    // Skipped pods name it too, and without the setting it is the newest version.
    let d = run(&canary(), &[], &pod(&[], &[]));
    assert!(!d.inject);
    assert_eq!(d.istio_version, "1.32");
}
