//! `istio-proxy`'s env, in the template's order: identity and downward-API values,
//! `PROXY_CONFIG`, the pod's ports and app containers, cluster/mesh identity, proxyMetadata.

use crate::json::value;
use crate::json::Path;
use serde_json::Value;

use super::{Render, PROXY_CONTAINER};
use crate::go;
use crate::values::helm::Key;
use crate::values::mesh::str_at;
use crate::values::proxy_config::{proxy_config_env, proxy_metadata};
use crate::versions::Change;

const BOOTSTRAP_OVERRIDE: &str = "sidecar.istio.io/bootstrapOverride";
const WORKLOAD_NAME_LABEL: &str = "service.istio.io/workload-name";

pub fn env_list(pairs: &[(String, String)]) -> Value {
    Value::Array(
        pairs
            .iter()
            .map(|(k, v)| value!({"name": k, "value": v}))
            .collect(),
    )
}

fn field_env(name: &str, path: &str) -> Value {
    value!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}})
}

/// A `resourceFieldRef` env var: `divisor: "1"` from 1.29 (R27); before, the template names no
/// divisor (Go marshals the zero quantity, which the comparison drops).
fn resource_env(r: &Render, name: &str, resource: &str) -> Value {
    if r.behaviour.has(Change::ResourceDivisor) {
        value!({"name": name, "valueFrom": {"resourceFieldRef": {"divisor": "1", "resource": resource}}})
    } else {
        value!({"name": name, "valueFrom": {"resourceFieldRef": {"resource": resource}}})
    }
}

fn value_env(name: &str, value: impl Into<String>) -> Value {
    value!({"name": name, "value": (value.into())})
}

/// `ISTIO_META_POD_PORTS`: the app containers' ports, one JSON object per line (the
/// template's `structToJSON`, Go's `ContainerPort` field order), laid out as the template's
/// whitespace makes them.
fn pod_ports(r: &Render) -> String {
    let mut out = String::from("[");
    let mut first = true;
    let containers = r
        .pod
        .at(&["spec", "containers"])
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    // A pod's own `istio-proxy` (a customization merged over the template) is not an app
    // container: listing its ports made re-injection, which no longer sees it, change the env.
    let apps = containers
        .iter()
        .filter(|c| c.get("name").and_then(Value::as_str) != Some(PROXY_CONTAINER));
    for c in apps {
        for p in c
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let mut m: Vec<(&str, &Value)> = Vec::new();
            for (key, omit_zero) in [
                ("name", true),
                ("hostPort", true),
                ("containerPort", false),
                ("protocol", true),
                ("hostIP", true),
            ] {
                match p.get(key) {
                    None | Some(Value::Null) => {}
                    Some(Value::String(s)) if s.is_empty() && omit_zero => {}
                    Some(Value::Number(n)) if n.as_i64() == Some(0) && omit_zero => {}
                    Some(v) => m.push((key, v)),
                }
            }
            out.push_str("\n    ");
            if !first {
                out.push(',');
            }
            out.push_str(&go::json::object(&m));
            first = false;
        }
    }
    out.push_str("\n]");
    out
}

/// `ISTIO_META_WORKLOAD_NAME`: the derived workload name; from 1.25 the pod label
/// `service.istio.io/workload-name` when it is non-empty (R11).
fn workload_name(r: &Render) -> String {
    if r.behaviour.has(Change::WorkloadNameLabel) {
        let label = r.labels.get(WORKLOAD_NAME_LABEL).map(go::fmt::sprint);
        if let Some(label) = label.filter(|l| !l.is_empty()) {
            return label;
        }
    }
    r.workload.name.clone()
}

/// Does some mesh `extensionProviders[].opentelemetry` ask for OpenTelemetry semantic
/// conventions (`serviceAttributeEnrichment: OTEL_SEMANTIC_CONVENTIONS`)?
fn otel_semantic_conventions(mesh: &Value) -> bool {
    let providers = mesh.get("extensionProviders").and_then(Value::as_array);
    providers.into_iter().flatten().any(|p| {
        let otel = p.get("opentelemetry");
        let enrichment = otel.and_then(|o| {
            o.get("serviceAttributeEnrichment")
                .or_else(|| o.get("service_attribute_enrichment"))
        });
        enrichment.and_then(Value::as_str) == Some("OTEL_SEMANTIC_CONVENTIONS")
    })
}

/// An image's tag (after the last `:` that follows the last `/`) and digest (after `@`).
fn image_tag_digest(image: &str) -> (&str, &str) {
    let (image, digest) = image.split_once('@').unwrap_or((image, ""));
    let slash = image.rfind('/');
    let tag = match image.rfind(':') {
        Some(colon) if slash.is_none_or(|s| colon > s) => &image[colon + 1..],
        _ => "",
    };
    (tag, digest)
}

