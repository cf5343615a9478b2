//! Security properties of the native entry point: ignored namespaces are never injected, the
//! injected containers never carry more privileges than the template grants for the mode,
//! and `allowedOverrideAnnotations` denies overrides without breaking re-injection.

use revision_injector::admission::{evaluate, Cluster, Outcome};
use revision_injector::settings::Settings;
use serde_json::{json, Value};
use std::collections::BTreeMap;

struct Namespaces(BTreeMap<String, Value>);

impl Cluster for Namespaces {
    fn namespace(&self, name: &str) -> Result<Value, String> {
        self.0
            .get(name)
            .map(|labels| json!({"metadata": {"name": name, "labels": labels}}))
            .ok_or_else(|| format!("namespaces \"{name}\" not found"))
    }
}

fn cluster(namespaces: &[(&str, Value)]) -> Namespaces {
    Namespaces(
        namespaces
            .iter()
            .map(|(n, l)| (n.to_string(), l.clone()))
            .collect(),
    )
}

fn pod(namespace: &str, labels: Value, annotations: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "app", "namespace": namespace, "labels": labels,
                     "annotations": annotations},
        "spec": {"containers": [{
            "name": "app", "image": "example/app:1",
            "ports": [{"containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}}
        }]}
    })
}

fn request(pod: &Value) -> Value {
    json!({
        "uid": "u", "operation": "CREATE",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "namespace": pod["metadata"]["namespace"], "object": pod,
    })
}

fn settings(v: Value) -> Settings {
    let s = Settings::from_value(&v).unwrap();
    s.validate().unwrap();
    s
}

fn run(s: &Settings, c: &Namespaces, p: &Value) -> Outcome {
    evaluate(&request(p), s, c)
}

#[test]
fn ignored_namespaces_are_never_injected_whatever_the_labels() {
    let every_label = json!({"istio-injection": "enabled", "istio.io/rev": "canary"});
    let c = cluster(&[
        ("kube-system", every_label.clone()),
        ("kube-public", every_label.clone()),
        ("tenant-infra", every_label.clone()),
        ("shop", every_label.clone()),
    ]);
    let configs = [
        json!({"defaultRevision": true, "enableNamespacesByDefault": true}),
        json!({"revision": "canary", "tags": ["prod"]}),
        json!({"defaultRevision": true,
               "alwaysInjectSelector": [{"matchLabels": {"app": "x"}}]}),
        json!({"defaultRevision": true, "ignoredNamespaces": ["tenant-infra"]}),
    ];
    let pod_labels = [
        json!({"app": "x", "sidecar.istio.io/inject": "true", "istio.io/rev": "canary"}),
        json!({"app": "x", "istio.io/rev": "default"}),
        json!({"app": "x"}),
    ];
    for config in &configs {
        let s = settings(config.clone());
        for labels in &pod_labels {
            for ns in &s.ignored_namespaces {
                if ns == "kube-node-lease" || ns == "local-path-storage" {
                    continue;
                }
                let p = pod(
                    ns,
                    labels.clone(),
                    json!({"sidecar.istio.io/inject": "true"}),
                );
                let out = run(&s, &c, &p);
                assert!(out.accepted, "{config} {ns}: {out:?}");
                assert!(
                    out.mutated_object.is_none(),
                    "{config} {ns} {labels} injected"
                );
            }
        }
        // The same pod outside the ignored namespaces is injected (the test can fail).
        let p = pod("shop", pod_labels[0].clone(), json!({}));
        let injected = run(&s, &c, &p).mutated_object.is_some();
        let canary_only = config.get("revision").is_some();
        assert_eq!(injected, !canary_only, "{config}");
    }
}

/// A container's privileges, as the kubelet would grant them.
#[derive(Debug, Default, PartialEq, Eq, Clone)]
struct Grant {
    caps: Vec<String>,
    root: bool,
    privileged: bool,
    escalation: bool,
}

