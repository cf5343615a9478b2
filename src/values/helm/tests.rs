use super::*;
use crate::values::mesh::at;
use serde_json::json;

/// The chart's `values.yaml` as far as the template reads it, as a merged tree: the reference
/// the resolved values are checked against (Helm's merge of this tree and the overlay, then a
/// lookup).
fn chart(istio_namespace: &str, revision: &str) -> Value {
    let mut chart: Value = serde_json::from_str(
        r#"{
        "sidecarInjectorWebhook": {"rewriteAppHTTPProbe": true},
        "pilot": {"cni": {"enabled": false, "provider": "default"}},
        "istio_cni": {"chained": true, "provider": "default"},
        "global": {
            "hub": "docker.io/istio", "tag": "1.28.0", "variant": "", "imagePullPolicy": "",
            "imagePullSecrets": [], "pilotCertProvider": "istiod", "caAddress": "",
            "caName": "", "network": "", "meshID": "", "trustDomain": "", "logAsJson": false,
            "logging": {"level": "default:info"}, "multiCluster": {"clusterName": ""},
            "sds": {"token": {"aud": "istio-ca"}}, "sts": {"servicePort": 0},
            "mountMtlsCerts": false, "proxy_init": {"image": "proxyv2"},
            "proxy": {
                "image": "proxyv2", "autoInject": "enabled", "clusterDomain": "cluster.local",
                "componentLogLevel": "misc:error", "enableCoreDump": false, "outlierLogPath": "",
                "excludeInboundPorts": "", "excludeIPRanges": "", "excludeOutboundPorts": "",
                "includeIPRanges": "*", "includeInboundPorts": "*", "includeOutboundPorts": "",
                "holdApplicationUntilProxyStarts": false, "logLevel": "warning",
                "privileged": false, "readinessFailureThreshold": 4,
                "readinessInitialDelaySeconds": 0, "readinessPeriodSeconds": 15,
                "startupProbe": {"enabled": true, "failureThreshold": 600},
                "statusPort": 15020, "tracer": "none",
                "resources": {
                    "requests": {"cpu": "100m", "memory": "128Mi"},
                    "limits": {"cpu": "2000m", "memory": "1024Mi"}
                }
            }
        }
    }"#,
    )
    .unwrap();
    chart["revision"] = json!(revision);
    chart["global"]["istioNamespace"] = json!(istio_namespace);
    chart
}

/// Every key resolves to what Helm's merge of the chart and `overlay` holds at its path.
fn assert_same_as_merge(overlay: &Value) {
    let helm = Helm::new(
        overlay,
        &Install {
            istio_namespace: "mesh-ns",
            revision: "canary",
            ..Install::default()
        },
    );
    let mut merged = chart("mesh-ns", "canary");
    merge(&mut merged, overlay);
    for (i, (path, _)) in TABLE.iter().enumerate() {
        let want = at(&merged, path).filter(|v| !v.is_null());
        let got = helm.values[i].as_ref();
        assert_eq!(got, want, "{} with overlay {overlay}", path.join("."));
    }
}

#[test]
fn defaults_are_the_charts() {
    assert_same_as_merge(&json!({}));
    let helm = Helm::new(&json!({}), &Install::default());
    assert_eq!(helm.str(Key::Hub), Some(DEFAULT_HUB));
    assert_eq!(helm.text(Key::StatusPort), "15020");
    assert!(helm.truthy(Key::StartupProbeEnabled));
    assert!(!helm.truthy(Key::Privileged));
    assert_eq!(helm.get(Key::Lifecycle), None);
}

#[test]
fn keys_follow_the_table() {
    assert_eq!(TABLE[Key::Revision as usize].0, ["revision"]);
    assert_eq!(
        TABLE[Key::CapNetBindService as usize].0,
        ["global", "proxy", "capNetBindService"]
    );
    assert_eq!(Key::CapNetBindService as usize, TABLE.len() - 1);
}

#[test]
fn overlays_merge_helm_style() {
    for overlay in [
        json!({"global": {"hub": "example.com/mesh", "tag": 7}}),
        json!({"global": {"proxy": {"resources": {"limits": {"cpu": null}}}}}),
        json!({"global": {"proxy": {"resources": {"limits": null, "requests": {"cpu": "1"}}}}}),
        json!({"global": {"proxy": {"resources": "big"}}}),
        json!({"global": {"proxy": {"resources": null}}}),
        json!({"global": {"proxy": "flat"}}),
        json!({"global": null}),
        json!({"global": {"sds": {"token": null}}}),
        json!({"global": {"sds": {"token": 3}}}),
        json!({"global": {"proxy": {"lifecycle": {"preStop": null, "postStart": {"x": [1, null]}}}}}),
        json!({"global": {"imagePullSecrets": ["a", {"name": "b"}], "nativeNftables": true}}),
        json!({"revision": "other", "pilot": {"cni": {"enabled": true}}}),
        json!({"revision": null}),
        json!("not a map"),
        Value::Null,
    ] {
        assert_same_as_merge(&overlay);
    }
}

#[test]
fn generated_overlays_match_the_merge() {
    // Overlays built from the table's own paths: each step may be absent, null, a scalar,
    // a list or a map, so every branch of the walk is taken.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    for _ in 0..400 {
        let mut overlay = json!({});
        for _ in 0..next(6) {
            let (path, _) = &TABLE[next(TABLE.len() as u64) as usize];
            let depth = 1 + next(path.len() as u64) as usize;
            let leaf = match next(6) {
                0 => Value::Null,
                1 => json!("x"),
                2 => json!(0),
                3 => json!([1]),
                4 => json!({"cpu": null, "memory": "1Gi"}),
                _ => json!(true),
            };
            let mut cur = &mut overlay;
            for key in &path[..depth - 1] {
                if !cur.get(*key).is_some_and(Value::is_object) {
                    cur[*key] = json!({});
                }
                cur = &mut cur[*key];
            }
            cur[path[depth - 1]] = leaf;
        }
        assert_same_as_merge(&overlay);
    }
}
