//! Random AdmissionRequests and the invariants every answer must satisfy, shared by the
//! `cargo fuzz` target (`fuzz/`, native [`crate::admission::evaluate`]) and `revinject fuzz`
//! (through `policy.wasm`). Not compiled into the wasm policy.
//!
//! Randomness comes from an [`Entropy`](crate::testgen::Entropy): a seeded
//! [`SplitMix`](crate::testgen::SplitMix) for reproducible runs, or
//! [`ByteEntropy`](crate::testgen::ByteEntropy) over libFuzzer's input so coverage guidance
//! steers the structure. (Full paths: `lib.rs` documents the module too, and rustdoc
//! resolves the joined text from the crate root.)

use serde_json::{json, Map, Value};

mod invariants;

pub use invariants::{
    check, check_preserved, first_difference, native, well_formed, Answer, CaseCluster, Evaluate,
    Tally,
};

/// A source of random numbers.
pub trait Entropy {
    fn next_u64(&mut self) -> u64;
}

/// SplitMix64: tiny, seedable, good enough to explore input shapes.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl Entropy for SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Entropy read from a byte string (zeros once it is used up).
#[derive(Debug, Clone)]
pub struct ByteEntropy<'a> {
    data: &'a [u8],
}

impl<'a> ByteEntropy<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        ByteEntropy { data }
    }
}

impl Entropy for ByteEntropy<'_> {
    /// Two bytes per number: most choices are small, and libFuzzer's inputs start short.
    fn next_u64(&mut self) -> u64 {
        let n = self.data.len().min(2);
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head.iter().fold(0, |acc, b| (acc << 8) | u64::from(*b))
    }
}

/// Helpers over an [`Entropy`].
pub struct Gen<'e> {
    e: &'e mut dyn Entropy,
}

impl<'e> Gen<'e> {
    pub fn new(e: &'e mut dyn Entropy) -> Self {
        Gen { e }
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.e.next_u64() % n as u64) as usize
    }

    /// True `percent` times out of 100.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items.get(self.below(items.len())).copied().unwrap_or("")
    }

    /// A short string: usually a DNS-label-like word, sometimes odd characters.
    pub fn word(&mut self) -> String {
        const ODD: [&str; 8] = ["", "-", "ünïcødé", "a b", "\"q\"", "$(VAR)", "x/y", "0"];
        if self.chance(8) {
            return self.pick(&ODD).to_string();
        }
        let len = 1 + self.below(10);
        (0..len)
            .map(|_| char::from(b'a' + self.below(26) as u8))
            .collect()
    }

    fn port(&mut self) -> u64 {
        if self.chance(70) {
            [80, 443, 8080, 9090, 15001, 15006, 15020, 15021, 15090, 3306][self.below(10)]
        } else {
            1 + self.below(65535) as u64
        }
    }
}

/// Revision-related label values a canary setup knows (and one it does not).
const REVS: [&str; 5] = ["default", "canary", "prod", "stable", ""];

/// Namespace names: mostly tenants, sometimes an ignored one.
const NAMESPACES: [&str; 7] = [
    "shop",
    "team-a",
    "payments",
    "kube-system",
    "default",
    "web",
    "apps",
];

