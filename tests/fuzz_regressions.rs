//! Inputs the fuzzer (`revinject fuzz`, `src/testgen.rs`) found breaking an invariant,
//! minimized; each must now inject, and re-inject without change.

use revision_injector::admission::{evaluate, Cluster};
use revision_injector::settings::Settings;
use revision_injector::testgen::{check_preserved, first_difference};
use serde_json::{json, Value};

struct Injected;

impl Cluster for Injected {
    fn namespace(&self, name: &str) -> Result<Value, String> {
        Ok(json!({"metadata": {"name": name, "labels": {"istio-injection": "enabled"}}}))
    }
}

fn request(pod: &Value) -> Value {
    json!({"uid": "r", "operation": "CREATE", "namespace": "shop",
           "kind": {"group": "", "version": "v1", "kind": "Pod"}, "object": pod})
}

/// Inject `pod`, then inject the result again: it must not change, and must keep the pod's fields.
fn assert_stable(pod: Value, settings: Value) -> Value {
    let s = Settings::from_value(&settings).unwrap();
    let first = evaluate(&request(&pod), &s, &Injected);
    let injected = first.mutated_object.expect("injected");
    check_preserved(&pod, &injected).unwrap();
    let again = evaluate(&request(&injected), &s, &Injected);
    assert!(again.accepted, "{again:?}");
    if let Some(m) = again.mutated_object {
        panic!("re-injection changed {}", first_difference(&injected, &m));
    }
    injected
}

fn pod(containers: Value, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "p", "namespace": "shop", "annotations": annotations},
           "spec": {"containers": containers}})
}

#[test]
fn a_probe_on_an_unknown_named_port_is_not_recorded_on_reinjection() {
    // The probe is rewritten onto the status port without an original to record; re-injection
    // used to record the rewritten probe itself, so the agent would have probed itself.
    let injected = assert_stable(
        pod(
            json!([{"name": "app", "image": "a", "ports": [{"containerPort": 15001}],
                    "startupProbe": {"tcpSocket": {"port": "http"}}}]),
            json!({}),
        ),
        json!({"defaultRevision": true}),
    );
    let text = injected.to_string();
    assert!(
        !text.contains(r#"startupz\":{\"httpGet\":{\"path\":\"/app-health"#),
        "{text}"
    );
}

#[test]
fn the_ports_of_a_user_proxy_customization_are_not_app_ports() {
    // ISTIO_META_POD_PORTS listed the customization's ports on the first injection only.
    let injected = assert_stable(
        pod(
            json!([{"name": "app", "image": "a", "ports": [{"containerPort": 8080, "name": "http"}]},
                   {"name": "istio-proxy", "ports": [{"containerPort": 45336}]}]),
            json!({}),
        ),
        json!({"defaultRevision": true}),
    );
    assert!(!injected.to_string().contains("45336\\n"), "{injected}");
}

#[test]
fn tproxy_with_a_user_proxy_uid_keeps_the_iptables_owner_on_reinjection() {
    // On re-injection `-u` was read from the injected (root) proxy and reset to 1337.
    let injected = assert_stable(
        pod(
            json!([{"name": "app", "image": "a"},
                   {"name": "istio-proxy", "securityContext": {"runAsUser": 1279}}]),
            json!({"sidecar.istio.io/interceptionMode": "TPROXY",
                   "sidecar.istio.io/nativeSidecar": "false"}),
        ),
        json!({"defaultRevision": true}),
    );
    let init = injected["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "istio-init")
        .unwrap();
    let args: Vec<&str> = init["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let u = args.iter().position(|a| *a == "-u").unwrap();
    assert_eq!(args[u + 1], "1279", "{args:?}");
}
