//! The init container, traffic capture and metadata rows of `crate::versions`, each checked
//! on both sides of the version that introduced it, through a whole injection.

use serde_json::{json, Value};

use super::capture::cni_annotations;
use crate::admission::inject::{inject, Context};
use crate::settings::Settings;
use crate::values::traffic::TrafficConfig;
use crate::versions::IstioVersion;

fn settings(version: &str, values: Value) -> Settings {
    Settings {
        istio_version: IstioVersion::parse(version).unwrap(),
        native_sidecars: Some(false),
        values,
        ..Settings::default()
    }
}

fn pod(annotations: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "labels": {"app": "web"}, "annotations": annotations},
        "spec": {"containers": [{"name": "web", "image": "nginx"}]}
    })
}

fn run(pod: &Value, s: &Settings) -> Result<Value, String> {
    inject(
        pod,
        &Context {
            settings: s,
            namespace: "apps",
        },
    )
    .map_err(|e| e.0)
}

fn injected(version: &str, values: Value, annotations: Value) -> Value {
    run(&pod(annotations), &settings(version, values)).unwrap()
}

fn container<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    ["initContainers", "containers"]
        .iter()
        .filter_map(|l| pod["spec"][l].as_array())
        .flatten()
        .find(|c| c["name"] == name)
}

fn init_names(pod: &Value) -> Vec<&str> {
    pod["spec"]["initContainers"]
        .as_array()
        .map(|l| l.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default()
}

fn args(pod: &Value) -> Vec<String> {
    let init = container(pod, "istio-init")
        .or_else(|| container(pod, "istio-validation"))
        .unwrap();
    serde_json::from_value(init["args"].clone()).unwrap()
}

fn annotation<'a>(pod: &'a Value, name: &str) -> Option<&'a str> {
    pod["metadata"]["annotations"][name].as_str()
}

const MULTUS: &str = "k8s.v1.cni.cncf.io/networks";

#[test]
fn r03_istio_cni_enabled_counts_up_to_1_23() {
    let values = json!({"istio_cni": {"enabled": true}});
    let old = injected("1.23", values.clone(), json!({}));
    assert_eq!(init_names(&old), ["istio-validation"]);
    assert!(args(&old).ends_with(&["--run-validation".into(), "--skip-rule-apply".into()]));
    assert_eq!(
        annotation(&old, "sidecar.istio.io/interceptionMode"),
        Some("REDIRECT")
    );
    let new = injected("1.24", values, json!({}));
    assert_eq!(init_names(&new), ["istio-init"]);
    assert_eq!(annotation(&new, "sidecar.istio.io/interceptionMode"), None);
    // `pilot.cni.enabled` counts in both.
    let pilot = json!({"pilot": {"cni": {"enabled": true}}});
    assert_eq!(
        init_names(&injected("1.23", pilot.clone(), json!({}))),
        ["istio-validation"]
    );
    assert_eq!(
        init_names(&injected("1.24", pilot, json!({}))),
        ["istio-validation"]
    );
}

#[test]
fn r04_istio_cni_provider_and_chained_turn_multus_on_up_to_1_23() {
    for istio_cni in [
        json!({"enabled": true, "provider": "multus"}),
        json!({"enabled": true, "chained": false}),
    ] {
        let values = json!({"pilot": {"cni": {"enabled": true}}, "istio_cni": istio_cni});
        let old = injected("1.23", values.clone(), json!({}));
        assert_eq!(annotation(&old, MULTUS), Some("default/istio-cni"));
        let new = injected("1.24", values, json!({}));
        assert_eq!(annotation(&new, MULTUS), None);
    }
    // The chart default (chained, provider default) does not.
    let old = injected("1.23", json!({"istio_cni": {"enabled": true}}), json!({}));
    assert_eq!(annotation(&old, MULTUS), None);
}