/// Per-pod annotations with plausible (and some invalid) values.
const ANNOTATIONS: &[(&str, &[&str])] = &[
    ("sidecar.istio.io/inject", &["true", "false", "yes"]),
    ("sidecar.istio.io/proxyCPU", &["100m", "2", "bogus"]),
    ("sidecar.istio.io/proxyMemory", &["128Mi", "1Gi"]),
    ("sidecar.istio.io/proxyCPULimit", &["1", "500m"]),
    ("sidecar.istio.io/proxyMemoryLimit", &["1Gi"]),
    ("sidecar.istio.io/proxyImage", &["example/envoy:1"]),
    ("sidecar.istio.io/logLevel", &["debug", "warning"]),
    ("sidecar.istio.io/componentLogLevel", &["misc:error"]),
    (
        "sidecar.istio.io/interceptionMode",
        &["REDIRECT", "TPROXY", "NONE", "bad"],
    ),
    ("sidecar.istio.io/nativeSidecar", &["true", "false"]),
    ("sidecar.istio.io/rewriteAppHTTPProbers", &["true", "false"]),
    ("sidecar.istio.io/enableCoreDump", &["true"]),
    (
        "sidecar.istio.io/userVolume",
        &[r#"{"extra":{"emptyDir":{}}}"#, "not json"],
    ),
    (
        "sidecar.istio.io/userVolumeMount",
        &[r#"{"extra":{"mountPath":"/extra"}}"#],
    ),
    (
        "traffic.sidecar.istio.io/includeOutboundIPRanges",
        &["*", "10.0.0.0/8", "", "10.0.0.0/33"],
    ),
    (
        "traffic.sidecar.istio.io/excludeOutboundIPRanges",
        &["169.254.169.254/32", "1.2.3.4/32"],
    ),
    (
        "traffic.sidecar.istio.io/includeInboundPorts",
        &["*", "8080,9090", ""],
    ),
    (
        "traffic.sidecar.istio.io/excludeInboundPorts",
        &["9090", "70000"],
    ),
    ("traffic.sidecar.istio.io/excludeOutboundPorts", &["3306"]),
    ("traffic.sidecar.istio.io/excludeInterfaces", &["eth1"]),
    ("status.sidecar.istio.io/port", &["15020", "0", "12345"]),
    (
        "readiness.status.sidecar.istio.io/periodSeconds",
        &["5", "x"],
    ),
    (
        "proxy.istio.io/config",
        &[
            "concurrency: 2",
            "holdApplicationUntilProxyStarts: true",
            "{",
            "terminationDrainDuration: 30s",
        ],
    ),
    ("prometheus.istio.io/merge-metrics", &["true", "false"]),
    ("prometheus.io/scrape", &["true"]),
    ("prometheus.io/port", &["9090"]),
    ("kubectl.kubernetes.io/default-container", &["app"]),
    ("example.com/owner", &["team-a"]),
];

/// One generated input: the request and the labels of its Namespace (`None`: lookup fails).
#[derive(Debug, Clone)]
pub struct Case {
    pub request: Value,
    pub namespace: String,
    pub namespace_labels: Option<Map<String, Value>>,
}

impl Case {
    /// The Namespace object the cluster answers for this case.
    pub fn namespace_object(&self) -> Result<Value, String> {
        match &self.namespace_labels {
            Some(labels) => Ok(json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": self.namespace, "labels": labels}
            })),
            None => Err(format!(
                "namespaces \"{}\" is forbidden (fuzz)",
                self.namespace
            )),
        }
    }
}

fn rev_labels(g: &mut Gen, into: &mut Map<String, Value>, injection_key: &str) {
    if g.chance(35) {
        into.insert(
            injection_key.into(),
            json!(g.pick(&["enabled", "enabled", "disabled", "true", "false"])),
        );
    }
    if g.chance(50) {
        into.insert("istio.io/rev".into(), json!(g.pick(&REVS)));
    }
}

fn probe(g: &mut Gen, ports: &[u64]) -> Value {
    let port = match (ports.first(), g.below(3)) {
        (Some(p), 0) => json!(p),
        (_, 1) => json!("http"),
        _ => json!(g.port()),
    };
    let mut p = match g.below(4) {
        0 => json!({"httpGet": {"path": format!("/{}", g.word()), "port": port}}),
        1 => json!({"tcpSocket": {"port": port}}),
        2 => json!({"grpc": {"port": g.port()}}),
        _ => json!({"exec": {"command": ["cat", "/tmp/healthy"]}}),
    };
    if g.chance(30) {
        p["periodSeconds"] = json!(1 + g.below(30));
    }
    if g.chance(20) {
        p["httpGet"]["scheme"] = json!("HTTPS");
        if p["httpGet"].get("path").is_none() {
            p.as_object_mut().map(|o| o.remove("httpGet"));
        }
    }
    p
}