fn grant_of(container: &Value, pod_security: &Value) -> Grant {
    let sc = &container["securityContext"];
    let mut caps: Vec<String> = sc["capabilities"]["add"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str().map(str::to_string))
        .collect();
    caps.sort();
    let user = sc["runAsUser"]
        .as_i64()
        .or_else(|| pod_security["runAsUser"].as_i64());
    let non_root = sc["runAsNonRoot"].as_bool() == Some(true);
    Grant {
        caps,
        // No runAsUser: the image's user, which for Istio's images is not root; runAsNonRoot
        // makes the kubelet refuse uid 0.
        root: user == Some(0) && !non_root,
        privileged: sc["privileged"].as_bool() == Some(true),
        // Kubernetes defaults allowPrivilegeEscalation to true when unset.
        escalation: sc["allowPrivilegeEscalation"].as_bool() != Some(false),
    }
}

/// The injected containers (those the input pod did not have) and their grants.
fn injected_grants(before: &Value, after: &Value) -> BTreeMap<String, Grant> {
    let names = |p: &Value| -> Vec<String> {
        ["containers", "initContainers"]
            .iter()
            .flat_map(|k| p["spec"][k].as_array().cloned().unwrap_or_default())
            .filter_map(|c| c["name"].as_str().map(str::to_string))
            .collect()
    };
    let old = names(before);
    ["containers", "initContainers"]
        .iter()
        .flat_map(|k| after["spec"][k].as_array().cloned().unwrap_or_default())
        .filter(|c| !old.iter().any(|n| Some(n.as_str()) == c["name"].as_str()))
        .map(|c| {
            let name = c["name"].as_str().unwrap_or("").to_string();
            (name, grant_of(&c, &after["spec"]["securityContext"]))
        })
        .collect()
}

fn net_caps() -> Vec<String> {
    vec!["NET_ADMIN".into(), "NET_RAW".into()]
}

/// The most each injected container may get, per mode (Istio's sidecar template).
fn template_grant(mode: &str, container: &str) -> Grant {
    let unprivileged = Grant::default();
    match (mode, container) {
        // istio-init programs iptables: root with NET_ADMIN and NET_RAW, nothing else.
        ("classic" | "native" | "tproxy", "istio-init") => Grant {
            caps: net_caps(),
            root: true,
            ..unprivileged
        },
        // TPROXY: the proxy itself needs NET_ADMIN and runs as root to set the socket mark.
        ("tproxy", "istio-proxy") => Grant {
            caps: vec!["NET_ADMIN".into()],
            root: true,
            ..unprivileged
        },
        _ => unprivileged,
    }
}

fn within(actual: &Grant, allowed: &Grant) -> bool {
    actual.caps.iter().all(|c| allowed.caps.contains(c))
        && (!actual.root || allowed.root)
        && (!actual.privileged || allowed.privileged)
        && (!actual.escalation || allowed.escalation)
}

