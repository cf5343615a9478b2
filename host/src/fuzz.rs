//! `revinject fuzz`: the generator of `revision_injector::testgen` driven through
//! `policy.wasm`, with the host-side invariants on top of the shared ones: no guest failure
//! (trap, timeout, memory cap), the AdmissionResponse's uid is the request's, and the JSONPatch
//! applied to the original object rebuilds exactly the guest's mutated object.
//!
//! With `--threads N --duration S` it is also the soak check: every thread replays the same
//! seeded sequence, each response is hashed, the hashes must equal a single-threaded pass,
//! and the process RSS is sampled to report its growth.

use anyhow::{bail, Context as _};
use serde_json::{json, Value};
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use revision_injector::testgen::{self, Answer, Case, SplitMix, Tally};

use crate::patch::{AdmissionResponse, ValidationResponse};
use crate::runtime::{HostCapabilities, PolicyRuntime, RuntimeOptions};

#[derive(clap::Args, Debug, Clone)]
pub struct FuzzArgs {
    /// Generated requests per thread (each is evaluated by two injectors, plus re-injection).
    #[arg(long, default_value_t = 1000)]
    pub iterations: u64,
    /// Seed of the generator; a failure report names the iteration to replay.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Soak: keep going for this many seconds (iterations wrap around), then compare hashes.
    #[arg(long)]
    pub duration: Option<u64>,
    /// Soak: evaluate on this many threads at once, each with its own runtime.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Soak: fail when RSS grows by more than this after the warm-up (first tenth of the run).
    #[arg(long, default_value_t = 32)]
    pub max_rss_growth_mb: u64,
    /// Where to write the request of a failing case.
    #[arg(long, default_value = "target/fuzz-failures")]
    pub failures: PathBuf,
    /// Per-call deadline, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub deadline_ms: u64,
    /// The policy module.
    #[arg(default_value = "policy.wasm")]
    pub policy: PathBuf,
}

/// Namespace answers for one case, with a malformed answer every few iterations.
struct CaseHost<'a> {
    case: &'a Case,
    mode: NamespaceMode,
}

#[derive(Clone, Copy, Debug)]
enum NamespaceMode {
    Normal,
    /// Bytes that are not JSON.
    Garbage,
    /// JSON of the wrong shape.
    WrongShape,
}

impl HostCapabilities for CaseHost<'_> {
    fn get_resource(&self, _request: &Value) -> Result<Value, String> {
        match self.mode {
            NamespaceMode::WrongShape => Ok(json!({"metadata": {"labels": ["istio-injection"]}})),
            _ => self.case.namespace_object(),
        }
    }

    fn get_resource_bytes(&self, request: &Value) -> Result<Vec<u8>, String> {
        match self.mode {
            NamespaceMode::Garbage => Ok(b"{\"metadata\": {\"labels\": tru".to_vec()),
            _ => Ok(serde_json::to_vec(&self.get_resource(request)?).unwrap_or_default()),
        }
    }
}