/// `OTEL_RESOURCE_ATTRIBUTES` (the template's `otelResourceAttributes`, from 1.30, R30):
/// `service.namespace`, `service.version` and `service.instance.id` from the
/// `resource.opentelemetry.io/*` annotations, else the namespace, the
/// `app.kubernetes.io/version` label or the only container's image, and
/// `<namespace>.$(POD_NAME).<first container>`. Empty unless the mesh asks for it.
fn otel_resource_attributes(r: &Render) -> String {
    if !otel_semantic_conventions(r.mesh) {
        return String::new();
    }
    let text = |m: &serde_json::Map<String, Value>, k: &str| {
        m.get(k).map(go::fmt::sprint).filter(|v| !v.is_empty())
    };
    let ann = |k: &str| text(r.annotations, &["resource.opentelemetry.io/", k].concat());
    let containers = r
        .pod
        .at(&["spec", "containers"])
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let namespace = &r.workload.namespace;
    let mut attrs = Vec::new();
    if let Some(v) = ann("service.namespace") {
        attrs.push(["service.namespace=", &v].concat());
    } else if !namespace.is_empty() {
        attrs.push(["service.namespace=", namespace].concat());
    }
    if let Some(v) = ann("service.version").or_else(|| text(r.labels, "app.kubernetes.io/version"))
    {
        attrs.push(["service.version=", &v].concat());
    } else if let [only] = containers {
        let image = only
            .get("image")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let version = match image_tag_digest(image) {
            ("", "") => None,
            (tag, "") => Some(tag.to_string()),
            ("", digest) => Some(digest.to_string()),
            (tag, digest) => Some([tag, "@", digest].concat()),
        };
        if let Some(v) = version {
            attrs.push(["service.version=", &v].concat());
        }
    }
    if let Some(v) = ann("service.instance.id") {
        attrs.push(["service.instance.id=", &v].concat());
    } else if let Some(first) = containers.first() {
        let name = first
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        attrs.push(["service.instance.id=", namespace, ".$(POD_NAME).", name].concat());
    }
    attrs.join(",")
}

/// The `istio-proxy` env, in template order.
pub fn proxy_env(r: &Render) -> Vec<Value> {
    let h = r.helm;
    let mut env = Vec::new();
    if str_at(r.mesh, &["inboundTrafficPolicy", "mode"]) == Some("LOCALHOST") {
        env.push(value_env(
            "REWRITE_PROBE_LEGACY_LOCALHOST_DESTINATION",
            "true",
        ));
    }
    env.push(value_env(
        "PILOT_CERT_PROVIDER",
        h.text(Key::PilotCertProvider),
    ));
    let ca_addr = match h.text(Key::CaAddress) {
        s if !s.is_empty() => s,
        _ => {
            let rev = h.text(Key::Revision);
            let dash = if rev.is_empty() { "" } else { "-" };
            let ns = h.text(Key::IstioNamespace);
            ["istiod", dash, &rev, ".", &ns, ".svc:15012"].concat()
        }
    };
    env.push(value_env("CA_ADDR", ca_addr));
    env.push(field_env("POD_NAME", "metadata.name"));
    env.push(field_env("POD_NAMESPACE", "metadata.namespace"));
    env.push(field_env("INSTANCE_IP", "status.podIP"));
    env.push(field_env("SERVICE_ACCOUNT", "spec.serviceAccountName"));
    env.push(field_env("HOST_IP", "status.hostIP"));
    env.push(resource_env(r, "ISTIO_CPU_LIMIT", "limits.cpu"));
    let proxy_config = match r.proxy_config_env {
        Some(text) => text.to_string(),
        None => proxy_config_env(r.pc()),
    };
    env.push(value_env("PROXY_CONFIG", proxy_config));
    env.push(value_env("ISTIO_META_POD_PORTS", pod_ports(r)));
    env.push(value_env(
        "ISTIO_META_APP_CONTAINERS",
        r.app_containers().join(","),
    ));
    env.push(resource_env(r, "GOMEMLIMIT", "limits.memory"));
    if !r.behaviour.has(Change::NoGomaxprocs) {
        env.push(resource_env(r, "GOMAXPROCS", "limits.cpu"));
    }
    let cluster = match h.text(Key::ClusterName) {
        s if s.is_empty() => "Kubernetes".to_string(),
        s => s,
    };
    env.push(value_env("ISTIO_META_CLUSTER_ID", cluster));
    env.push(field_env("ISTIO_META_NODE_NAME", "spec.nodeName"));
    env.push(value_env(
        "ISTIO_META_INTERCEPTION_MODE",
        r.interception_mode(),
    ));
    let network = h.text(Key::Network);
    if !network.is_empty() {
        env.push(value_env("ISTIO_META_NETWORK", network));
    }
    let workload_name = workload_name(r);
    if !workload_name.is_empty() {
        env.push(value_env("ISTIO_META_WORKLOAD_NAME", workload_name));
    }
    if let Some(owner) = r.workload.owner() {
        env.push(value_env("ISTIO_META_OWNER", owner));
    }
    if r.has(BOOTSTRAP_OVERRIDE) {
        env.push(value_env(
            "ISTIO_BOOTSTRAP_OVERRIDE",
            "/etc/istio/custom-bootstrap/custom_bootstrap.json",
        ));
    }
    let trust_domain = match str_at(r.mesh, &["trustDomain"]).filter(|s| !s.is_empty()) {
        Some(t) => t.to_string(),
        None => h.text(Key::TrustDomain),
    };
    let mesh_id = match h.text(Key::MeshId) {
        s if !s.is_empty() => s,
        _ => trust_domain.clone(),
    };
    if !mesh_id.is_empty() {
        env.push(value_env("ISTIO_META_MESH_ID", mesh_id));
    }
    if !trust_domain.is_empty() {
        env.push(value_env("TRUST_DOMAIN", trust_domain));
    }
    if r.behaviour.has(Change::OtelResourceAttributes) {
        let attrs = otel_resource_attributes(r);
        if !attrs.is_empty() {
            env.push(value_env("OTEL_RESOURCE_ATTRIBUTES", attrs));
        }
    }
    for (k, val) in proxy_metadata(r.pc()) {
        env.push(value_env(&k, val));
    }
    env
}