#[test]
fn injected_containers_never_exceed_the_template_grant_per_mode() {
    let c = cluster(&[("shop", json!({"istio-injection": "enabled"}))]);
    let modes = [
        (
            "classic",
            json!({"defaultRevision": true, "nativeSidecars": false}),
            json!({}),
        ),
        (
            "native",
            json!({"defaultRevision": true, "nativeSidecars": true}),
            json!({}),
        ),
        (
            "cni",
            json!({"defaultRevision": true, "values": {"pilot": {"cni": {"enabled": true}}}}),
            json!({}),
        ),
        (
            "tproxy",
            json!({"defaultRevision": true}),
            json!({"sidecar.istio.io/interceptionMode": "TPROXY"}),
        ),
    ];
    for (mode, config, annotations) in modes {
        let s = settings(config);
        let p = pod("shop", json!({"app": "x"}), annotations);
        let out = run(&s, &c, &p);
        let mutated = out
            .mutated_object
            .unwrap_or_else(|| panic!("{mode}: not injected"));
        let grants = injected_grants(&p, &mutated);
        assert!(grants.contains_key("istio-proxy"), "{mode}: {grants:?}");
        for (name, grant) in &grants {
            let allowed = template_grant(mode, name);
            assert!(
                within(grant, &allowed),
                "{mode}: {name} has {grant:?}, the template grants at most {allowed:?}"
            );
        }
        // The grants the modes need are there (so the bound above is not vacuous).
        match mode {
            "cni" => {
                assert!(!grants.contains_key("istio-init"), "{grants:?}");
                assert!(grants.values().all(|g| g.caps.is_empty() && !g.root));
            }
            _ => assert_eq!(grants["istio-init"].caps, net_caps(), "{mode}"),
        }
        // Nothing the pod did not ask for at pod level.
        assert_eq!(
            mutated["spec"].get("hostNetwork"),
            p["spec"].get("hostNetwork"),
            "{mode}"
        );
        assert_eq!(
            mutated["spec"].get("securityContext"),
            p["spec"].get("securityContext")
        );
    }
}

#[test]
fn a_denied_override_rejects_the_pod_naming_it() {
    let c = cluster(&[("shop", json!({"istio-injection": "enabled"}))]);
    let s = settings(json!({
        "defaultRevision": true,
        "allowedOverrideAnnotations": ["sidecar.istio.io/proxyCPU"],
    }));
    for name in [
        "sidecar.istio.io/proxyImage",
        "sidecar.istio.io/userVolume",
        "traffic.sidecar.istio.io/excludeOutboundIPRanges",
        "sidecar.istio.io/interceptionMode",
        "proxy.istio.io/config",
    ] {
        let value = match name {
            "sidecar.istio.io/userVolume" => r#"{"host":{"hostPath":{"path":"/"}}}"#,
            "traffic.sidecar.istio.io/excludeOutboundIPRanges" => "0.0.0.0/0",
            "sidecar.istio.io/interceptionMode" => "TPROXY",
            "proxy.istio.io/config" => "concurrency: 8",
            _ => "registry.example/envoy:evil",
        };
        let p = pod(
            "shop",
            json!({}),
            json!({ name: value, "sidecar.istio.io/proxyCPU": "1" }),
        );
        let out = run(&s, &c, &p);
        assert!(!out.accepted, "{name}: {out:?}");
        let message = out.message.unwrap_or_default();
        assert!(message.contains(name), "{name}: {message}");
        assert!(!message.contains("proxyCPU"), "{message}");
        // The same pod passes when the list allows it.
        let mut allowing = s.clone();
        allowing
            .allowed_override_annotations
            .as_mut()
            .unwrap()
            .push(name.to_string());
        assert!(run(&allowing, &c, &p).mutated_object.is_some(), "{name}");
    }
}

#[test]
fn a_restrictive_list_still_reinjects_an_injected_pod_unchanged() {
    let c = cluster(&[("shop", json!({"istio-injection": "enabled"}))]);
    for native in [true, false] {
        let s = settings(json!({
            "defaultRevision": true, "nativeSidecars": native,
            "allowedOverrideAnnotations": [],
        }));
        let p = pod("shop", json!({"app": "x"}), json!({}));
        let injected = run(&s, &c, &p).mutated_object.unwrap();
        // Whatever injection writes itself is not an override: injecting the injected pod
        // again is accepted, unchanged.
        let again = run(&s, &c, &injected);
        assert!(again.accepted, "{again:?}");
        assert!(again.mutated_object.is_none(), "native={native}: changed");
        // Adding an override to it is still denied.
        let mut tampered = injected.clone();
        tampered["metadata"]["annotations"]["sidecar.istio.io/interceptionMode"] = json!("TPROXY");
        let out = run(&s, &c, &tampered);
        assert!(!out.accepted, "{out:?}");
        assert!(out.message.unwrap().contains("interceptionMode"));
    }
}