/// One iteration's case and how its namespace is answered.
fn iteration(seed: u64, i: u64) -> (Case, NamespaceMode, bool) {
    let mut rng = SplitMix(seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let case = testgen::case(&mut rng);
    let mode = match i % 23 {
        7 => NamespaceMode::Garbage,
        13 => NamespaceMode::WrongShape,
        _ => NamespaceMode::Normal,
    };
    (case, mode, i % 2 == 1)
}

/// Evaluate through the guest; host-side invariants become `Err`.
fn evaluate(
    runtime: &PolicyRuntime,
    host: &dyn HostCapabilities,
    settings: &Value,
    request: &Value,
    hasher: &mut DefaultHasher,
) -> Result<Answer, String> {
    let payload = serde_json::to_vec(&json!({"request": request, "settings": settings}))
        .map_err(|e| e.to_string())?;
    let bytes = runtime
        .call("validate", &payload, host)
        .map_err(|f| format!("guest failure: {f}"))?;
    let guest: ValidationResponse = serde_json::from_slice(&bytes)
        .map_err(|e| format!("the answer is not a ValidationResponse: {e}"))?;
    let uid = request.get("uid").and_then(Value::as_str).unwrap_or("");
    let object = request.get("object").filter(|o| !o.is_null());
    let response = AdmissionResponse::from_validation(uid, object, &guest)
        .map_err(|e| format!("cannot build the AdmissionResponse: {e}"))?;
    if response.uid != uid {
        return Err(format!("uid {:?} answered as {:?}", uid, response.uid));
    }
    serde_json::to_string(&response)
        .map_err(|e| e.to_string())?
        .hash(hasher);
    if let (Some(mutated), Some(original)) = (&guest.mutated_object, object) {
        let patched = response
            .patched_object(original)
            .map_err(|e| format!("the patch does not apply: {e}"))?;
        if &patched != mutated {
            return Err(format!(
                "the patch applied to the original differs from the mutated object at {}",
                testgen::first_difference(&patched, mutated)
            ));
        }
    }
    Ok(Answer {
        accepted: guest.accepted,
        message: guest.message,
        code: guest.code,
        mutated: guest.mutated_object,
    })
}

/// Checks of one iteration; returns its tally and the hash of every response it produced.
fn run_iteration(runtime: &PolicyRuntime, seed: u64, i: u64) -> Result<(Tally, u64), String> {
    let (case, mode, lookup_skip) = iteration(seed, i);
    let host = CaseHost { case: &case, mode };
    let mut hasher = DefaultHasher::new();
    let tally = testgen::check(&case, lookup_skip, &mut |settings, request| {
        evaluate(runtime, &host, settings, request, &mut hasher)
    })?;
    // Byte-level: the request serialized and cut short must be refused cleanly.
    let text = serde_json::to_vec(&json!({"request": case.request, "settings": {}}))
        .map_err(|e| e.to_string())?;
    let cut = &text[..text.len() * (i as usize % 7 + 1) / 8];
    let bytes = runtime
        .call("validate", cut, &host)
        .map_err(|f| format!("truncated payload: guest failure: {f}"))?;
    let answer: ValidationResponse = serde_json::from_slice(&bytes)
        .map_err(|e| format!("truncated payload: not a ValidationResponse: {e}"))?;
    if answer.accepted || answer.message.is_none() {
        return Err("a truncated payload was not rejected with a message".into());
    }
    bytes.hash(&mut hasher);
    Ok((tally, hasher.finish()))
}

fn report_failure(args: &FuzzArgs, i: u64, error: &str) -> anyhow::Result<()> {
    let (case, mode, skip) = iteration(args.seed, i);
    std::fs::create_dir_all(&args.failures)
        .with_context(|| format!("cannot create {}", args.failures.display()))?;
    let path = args
        .failures
        .join(format!("seed-{}-iteration-{i}.json", args.seed));
    let doc = json!({
        "error": error, "seed": args.seed, "iteration": i,
        "namespace": case.namespace, "namespaceLabels": case.namespace_labels,
        "namespaceAnswer": format!("{mode:?}"), "namespaceLookupFailureSkip": skip,
        "request": case.request,
    });
    std::fs::write(&path, serde_json::to_vec_pretty(&doc)?)?;
    eprintln!(
        "revinject fuzz: iteration {i} (seed {}) failed: {error}\n  request written to {}",
        args.seed,
        path.display()
    );
    Ok(())
}

fn load(args: &FuzzArgs) -> anyhow::Result<PolicyRuntime> {
    let options = RuntimeOptions {
        deadline: Duration::from_millis(args.deadline_ms),
        guest_logs: false,
        ..RuntimeOptions::default()
    };
    PolicyRuntime::load(&args.policy, &options)
}

/// RSS samples of a soak run, in KiB.
#[derive(Default)]
struct RssSamples {
    after_warmup: Option<u64>,
    last: Option<u64>,
    peak: u64,
}

impl RssSamples {
    fn sample(&mut self, warmed_up: bool) {
        let Some(now) = rss_kib() else {
            return;
        };
        self.peak = self.peak.max(now);
        if warmed_up {
            self.after_warmup.get_or_insert(now);
            self.last = Some(now);
        }
    }
}

/// Resident set size of this process, in KiB (Linux; `None` elsewhere).
pub fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub fn run(args: &FuzzArgs) -> anyhow::Result<ExitCode> {
    if args.threads == 0 {
        bail!("--threads must be at least 1");
    }
    let started = Instant::now();
    let runtime = load(args)?;
    let mut total = Tally::default();
    let mut hashes = Vec::new();
    for i in 0..args.iterations {
        match run_iteration(&runtime, args.seed, i) {
            Ok((t, h)) => {
                total.injected += t.injected;
                total.rejected += t.rejected;
                total.unchanged += t.unchanged;
                hashes.push(h);
            }
            Err(e) => {
                report_failure(args, i, &e)?;
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    println!(
        "fuzz: {} iterations (seed {}) in {:.1?}: {} injections, {} rejections, {} left unchanged; \
         all invariants held",
        args.iterations,
        args.seed,
        started.elapsed(),
        total.injected,
        total.rejected,
        total.unchanged
    );
    match args.duration {
        Some(secs) => soak(args, &hashes, Duration::from_secs(secs)),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// Replay the sequence on `args.threads` threads until `duration` passes; every response hash
/// must match the single-threaded pass in `expected`.
fn soak(args: &FuzzArgs, expected: &[u64], duration: Duration) -> anyhow::Result<ExitCode> {
    if expected.is_empty() {
        bail!("--duration needs --iterations of at least 1");
    }
    let start = Instant::now();
    let deadline = start + duration;
    let warm = start + duration / 10;
    let mut rss = RssSamples::default();
    let results: Vec<anyhow::Result<(u64, Option<String>)>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..args.threads)
            .map(|t| {
                scope.spawn(move || -> anyhow::Result<(u64, Option<String>)> {
                    let runtime = load(args)?;
                    let mut done = 0u64;
                    // Threads start at different offsets so they run different cases at once.
                    let mut i = (t as u64 * 17) % expected.len() as u64;
                    while Instant::now() < deadline {
                        let got = run_iteration(&runtime, args.seed, i).map(|(_, h)| h);
                        let want = expected.get(i as usize).copied();
                        match got {
                            Ok(h) if Some(h) == want => {}
                            Ok(_) => {
                                return Ok((done, Some(format!("thread {t}: iteration {i}: response hash differs from the single-threaded run"))))
                            }
                            Err(e) => return Ok((done, Some(format!("thread {t}: iteration {i}: {e}")))),
                        }
                        done += 1;
                        i = (i + 1) % expected.len() as u64;
                    }
                    Ok((done, None))
                })
            })
            .collect();
        while workers.iter().any(|w| !w.is_finished()) {
            std::thread::sleep(Duration::from_millis(250));
            rss.sample(Instant::now() >= warm);
        }
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a soak thread panicked")))
            })
            .collect()
    });
    let mut evaluated = 0;
    let mut failed = false;
    for r in results {
        let (done, failure) = r?;
        evaluated += done;
        if let Some(f) = failure {
            eprintln!("revinject fuzz: soak: {f}");
            failed = true;
        }
    }
    let growth = match (rss.after_warmup, rss.last) {
        (Some(a), Some(b)) => {
            let grown = b.saturating_sub(a);
            if grown > args.max_rss_growth_mb * 1024 {
                eprintln!(
                    "revinject fuzz: soak: RSS grew by {} MiB after the warm-up (bound {} MiB)",
                    grown / 1024,
                    args.max_rss_growth_mb
                );
                failed = true;
            }
            format!(
                "RSS after warm-up {} MiB, at the end {} MiB, peak {} MiB (bound +{} MiB)",
                a / 1024,
                b / 1024,
                rss.peak / 1024,
                args.max_rss_growth_mb
            )
        }
        _ => "RSS not available".to_string(),
    };
    println!(
        "soak: {} threads for {:?}: {evaluated} iterations, hashes {}; {growth}",
        args.threads,
        duration,
        if failed {
            "DIFFER"
        } else {
            "identical to the single-threaded run"
        }
    );
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