fn container(g: &mut Gen, name: String, volumes: &[String]) -> Value {
    let mut c = Map::new();
    c.insert("name".into(), json!(name));
    c.insert(
        "image".into(),
        json!(format!("example/{}:{}", g.word(), g.below(10))),
    );
    let ports: Vec<u64> = (0..g.below(4)).map(|_| g.port()).collect();
    if !ports.is_empty() {
        let list: Vec<Value> = ports
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut port = json!({"containerPort": p});
                if i == 0 && g.chance(50) {
                    port["name"] = json!("http");
                }
                if g.chance(30) {
                    port["protocol"] = json!(g.pick(&["TCP", "UDP", "SCTP"]));
                }
                port
            })
            .collect();
        c.insert("ports".into(), Value::Array(list));
    }
    for key in ["readinessProbe", "livenessProbe", "startupProbe"] {
        if g.chance(35) {
            c.insert(key.into(), probe(g, &ports));
        }
    }
    if g.chance(15) {
        c.insert(
            "lifecycle".into(),
            json!({"preStop": {"httpGet": {"path": "/stop", "port": g.port()}}}),
        );
    }
    if g.chance(40) {
        let env: Vec<Value> = (0..g.below(6))
            .map(|i| match g.below(3) {
                0 => json!({"name": format!("E{i}"), "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
                _ => json!({"name": format!("E{i}"), "value": g.word()}),
            })
            .collect();
        c.insert("env".into(), Value::Array(env));
    }
    if g.chance(30) {
        c.insert(
            "resources".into(),
            json!({"requests": {"cpu": "10m", "memory": "16Mi"}}),
        );
    }
    if g.chance(15) {
        c.insert(
            "securityContext".into(),
            json!({"runAsUser": g.below(2000), "readOnlyRootFilesystem": g.chance(50)}),
        );
    }
    if !volumes.is_empty() && g.chance(50) {
        let v = &volumes[g.below(volumes.len())];
        c.insert(
            "volumeMounts".into(),
            json!([{"name": v, "mountPath": format!("/mnt/{v}")}]),
        );
    }
    Value::Object(c)
}

/// Generate one request.
pub fn case(e: &mut dyn Entropy) -> Case {
    let mut g = Gen::new(e);
    let namespace = g.pick(&NAMESPACES).to_string();
    let mut ns_labels = Map::new();
    rev_labels(&mut g, &mut ns_labels, "istio-injection");
    if g.chance(20) {
        ns_labels.insert("team".into(), json!(g.word()));
    }

    let mut labels = Map::new();
    labels.insert("app".into(), json!(g.word()));
    rev_labels(&mut g, &mut labels, "sidecar.istio.io/inject");
    if g.chance(30) {
        labels.insert("version".into(), json!(format!("v{}", g.below(3))));
    }
    if g.chance(15) {
        labels.insert(g.word(), json!(g.word()));
    }
    let mut annotations = Map::new();
    for _ in 0..g.below(5) {
        let (k, values) = ANNOTATIONS[g.below(ANNOTATIONS.len())];
        annotations.insert(k.into(), json!(g.pick(values)));
    }

    let volumes: Vec<String> = (0..g.below(3)).map(|i| format!("vol{i}")).collect();
    let volume_list: Vec<Value> = volumes
        .iter()
        .map(|v| match g.below(4) {
            0 => json!({"name": v, "emptyDir": {}}),
            1 => json!({"name": v, "configMap": {"name": g.word()}}),
            2 => json!({"name": v, "secret": {"secretName": g.word()}}),
            _ => json!({"name": v, "hostPath": {"path": "/var/log"}}),
        })
        .collect();
    let mut containers = Vec::new();
    for i in 0..1 + g.below(3) {
        // Sometimes the pod customizes the proxy itself (Istio merges it over the template).
        // At most one: duplicate names are invalid (the API server refuses them after admission).
        let proxy_taken = containers
            .iter()
            .any(|c: &Value| c.get("name") == Some(&json!("istio-proxy")));
        let name = if i > 0 && !proxy_taken && g.chance(15) {
            "istio-proxy".to_string()
        } else {
            format!(
                "c{i}-{}",
                g.word().replace(|c: char| !c.is_ascii_alphanumeric(), "")
            )
        };
        containers.push(container(&mut g, name, &volumes));
    }
    let mut spec = Map::new();
    spec.insert("containers".into(), Value::Array(containers));
    if g.chance(20) {
        spec.insert(
            "initContainers".into(),
            json!([container(&mut g, "setup".into(), &volumes)]),
        );
    }
    if !volume_list.is_empty() {
        spec.insert("volumes".into(), Value::Array(volume_list));
    }
    if g.chance(10) {
        spec.insert("hostNetwork".into(), json!(true));
    }
    if g.chance(30) {
        spec.insert("serviceAccountName".into(), json!(g.word()));
    }
    if g.chance(15) {
        spec.insert(
            "securityContext".into(),
            json!({"fsGroup": 2000, "runAsNonRoot": true}),
        );
    }
    if g.chance(10) {
        spec.insert(
            "restartPolicy".into(),
            json!(g.pick(&["Always", "Never", "OnFailure"])),
        );
    }

    let mut metadata = Map::new();
    if g.chance(60) {
        metadata.insert("generateName".into(), json!(format!("{}-", g.word())));
    } else {
        metadata.insert("name".into(), json!(g.word()));
    }
    if g.chance(70) {
        metadata.insert("namespace".into(), json!(namespace));
    }
    metadata.insert("labels".into(), Value::Object(labels));
    if !annotations.is_empty() {
        metadata.insert("annotations".into(), Value::Object(annotations));
    }
    if g.chance(40) {
        metadata.insert(
            "ownerReferences".into(),
            json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{}-7d9f", g.word()),
                    "uid": "6c8d4a8d-2a84-6842-3dba-793d08b71848", "controller": true}]),
        );
    }
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec});
    let operation = if g.chance(90) {
        "CREATE"
    } else {
        g.pick(&["UPDATE", "DELETE", "CONNECT"])
    };
    let request = json!({
        "uid": format!("fuzz-{}", g.below(1 << 30)),
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": namespace,
        "operation": operation,
        "userInfo": {"username": "fuzz"},
        "object": pod,
    });
    let namespace_labels = (!g.chance(5)).then_some(ns_labels);
    Case {
        request,
        namespace,
        namespace_labels,
    }
}

