//! The proxy container, its env and the volumes on both sides of each version boundary
//! (`crate::versions` rows R01, R06, R11, R18, R22, R23, R27, R28, R34, R35).

use crate::admission::inject::{inject, Context};
use crate::settings::Settings;
use crate::versions::IstioVersion;
use serde_json::{json, Value};

fn pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx"}]}
    })
}

fn settings(version: &str, values: Value) -> Settings {
    Settings {
        istio_version: IstioVersion::parse(version).unwrap(),
        native_sidecars: Some(false),
        values,
        ..Settings::default()
    }
}

fn run_pod(pod: &Value, version: &str, values: Value) -> Result<Value, String> {
    let s = settings(version, values);
    inject(
        pod,
        &Context {
            settings: &s,
            namespace: "apps",
        },
    )
    .map_err(|e| e.0)
}

fn run(version: &str, values: Value) -> Value {
    run_pod(&pod(), version, values).unwrap()
}

fn proxy(pod: &Value) -> &Value {
    pod["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "istio-proxy")
        .unwrap()
}

fn env_names(pod: &Value) -> Vec<String> {
    proxy(pod)["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

fn env<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    proxy(pod)["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
}

fn volume<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    pod["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect()
}

fn mounts(pod: &Value) -> Vec<String> {
    names(&proxy(pod)["volumeMounts"])
}

#[test]
fn gomaxprocs_follows_gomemlimit_up_to_1_30_only() {
    let old = run("1.30", json!({}));
    let names = env_names(&old);
    let mem = names.iter().position(|n| n == "GOMEMLIMIT").unwrap();
    assert_eq!(names[mem + 1], "GOMAXPROCS");
    assert_eq!(
        env(&old, "GOMAXPROCS").unwrap()["valueFrom"],
        json!({"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1"}})
    );
    let main = run("1.32", json!({}));
    assert!(env(&main, "GOMAXPROCS").is_none());
    let names = env_names(&main);
    let mem = names.iter().position(|n| n == "GOMEMLIMIT").unwrap();
    assert_eq!(names[mem + 1], "ISTIO_META_CLUSTER_ID");
}

#[test]
fn resource_divisor_from_1_29() {
    let old = run("1.28", json!({}));
    for name in ["ISTIO_CPU_LIMIT", "GOMEMLIMIT", "GOMAXPROCS"] {
        let field = &env(&old, name).unwrap()["valueFrom"]["resourceFieldRef"];
        assert!(field.get("divisor").is_none(), "{name}: {field}");
    }
    let new = run("1.29", json!({}));
    for name in ["ISTIO_CPU_LIMIT", "GOMEMLIMIT", "GOMAXPROCS"] {
        assert_eq!(
            env(&new, name).unwrap()["valueFrom"]["resourceFieldRef"]["divisor"],
            "1"
        );
    }
}

#[test]
fn outlier_log_path_from_1_23() {
    let values = json!({"global": {"proxy": {"outlierLogPath": "/dev/stdout"}, "logAsJson": true}});
    let args = |v: &Value| proxy(v)["args"].as_array().unwrap().clone();
    let old = args(&run("1.22", values.clone()));
    assert_eq!(old.last().unwrap(), "--log_as_json");
    assert!(!old.iter().any(|a| a.as_str().unwrap().contains("outlier")));
    let new = args(&run("1.23", values));
    assert_eq!(
        new[new.len() - 2..],
        [
            json!("--log_as_json"),
            json!("--outlierLogPath=/dev/stdout")
        ]
    );
    let unset = args(&run("1.23", json!({})));
    assert!(!unset
        .iter()
        .any(|a| a.as_str().unwrap().contains("outlier")));
}

#[test]
fn kube_ca_cert_for_the_kubernetes_provider_up_to_1_23() {
    let values = json!({"global": {"pilotCertProvider": "kubernetes"}});
    let old = run("1.23", values.clone());
    let m = mounts(&old);
    let at = m.iter().position(|n| n == "kube-ca-cert").unwrap();
    assert_eq!(m[at + 1], "istio-data");
    assert_eq!(
        proxy(&old)["volumeMounts"][at],
        json!({"name": "kube-ca-cert", "mountPath": "/var/run/secrets/istio/kubernetes"})
    );
    assert_eq!(
        volume(&old, "kube-ca-cert").unwrap(),
        &json!({"name": "kube-ca-cert", "configMap": {"name": "kube-root-ca.crt"}})
    );
    assert!(volume(&old, "istiod-ca-cert").is_none());
    let new = run("1.24", values);
    assert!(!mounts(&new).contains(&"kube-ca-cert".to_string()));
    assert!(volume(&new, "kube-ca-cert").is_none());
    // Only for that provider.
    assert!(volume(&run("1.23", json!({})), "kube-ca-cert").is_none());
}

#[test]
fn workload_name_label_from_1_25() {
    let name = |p: &Value, v: &str| {
        let out = run_pod(p, v, json!({})).unwrap();
        env(&out, "ISTIO_META_WORKLOAD_NAME").unwrap()["value"].clone()
    };
    let mut p = pod();
    p["metadata"]["labels"]["service.istio.io/workload-name"] = json!("checkout");
    assert_eq!(name(&p, "1.24"), "web");
    assert_eq!(name(&p, "1.25"), "checkout");
    // An empty label falls back to the workload name.
    p["metadata"]["labels"]["service.istio.io/workload-name"] = json!("");
    assert_eq!(name(&p, "1.25"), "web");
}

#[test]
fn crl_volume_from_1_27_for_every_provider_mount_for_istiod_only() {
    let old = run("1.26", json!({}));
    assert!(volume(&old, "istio-ca-crl").is_none());
    assert!(!mounts(&old).contains(&"istio-ca-crl".to_string()));
    let new = run("1.27", json!({}));
    let m = mounts(&new);
    let at = m.iter().position(|n| n == "istiod-ca-cert").unwrap();
    assert_eq!(m[at + 1], "istio-ca-crl");
    let v = names(&new["spec"]["volumes"]);
    let at = v.iter().position(|n| n == "istiod-ca-cert").unwrap();
    assert_eq!(v[at + 1], "istio-ca-crl");
    assert_eq!(
        volume(&new, "istio-ca-crl").unwrap(),
        &json!({"name": "istio-ca-crl", "configMap": {"name": "istio-ca-crl", "optional": true}})
    );
    for version in ["1.27", "1.32"] {
        let other = run(version, json!({"global": {"pilotCertProvider": "custom"}}));
        assert!(volume(&other, "istio-ca-crl").is_some(), "{version}");
        assert!(!mounts(&other).contains(&"istio-ca-crl".to_string()));
    }
}

#[test]
fn crl_config_map_name_from_1_29() {
    let values = json!({"pilot": {"crlConfigMapName": "my-crl"}});
    let name = |v: &str| {
        volume(&run(v, values.clone()), "istio-ca-crl").unwrap()["configMap"]["name"].clone()
    };
    assert_eq!(name("1.28"), "istio-ca-crl");
    assert_eq!(name("1.29"), "my-crl");
}

#[test]
fn trust_bundle_name_from_1_27() {
    let values = json!({"global": {"trustBundleName": "my-root"}});
    let name = |v: &str| {
        volume(&run(v, values.clone()), "istiod-ca-cert").unwrap()["configMap"]["name"].clone()
    };
    assert_eq!(name("1.26"), "istio-ca-root-cert");
    assert_eq!(name("1.27"), "my-root");
}

#[test]
fn cluster_trust_bundle_from_1_26() {
    let values = json!({"pilot": {"env": {"ENABLE_CLUSTER_TRUST_BUNDLE_API": true}}});
    let old = run("1.25", values.clone());
    assert_eq!(
        volume(&old, "istiod-ca-cert").unwrap(),
        &json!({"name": "istiod-ca-cert", "configMap": {"name": "istio-ca-root-cert"}})
    );
    let new = run("1.26", values);
    assert_eq!(
        volume(&new, "istiod-ca-cert").unwrap(),
        &json!({"name": "istiod-ca-cert", "projected": {"sources": [{"clusterTrustBundle": {
            "name": "istio.io:istiod-ca:root-cert", "path": "root-cert.pem"}}]}})
    );
    let named = run(
        "1.32",
        json!({"pilot": {"env": {"ENABLE_CLUSTER_TRUST_BUNDLE_API": true}},
               "global": {"trustBundleName": "b"}}),
    );
    assert_eq!(
        volume(&named, "istiod-ca-cert").unwrap()["projected"]["sources"][0]["clusterTrustBundle"]
            ["name"],
        "istio.io:istiod-ca:b"
    );
    // `eq "true" true` fails the template: the injection fails.
    let text = json!({"pilot": {"env": {"ENABLE_CLUSTER_TRUST_BUNDLE_API": "true"}}});
    let err = run_pod(&pod(), "1.26", text.clone()).unwrap_err();
    assert!(err.contains("ENABLE_CLUSTER_TRUST_BUNDLE_API"), "{err}");
    assert!(run_pod(&pod(), "1.25", text).is_ok());
}

#[test]
fn empty_proxy_config_image_type_falls_back_to_the_variant_from_1_32() {
    let mut p = pod();
    p["metadata"]["annotations"] = json!({"proxy.istio.io/config": "image: {}"});
    let values = json!({"global": {"variant": "distroless", "hub": "h", "tag": "t"}});
    let image =
        |p: &Value, v: &str| proxy(&run_pod(p, v, values.clone()).unwrap())["image"].clone();
    assert_eq!(image(&p, "1.30"), "h/proxyv2:t");
    assert_eq!(image(&p, "1.32"), "h/proxyv2:t-distroless");
    // Without a ProxyConfig image, every version uses the variant.
    assert_eq!(image(&pod(), "1.22"), "h/proxyv2:t-distroless");
    // A set imageType wins, the annotation over it.
    p["metadata"]["annotations"]["proxy.istio.io/config"] = json!("image: {imageType: debug}");
    assert_eq!(image(&p, "1.30"), "h/proxyv2:t-debug");
    p["metadata"]["annotations"]["sidecar.istio.io/proxyImageType"] = json!("default");
    assert_eq!(image(&p, "1.32"), "h/proxyv2:t");
}

fn otel_env(p: &Value, version: &str, mesh: Value) -> Option<String> {
    let s = Settings {
        mesh_config: mesh,
        ..settings(version, json!({}))
    };
    let out = inject(
        p,
        &Context {
            settings: &s,
            namespace: "apps",
        },
    )
    .unwrap();
    let names = env_names(&out);
    if let Some(at) = names.iter().position(|n| n == "OTEL_RESOURCE_ATTRIBUTES") {
        assert_eq!(names[at - 1], "TRUST_DOMAIN");
        assert_eq!(names.get(at + 1).map(String::as_str), Some("META_X"));
    }
    env(&out, "OTEL_RESOURCE_ATTRIBUTES").map(|e| e["value"].as_str().unwrap().to_string())
}

#[test]
fn otel_resource_attributes_from_1_30() {
    let mesh = json!({
        "extensionProviders": [{"name": "otel", "opentelemetry": {
            "service": "c.ns.svc", "port": 4317,
            "serviceAttributeEnrichment": "OTEL_SEMANTIC_CONVENTIONS"}}],
        "defaultConfig": {"proxyMetadata": {"META_X": "1"}},
    });
    let mut p = pod();
    p["spec"]["containers"][0]["image"] = json!("reg:5000/nginx:1.21@sha256:abc");
    assert_eq!(otel_env(&p, "1.29", mesh.clone()), None);
    assert_eq!(
        otel_env(&p, "1.30", mesh.clone()).as_deref(),
        Some("service.namespace=apps,service.version=1.21@sha256:abc,service.instance.id=apps.$(POD_NAME).web")
    );
    // Annotations, then the version label; the image only for a single container.
    p["metadata"]["annotations"] = json!({"resource.opentelemetry.io/service.instance.id": "i"});
    p["metadata"]["labels"]["app.kubernetes.io/version"] = json!("v3");
    assert_eq!(
        otel_env(&p, "1.32", mesh.clone()).as_deref(),
        Some("service.namespace=apps,service.version=v3,service.instance.id=i")
    );
    let mut two = pod();
    two["spec"]["containers"] = json!([{"name": "a", "image": "x:1"}, {"name": "b", "image": "y"}]);
    assert_eq!(
        otel_env(&two, "1.30", mesh).as_deref(),
        Some("service.namespace=apps,service.instance.id=apps.$(POD_NAME).a")
    );
    // Without semantic conventions, nothing.
    let plain = json!({"extensionProviders": [{"name": "otel", "opentelemetry": {"service": "c", "port": 1}}],
        "defaultConfig": {"proxyMetadata": {"META_X": "1"}}});
    assert_eq!(otel_env(&p, "1.30", plain), None);
}