#[test]
fn r14_multus_entry_is_namespaced_from_1_25() {
    let values = json!({"pilot": {"cni": {"enabled": true, "provider": "multus"}}});
    let existing = json!({MULTUS: r#"[{"name": "a"}]"#});
    let old = injected("1.24", values.clone(), existing.clone());
    assert_eq!(
        annotation(&old, MULTUS),
        Some(r#"[{"name": "a"}, {"name": "default/istio-cni"}]"#)
    );
    let new = injected("1.25", values.clone(), existing);
    assert_eq!(
        annotation(&new, MULTUS),
        Some(r#"[{"name": "a"}, {"name": "istio-cni", "namespace": "default"}]"#)
    );
    // What each version counts as already present.
    let namespaced = json!({MULTUS: r#"[{"name": "istio-cni", "namespace": "default"}]"#});
    let plain = json!({MULTUS: r#"[{"name": "default/istio-cni"}]"#});
    let v125 = injected("1.25", values.clone(), namespaced.clone());
    assert_eq!(annotation(&v125, MULTUS), namespaced[MULTUS].as_str());
    let v124 = injected("1.24", values.clone(), plain.clone());
    assert_eq!(annotation(&v124, MULTUS), plain[MULTUS].as_str());
    let v125 = injected("1.25", values.clone(), plain);
    assert!(annotation(&v125, MULTUS)
        .unwrap()
        .ends_with(r#"{"name": "istio-cni", "namespace": "default"}]"#));
    // The comma-list form and an empty value name `default/istio-cni` in every version.
    for v in ["1.22", "1.32"] {
        let out = injected(v, values.clone(), json!({MULTUS: "a"}));
        assert_eq!(annotation(&out, MULTUS), Some("a, default/istio-cni"));
        let out = injected(v, values.clone(), json!({}));
        assert_eq!(annotation(&out, MULTUS), Some("default/istio-cni"));
    }
}

#[test]
fn r05_core_dump_up_to_1_23() {
    let values = json!({"global": {"proxy": {"enableCoreDump": true}}});
    let old = injected("1.23", values.clone(), json!({}));
    assert_eq!(init_names(&old), ["istio-init", "enable-core-dump"]);
    let dump = container(&old, "enable-core-dump").unwrap();
    assert_eq!(dump["command"], json!(["/bin/sh"]));
    assert_eq!(
        dump["securityContext"]["capabilities"]["add"],
        json!(["SYS_ADMIN"])
    );
    assert_eq!(
        dump["image"],
        container(&old, "istio-init").unwrap()["image"]
    );
    let proxy = container(&old, "istio-proxy").unwrap();
    assert_eq!(proxy["securityContext"]["readOnlyRootFilesystem"], false);
    let new = injected("1.24", values, json!({}));
    assert_eq!(init_names(&new), ["istio-init"]);
    let proxy = container(&new, "istio-proxy").unwrap();
    assert_eq!(proxy["securityContext"]["readOnlyRootFilesystem"], true);
    // The annotation alone, and only the exact text `true`.
    let ann = injected(
        "1.22",
        json!({}),
        json!({"sidecar.istio.io/enableCoreDump": "true"}),
    );
    assert_eq!(init_names(&ann), ["istio-init", "enable-core-dump"]);
    let ann = injected(
        "1.22",
        json!({}),
        json!({"sidecar.istio.io/enableCoreDump": "True"}),
    );
    assert_eq!(init_names(&ann), ["istio-init"]);
}

#[test]
fn r07_force_apply_from_1_24() {
    let values = json!({"global": {"proxy_init": {"forceApplyIptables": true}}});
    let old = injected("1.23", values.clone(), json!({}));
    assert!(!args(&old).contains(&"--force-apply".to_string()));
    let new = injected("1.24", values, json!({}));
    assert_eq!(args(&new).last().map(String::as_str), Some("--force-apply"));
}

#[test]
fn r12_cni_include_inbound_ports_always_from_1_25() {
    let values = json!({"pilot": {"cni": {"enabled": true}},
        "global": {"proxy": {"includeInboundPorts": ""}}});
    let old = injected("1.24", values.clone(), json!({}));
    assert_eq!(
        old["metadata"]["annotations"].get("traffic.sidecar.istio.io/includeInboundPorts"),
        None
    );
    let new = injected("1.25", values, json!({}));
    assert_eq!(
        annotation(&new, "traffic.sidecar.istio.io/includeInboundPorts"),
        Some("")
    );
}

#[test]
fn r13_r17_reroute_virtual_interfaces() {
    let both = json!({
        "traffic.sidecar.istio.io/kubevirtInterfaces": "net1",
        "istio.io/reroute-virtual-interfaces": "net2",
    });
    let k_args = |v: &str| {
        let a = args(&injected(v, json!({}), both.clone()));
        a.iter()
            .enumerate()
            .filter(|(_, x)| *x == "-k")
            .map(|(i, _)| a[i + 1].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(k_args("1.24"), ["net1"]);
    assert_eq!(k_args("1.25"), ["net1", "net2"]);
    assert_eq!(k_args("1.26"), ["net2"]);
    let only_reroute = json!({"istio.io/reroute-virtual-interfaces": "net2"});
    assert!(!args(&injected("1.24", json!({}), only_reroute.clone())).contains(&"-k".into()));
    // With CNI the template copies it from 1.25 (the pod keeps its own copy anyway).
    let cfg = TrafficConfig {
        cni_enabled: true,
        ..TrafficConfig::default()
    };
    let copied = |v: &str| {
        let b = IstioVersion::parse(v).unwrap().behaviour();
        cni_annotations(only_reroute.as_object().unwrap(), &cfg, b)
            .into_iter()
            .any(|(k, _)| k == "istio.io/reroute-virtual-interfaces")
    };
    assert!(!copied("1.24"));
    assert!(copied("1.25"));
}

#[test]
fn r16_no_interception_keeps_user_init_containers_from_1_26() {
    let mut p = pod(json!({"sidecar.istio.io/interceptionMode": "NONE"}));
    p["spec"]["initContainers"] = json!([{"name": "setup", "image": "busybox"}]);
    let old = run(&p, &settings("1.25", json!({}))).unwrap();
    assert_eq!(old["spec"].get("initContainers"), None);
    let new = run(&p, &settings("1.26", json!({}))).unwrap();
    assert_eq!(init_names(&new), ["setup"]);
}

#[test]
fn r24_native_nftables_from_1_27() {
    let values = json!({"global": {"nativeNftables": true}});
    let old = injected("1.26", values.clone(), json!({}));
    assert!(!args(&old).contains(&"--native-nftables".to_string()));
    let new = injected("1.27", values, json!({}));
    assert_eq!(
        args(&new).last().map(String::as_str),
        Some("--native-nftables")
    );
}

#[test]
fn r26_seccomp_profile_from_1_28() {
    let values = json!({"global": {"proxy": {"seccompProfile": {"type": "RuntimeDefault"}}}});
    let old = injected("1.27", values.clone(), json!({}));
    for name in ["istio-init", "istio-proxy"] {
        let sc = &container(&old, name).unwrap()["securityContext"];
        assert_eq!(sc.get("seccompProfile"), None, "{name}");
    }
    let new = injected("1.28", values, json!({}));
    for name in ["istio-init", "istio-proxy"] {
        let sc = &container(&new, name).unwrap()["securityContext"];
        assert_eq!(
            sc["seccompProfile"],
            json!({"type": "RuntimeDefault"}),
            "{name}"
        );
    }
    // The chart default `{}` adds nothing.
    let empty = injected(
        "1.28",
        json!({"global": {"proxy": {"seccompProfile": {}}}}),
        json!({}),
    );
    let sc = &container(&empty, "istio-init").unwrap()["securityContext"];
    assert_eq!(sc.get("seccompProfile"), None);
}

#[test]
fn r32_canonical_name_trim() {
    let mut p = pod(json!({}));
    p["metadata"]["labels"] = json!({"app": "-foo_.", "version": "v1-"});
    let name = |p: &Value, v: &str| {
        let out = run(p, &settings(v, json!({}))).unwrap();
        let labels = &out["metadata"]["labels"];
        (
            labels["service.istio.io/canonical-name"].clone(),
            labels["service.istio.io/canonical-revision"].clone(),
        )
    };
    assert_eq!(name(&p, "1.30"), (json!("-foo_."), json!("v1-")));
    assert_eq!(name(&p, "1.32"), (json!("foo"), json!("v1-")));
    p["metadata"]["labels"] = json!({"app": "web-"});
    assert_eq!(name(&p, "1.30").0, "web");
}

#[test]
fn r33_init_image_from_proxy_init_image_at_1_32() {
    let values = json!({"global": {"hub": "hub.example", "tag": "t",
        "proxy": {"image": "proxyTest"}, "proxy_init": {"image": "initTest"}}});
    let image = |v: &str, annotations: Value| {
        let out = injected(v, values.clone(), annotations);
        container(&out, "istio-init").unwrap()["image"].clone()
    };
    assert_eq!(image("1.30", json!({})), "hub.example/proxyTest:t");
    assert_eq!(image("1.32", json!({})), "hub.example/initTest:t");
    // The image type: the annotation in both; ProxyConfig's only for the proxy image.
    let typed = json!({"sidecar.istio.io/proxyImageType": "distroless"});
    assert_eq!(
        image("1.30", typed.clone()),
        "hub.example/proxyTest:t-distroless"
    );
    assert_eq!(image("1.32", typed), "hub.example/initTest:t-distroless");
    let pc = json!({"proxy.istio.io/config": "image:\n  imageType: debug\n"});
    assert_eq!(image("1.30", pc.clone()), "hub.example/proxyTest:t-debug");
    assert_eq!(image("1.32", pc), "hub.example/initTest:t");
    // A full reference is used as is in both.
    let full = json!({"sidecar.istio.io/proxyImage": "example.com/p:1"});
    assert_eq!(image("1.30", full.clone()), "example.com/p:1");
    assert_eq!(image("1.32", full), "example.com/p:1");
}

#[test]
fn r37_init_strings_are_quoted_from_1_32() {
    let level = json!({"sidecar.istio.io/agentLogLevel": r"a\tb"});
    let old = args(&injected("1.30", json!({}), level.clone()));
    assert_eq!(old.last().unwrap(), "--log_output_level=a\tb");
    let new = args(&injected("1.32", json!({}), level));
    assert_eq!(new.last().unwrap(), r"--log_output_level=a\tb");
    let broken = pod(json!({"sidecar.istio.io/agentLogLevel": r#"a"b"#}));
    assert!(run(&broken, &settings("1.30", json!({}))).is_err());
    let out = run(&broken, &settings("1.32", json!({}))).unwrap();
    assert_eq!(args(&out).last().unwrap(), r#"--log_output_level=a"b"#);
    let image = json!({"sidecar.istio.io/proxyImage": r"example.com/p:\x41"});
    let out = injected("1.30", json!({}), image.clone());
    assert_eq!(
        container(&out, "istio-init").unwrap()["image"],
        "example.com/p:A"
    );
    let out = injected("1.32", json!({}), image);
    assert_eq!(
        container(&out, "istio-init").unwrap()["image"],
        r"example.com/p:\x41"
    );
}

#[test]
fn r37_proxy_strings_are_plain_scalars_before_1_32() {
    let proxy_args = |out: &Value| container(out, "istio-proxy").unwrap()["args"].clone();
    let comment = json!({"sidecar.istio.io/logLevel": "debug #x"});
    let old = injected("1.30", json!({}), comment.clone());
    assert_eq!(proxy_args(&old)[4], "--proxyLogLevel=debug");
    let new = injected("1.32", json!({}), comment);
    assert_eq!(proxy_args(&new)[4], "--proxyLogLevel=debug #x");
    let colon = pod(json!({"sidecar.istio.io/componentLogLevel": "misc: error"}));
    assert!(run(&colon, &settings("1.30", json!({}))).is_err());
    let out = run(&colon, &settings("1.32", json!({}))).unwrap();
    assert_eq!(proxy_args(&out)[5], "--proxyComponentLogLevel=misc: error");
    // `sidecar.istio.io/bootstrapOverride: "123"` renders the number 123 before 1.32.
    let numeric = pod(json!({"sidecar.istio.io/bootstrapOverride": "123"}));
    assert!(run(&numeric, &settings("1.30", json!({}))).is_err());
    let out = run(&numeric, &settings("1.32", json!({}))).unwrap();
    let volume = out["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "custom-bootstrap-volume")
        .unwrap();
    assert_eq!(volume["configMap"]["name"], "123");
    let image = json!({"sidecar.istio.io/proxyImage": r"example.com/p:\x41"});
    let out = injected("1.30", json!({}), image.clone());
    assert_eq!(
        container(&out, "istio-proxy").unwrap()["image"],
        "example.com/p:A"
    );
    let out = injected("1.32", json!({}), image);
    assert_eq!(
        container(&out, "istio-proxy").unwrap()["image"],
        r"example.com/p:\x41"
    );
}

#[test]
fn hbone_proxy_metadata_adds_the_tunnel_label_in_every_version() {
    let mesh = json!({"defaultConfig": {"proxyMetadata": {"ISTIO_META_ENABLE_HBONE": "true"}}});
    for v in ["1.22", "1.32"] {
        let s = Settings {
            mesh_config: mesh.clone(),
            ..settings(v, json!({}))
        };
        let out = run(&pod(json!({})), &s).unwrap();
        assert_eq!(
            out["metadata"]["labels"]["networking.istio.io/tunnel"],
            "http"
        );
        let plain = run(&pod(json!({})), &settings(v, json!({}))).unwrap();
        assert_eq!(
            plain["metadata"]["labels"].get("networking.istio.io/tunnel"),
            None
        );
    }
}
