//! Revision selection over every label combination of a canary setup, checked against the
//! reference's prose rules (section 1, rules 1-6), written here independently of the webhook table.

use revision_injector::revision::decide;
use revision_injector::settings::Settings;
use serde_json::{json, Value};
use std::collections::BTreeMap;

const NS_INJECTION: [Option<&str>; 3] = [None, Some("enabled"), Some("disabled")];
const REVS: [Option<&str>; 4] = [None, Some("default"), Some("canary"), Some("prod")];
const POD_INJECT: [Option<&str>; 3] = [None, Some("true"), Some("false")];

/// The installed injectors: the default revision, and `canary` with the tag `prod`.
fn installed(by_default: bool, default_settings: Value) -> Vec<(&'static str, Settings)> {
    let mut d = default_settings;
    d["enableNamespacesByDefault"] = json!(by_default);
    let c =
        json!({"revision": "canary", "tags": ["prod"], "enableNamespacesByDefault": by_default});
    vec![
        ("default", Settings::from_value(&d).unwrap()),
        ("canary", Settings::from_value(&c).unwrap()),
    ]
}

/// What a revision label value resolves to (rule 6: an unknown name resolves to nothing).
fn resolve(name: &str) -> Option<&'static str> {
    match name {
        "default" => Some("default"),
        "canary" | "prod" => Some("canary"),
        _ => None,
    }
}

/// The reference's rules, in order.
fn expected(
    ns_injection: Option<&str>,
    ns_rev: Option<&str>,
    pod_inject: Option<&str>,
    pod_rev: Option<&str>,
    by_default: bool,
) -> Option<&'static str> {
    if pod_inject == Some("false") {
        return None; // 1
    }
    match ns_injection {
        Some("enabled") => return Some("default"), // 3
        Some(_) => return None,                    // 2
        None => {}
    }
    if let Some(rev) = ns_rev {
        return resolve(rev); // 4
    }
    if let Some(rev) = pod_rev {
        return resolve(rev); // 5
    }
    if pod_inject == Some("true") || by_default {
        return Some("default"); // 5
    }
    None
}

fn labels(pairs: &[(&str, Option<&str>)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_string(), v.to_string())))
        .collect()
}

fn pod(labels: BTreeMap<String, String>, host_network: bool) -> Value {
    json!({
        "metadata": {"name": "app", "namespace": "apps", "labels": labels},
        "spec": {"hostNetwork": host_network, "containers": [{"name": "app", "image": "app"}]}
    })
}

/// Calls `check(ns_injection, ns_rev, pod_inject, pod_rev, namespace labels, pod labels)` for all 144 combinations.
fn each_combination(
    mut check: impl FnMut(
        Option<&str>,
        Option<&str>,
        Option<&str>,
        Option<&str>,
        &BTreeMap<String, String>,
        BTreeMap<String, String>,
    ),
) {
    for ns_injection in NS_INJECTION {
        for ns_rev in REVS {
            for pod_inject in POD_INJECT {
                for pod_rev in REVS {
                    let ns = labels(&[("istio-injection", ns_injection), ("istio.io/rev", ns_rev)]);
                    let pl = labels(&[
                        ("sidecar.istio.io/inject", pod_inject),
                        ("istio.io/rev", pod_rev),
                    ]);
                    check(ns_injection, ns_rev, pod_inject, pod_rev, &ns, pl);
                }
            }
        }
    }
}

fn exhaustive(by_default: bool, default_settings: Value) {
    let revisions = installed(by_default, default_settings);
    let mut count = 0;
    each_combination(|ns_injection, ns_rev, pod_inject, pod_rev, ns, pl| {
        count += 1;
        let p = pod(pl, false);
        let decisions: Vec<_> = revisions
            .iter()
            .map(|(name, s)| (*name, decide(s, "apps", ns, &p)))
            .collect();
        let injectors: Vec<&str> = decisions
            .iter()
            .filter(|(_, d)| d.inject)
            .map(|(n, _)| *n)
            .collect();
        let want = expected(ns_injection, ns_rev, pod_inject, pod_rev, by_default);
        let case = format!(
            "ns istio-injection={ns_injection:?} istio.io/rev={ns_rev:?}, pod inject={pod_inject:?} \
             istio.io/rev={pod_rev:?}, enableNamespacesByDefault={by_default}: {decisions:#?}"
        );
        assert!(injectors.len() <= 1, "double injection: {case}");
        assert_eq!(injectors.first().copied(), want, "{case}");
        for (_, d) in &decisions {
            assert!(!d.reason.is_empty(), "{case}");
            assert_eq!(d.inject, d.webhook.is_some(), "{case}");
        }
        // A namespace carrying both labels is reported once, not by every revision.
        let ist0123 = decisions
            .iter()
            .flat_map(|(_, d)| &d.warnings)
            .filter(|w| w.contains("IST0123"))
            .count();
        let both = ns_injection.is_some() && ns_rev.is_some();
        assert_eq!(ist0123, usize::from(both), "{case}");
        // A pod label the namespace overrides is reported once, by the revision that injects.
        let overridden = decisions
            .iter()
            .flat_map(|(_, d)| &d.warnings)
            .filter(|w| w.contains("cannot override"))
            .count();
        let ignored = match (want, pod_rev) {
            (Some(injector), Some(rev)) => resolve(rev) != Some(injector),
            _ => false,
        };
        assert_eq!(overridden, usize::from(ignored), "{case}");
    });
    assert_eq!(count, 144);
}

#[test]
fn at_most_one_revision_injects_and_it_is_the_referenced_one() {
    exhaustive(
        false,
        json!({"revision": "default", "defaultRevision": true}),
    );
}

#[test]
fn same_with_enable_namespaces_by_default() {
    exhaustive(
        true,
        json!({"revision": "default", "defaultRevision": true}),
    );
}

#[test]
fn an_unnamed_revision_is_the_default_one() {
    exhaustive(false, json!({}));
    exhaustive(true, json!({"revision": ""}));
}

#[test]
fn host_network_pods_are_never_injected() {
    let revisions = installed(
        true,
        json!({"revision": "default", "defaultRevision": true}),
    );
    each_combination(|_, _, _, _, ns, pl| {
        let p = pod(pl, true);
        for (name, s) in &revisions {
            let d = decide(s, "apps", ns, &p);
            assert!(!d.inject, "{name}: {d:?}");
            if d.webhook.is_some() {
                assert_eq!(d.rule, "hostNetwork");
            }
        }
    });
}
