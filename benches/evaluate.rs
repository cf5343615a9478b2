//! Native baseline: `admission::evaluate` on the `revinject bench` workloads
//! (`test-data/bench/*`), so `docs/benchmarks.md` can give the wasm/native ratio per workload.
//! The input is parsed once, as the guest receives it; what is timed is the policy's own work
//! from the parsed request to the Outcome, plus the ValidationResponse serialization the guest
//! does (`evaluate/...`), and the full guest entry point from the payload bytes
//! (`payload/...`: parse, settings, evaluate, serialize) — the code `policy.wasm` runs.

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::Value;
use std::hint::black_box;
use std::path::{Path, PathBuf};

use revision_injector::admission::{self, Cluster};
use revision_injector::payload::Payload;
use revision_injector::settings::Settings;

/// The workloads, in the order `revinject bench` reports them.
const WORKLOADS: [&str; 4] = ["hello", "realistic", "env2000", "skip"];

struct Namespace(Value);

impl Cluster for Namespace {
    fn namespace(&self, name: &str) -> Result<Value, String> {
        let found = self.0.pointer("/metadata/name").and_then(Value::as_str) == Some(name);
        // The guest receives the Namespace as bytes from the host: parse it here as well.
        let text = serde_json::to_vec(&self.0).map_err(|e| e.to_string())?;
        if found {
            serde_json::from_slice(&text).map_err(|e| e.to_string())
        } else {
            Err(format!("namespaces \"{name}\" not found"))
        }
    }
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn workload_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("test-data/bench")
        .join(name)
}

fn bench_workloads(c: &mut Criterion) {
    for name in WORKLOADS {
        let dir = workload_dir(name);
        let review = read_json(&dir.join("request.json"));
        let request = review.get("request").cloned().unwrap_or(review);
        let settings_json = read_json(&dir.join("settings.json"));
        let settings = Settings::from_value(&settings_json).expect("valid settings");
        let cluster = Namespace(read_json(&dir.join("namespace.json")));
        let payload =
            serde_json::to_vec(&serde_json::json!({"request": request, "settings": settings_json}))
                .expect("payload");

        c.bench_function(&format!("evaluate/{name}"), |b| {
            b.iter(|| {
                let outcome = admission::evaluate(black_box(&request), &settings, &cluster);
                outcome.validation_response_json().expect("serializable")
            })
        });
        c.bench_function(&format!("payload/{name}"), |b| {
            b.iter(|| {
                // As the waPC glue does: only the fields the policy reads are kept, and the
                // parsed request is handed over, not borrowed.
                let p = Payload::from_slice(black_box(&payload)).expect("json");
                let settings = Settings::from_value(&p.settings).expect("settings");
                let outcome = admission::evaluate_owned(p.request, &settings, &cluster);
                outcome.validation_response_json().expect("serializable")
            })
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = bench_workloads
}
criterion_main!(benches);