/// The injectors of a canary setup: the default revision, and `canary` with the tag `prod`.
/// Both fail closed or open on lookup errors at random (the second settings of each pair).
pub fn canary_settings(lookup_skip: bool) -> [(&'static str, Value); 2] {
    let failure = if lookup_skip { "skip" } else { "reject" };
    [
        (
            "default",
            json!({"defaultRevision": true, "namespaceLookupFailure": failure}),
        ),
        (
            "canary",
            json!({"revision": "canary", "tags": ["prod"], "namespaceLookupFailure": failure}),
        ),
    ]
}

/// Byte-level fuzzing: `data` as the whole validate payload, or as the pod of a request.
/// Returns the requests to evaluate (the caller checks the answers are well formed).
pub fn byte_requests(data: &[u8]) -> Vec<Value> {
    let mut out = Vec::new();
    if let Ok(v) = serde_json::from_slice::<Value>(data) {
        out.push(v.clone());
        out.push(json!({
            "uid": "bytes", "operation": "CREATE",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "namespace": "shop", "object": v,
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_generation_is_reproducible_and_varied() {
        let a = case(&mut SplitMix(7)).request;
        assert_eq!(a, case(&mut SplitMix(7)).request);
        assert_ne!(a, case(&mut SplitMix(8)).request);
        let b = case(&mut ByteEntropy::new(&[])).request;
        assert_eq!(b["object"]["kind"], "Pod");
    }

    #[test]
    fn native_invariants_hold_for_a_seeded_batch() {
        let mut rng = SplitMix(1);
        let mut total = Tally::default();
        for i in 0..300 {
            let c = case(&mut rng);
            let t = check(&c, i % 2 == 0, &mut native(&c)).unwrap_or_else(|e| {
                panic!(
                    "case {i}: {e}\n{}",
                    serde_json::to_string(&c.request).unwrap()
                )
            });
            total.injected += t.injected;
            total.rejected += t.rejected;
        }
        // The generator reaches injection and rejection both.
        assert!(total.injected > 30 && total.rejected > 5, "{total:?}");
    }

    #[test]
    fn the_checks_catch_a_dropped_field_and_a_double_injection() {
        let before = json!({"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let mut after = before.clone();
        after["spec"]["containers"][0]["image"] = json!("j");
        assert!(check_preserved(&before, &after)
            .unwrap_err()
            .contains("image"));
        let mut after = before.clone();
        after["metadata"]["labels"]["security.istio.io/tlsMode"] = json!("istio");
        assert!(check_preserved(&before, &after).is_ok());
        after["metadata"]["labels"]["app"] = json!("b");
        assert!(check_preserved(&before, &after).is_err());
        let c = case(&mut SplitMix(3));
        let mut always = |_: &Value, r: &Value| {
            Ok(Answer {
                accepted: true,
                message: None,
                code: None,
                mutated: (r["object"].get("x").is_none()).then(|| {
                    let mut o = r["object"].clone();
                    o["x"] = json!(1);
                    o
                }),
            })
        };
        let err = check(&c, false, &mut always).unwrap_err();
        assert!(err.contains("more than one revision"), "{err}");
    }
}
