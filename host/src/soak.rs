//! `revinject soak --policy-server`: a bounded soak through Kubewarden's real policy-server.
//!
//! Concurrent clients send, round robin, the bench workloads, the hostile fixtures of
//! `test-data/malformed` and `test-data/namespace-lookup-fails` (the lookup refused by the fake
//! API) and a few built here (a 1 MiB annotation, 3,000 env vars, an object nested 100 deep)
//! for `--duration` seconds. Every answer must be HTTP 200 with a well-formed AdmissionReview:
//! the request's uid, `allowed`, a rejection with a message and code, a patch that decodes and
//! applies to the object; the bench pods must be injected (skip: left alone). Timeouts
//! (no answer within `--timeout-ms`) are counted apart. policy-server's RSS is sampled every
//! second.
//!
//! Before the soak, a policy-server is started with a policy whose settings the policy
//! refuses: policy-server 1.31 then refuses to start at all, naming the settings error (it
//! cannot serve such an instance, so none is part of the soak).

use anyhow::{anyhow, bail};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::bench::{report, Workload, WORKLOADS};
use crate::e2e::locate_engines;
use crate::engines;
use crate::fake_kube::FakeKube;
use crate::input;
use crate::patch::AdmissionResponse;
use crate::policy_server::{HttpClient, Launch, PolicyEntry, PolicyServer};
use crate::session::{Answer, Session};

/// Arguments of `revinject soak`.
#[derive(clap::Args, Debug, Clone)]
pub struct SoakArgs {
    /// Run through Kubewarden's policy-server (the only mode so far; required for clarity).
    #[arg(long)]
    pub policy_server: bool,
    /// Seconds of load.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Concurrent clients, each with its own connection.
    #[arg(long, default_value_t = 2)]
    pub clients: u32,
    /// A request not answered within this many milliseconds counts as a timeout.
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
    /// Replace the soak section of this Markdown file with the result.
    #[arg(long, value_name = "FILE.md")]
    pub markdown: Option<PathBuf>,
    #[arg(long)]
    pub policy_server_bin: Option<PathBuf>,
    #[arg(long)]
    pub kwctl: Option<PathBuf>,
    #[arg(long, default_value = "test-data")]
    pub fixtures: PathBuf,
    /// The policy module.
    #[arg(default_value = "policy.wasm")]
    pub policy: PathBuf,
}

/// One kind of request in the mix.
struct Kind {
    name: String,
    policy: String,
    review: Vec<u8>,
    uid: String,
    object: Option<Value>,
    /// Whether the answer must carry a patch (None: either).
    injected: Option<bool>,
}

#[derive(Default)]
struct Tally {
    latencies: Vec<u64>,
    errors: Vec<String>,
    timeouts: u64,
    per_kind: Vec<u64>,
}

const SEED_SETTINGS: &str = "seed-asm-1233-2/settings.yaml";
/// The namespace the seed's and the malformed fixtures' pods are sent in.
const SEED_NAMESPACE: &str = "soak-seed";
/// The namespace whose lookup the fake API refuses (403).
const FORBIDDEN_NAMESPACE: &str = "soak-forbidden";

/// `request` moved to namespace `to` (the request's and its object's namespace).
fn renamed(mut request: Value, to: &str) -> Value {
    if request.get("namespace").is_some() {
        request["namespace"] = json!(to);
    }
    for key in ["object", "oldObject"] {
        if let Some(meta) = request.get_mut(key).and_then(|o| o.get_mut("metadata")) {
            if meta.get("namespace").is_some() {
                meta["namespace"] = json!(to);
            }
        }
    }
    request
}

/// Serve the session's first Namespace answer under the name `to`.
fn serve_renamed(kube: &FakeKube, session: &Session, to: &str) -> anyhow::Result<()> {
    let (_, answer) = session
        .exchanges()
        .first()
        .ok_or_else(|| anyhow!("an empty session"))?;
    match answer {
        Answer::Success(namespace) => {
            let mut namespace = namespace.clone();
            namespace["metadata"]["name"] = json!(to);
            if let Some(labels) = namespace["metadata"]
                .get_mut("labels")
                .and_then(Value::as_object_mut)
            {
                labels.insert("kubernetes.io/metadata.name".into(), json!(to));
            }
            kube.set_namespace(namespace)
        }
        Answer::Error(message) => {
            kube.set_error(to, 403, message);
            Ok(())
        }
    }
}

fn review_of(request: &Value) -> Value {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
}

fn kind(name: &str, policy: &str, request: Value, injected: Option<bool>) -> anyhow::Result<Kind> {
    let review = review_of(&request);
    Ok(Kind {
        name: name.to_string(),
        policy: policy.to_string(),
        review: serde_json::to_vec(&review)?,
        uid: request
            .get("uid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        object: request.get("object").cloned().filter(|o| !o.is_null()),
        injected,
    })
}

/// The mix: bench workloads, fixtures and built hostile pods; the policies they need.
fn mix(
    args: &SoakArgs,
    module: &Path,
    kube: &FakeKube,
) -> anyhow::Result<(Vec<Kind>, Vec<PolicyEntry>)> {
    let mut kinds = Vec::new();
    let mut policies = Vec::new();
    for name in WORKLOADS {
        let w = Workload::load(name, &args.fixtures.join("bench").join(name))?;
        for ns in w.namespaces.0.values() {
            kube.set_namespace(ns.clone())?;
        }
        let id = format!("revinject-{name}");
        policies.push(PolicyEntry::local(&id, module, &w.settings, true));
        kinds.push(kind(name, &id, w.request.clone(), Some(name != "skip"))?);
    }
    // The fixtures' namespaces get names of their own here: the bench workloads use `shop`
    // too, with other labels.
    let seed = input::read_settings(Some(&args.fixtures.join(SEED_SETTINGS)))?;
    policies.push(PolicyEntry::local("seed", module, &seed, true));
    serve_renamed(
        kube,
        &Session::load(&args.fixtures.join("seed-asm-1233-2/session.yml"))?,
        SEED_NAMESPACE,
    )?;
    let malformed = args.fixtures.join("malformed");
    for file in [
        "wrong-types.json",
        "wrong-port-type.json",
        "no-object.json",
        "not-a-pod.json",
        "update.json",
        "delete.json",
        "bad-annotation.json",
        "bare-request.json",
    ] {
        let request = renamed(input::read_request(&malformed.join(file))?, SEED_NAMESPACE);
        kinds.push(kind(&format!("malformed/{file}"), "seed", request, None)?);
    }
    let lookup = args.fixtures.join("namespace-lookup-fails");
    serve_renamed(
        kube,
        &Session::load(&lookup.join("session.yml"))?,
        FORBIDDEN_NAMESPACE,
    )?;
    let request = renamed(
        input::read_request(&lookup.join("request.json"))?,
        FORBIDDEN_NAMESPACE,
    );
    kinds.push(kind(
        "namespace-lookup-refused",
        "seed",
        request,
        Some(false),
    )?);

    // Built hostile pods, from the seed's request.
    let base = renamed(
        input::read_request(&args.fixtures.join("seed-asm-1233-2/request.json"))?,
        SEED_NAMESPACE,
    );
    let mut big = base.clone();
    big["object"]["metadata"]["annotations"]["example.com/blob"] = json!("x".repeat(1 << 20));
    kinds.push(kind("annotation-1MiB", "seed", big, Some(true))?);
    let mut env = base.clone();
    let vars: Vec<Value> = (0..3000)
        .map(|i| json!({"name": format!("VAR_{i}"), "value": format!("value-{i}")}))
        .collect();
    env["object"]["spec"]["containers"][0]["env"] = json!(vars);
    kinds.push(kind("env-3000", "seed", env, Some(true))?);
    let mut nested = base;
    let mut deep = json!("bottom");
    for _ in 0..100 {
        deep = json!({ "n": deep });
    }
    nested["object"]["spec"]["x-deep"] = deep;
    kinds.push(kind("nested-100", "seed", nested, None)?);
    Ok((kinds, policies))
}

/// Problems with one answer (empty: well formed).
fn check_answer(kind: &Kind, code: u16, body: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    if code != 200 {
        return vec![format!("HTTP {code}: {body}")];
    }
    if body.get("kind").and_then(Value::as_str) != Some("AdmissionReview") {
        problems.push(format!("not an AdmissionReview: {body}"));
    }
    let Some(response) = body.get("response") else {
        problems.push("no response".into());
        return problems;
    };
    let parsed: AdmissionResponse = match serde_json::from_value(response.clone()) {
        Ok(r) => r,
        Err(e) => {
            problems.push(format!("not an AdmissionResponse ({e}): {response}"));
            return problems;
        }
    };
    if parsed.uid != kind.uid {
        problems.push(format!("uid {:?}, sent {:?}", parsed.uid, kind.uid));
    }
    if !parsed.allowed {
        let status = parsed.status.clone().unwrap_or(crate::patch::Status {
            message: None,
            code: None,
        });
        if status.message.as_deref().unwrap_or("").is_empty() || status.code.is_none() {
            problems.push(format!("a rejection without message or code: {response}"));
        }
        if parsed.patch.is_some() {
            problems.push("a rejection with a patch".into());
        }
    }
    if let Some(want) = kind.injected {
        if parsed.patch.is_some() != want {
            problems.push(format!(
                "patch present: {}, expected {want}",
                parsed.patch.is_some()
            ));
        }
    }
    if parsed.patch.is_some() {
        match &kind.object {
            None => problems.push("a patch for a request without object".into()),
            Some(object) => {
                if let Err(e) = parsed.patched_object(object) {
                    problems.push(e.to_string());
                }
            }
        }
    }
    problems
}

/// policy-server refuses to start with a policy whose settings the policy refuses.
fn bad_settings_refused(binary: &Path, module: &Path, kubeconfig: &Path) -> anyhow::Result<String> {
    let entry = PolicyEntry::local("bad-settings", module, &json!({"revison": "x"}), true);
    let started = PolicyServer::start(&Launch {
        binary,
        policies: std::slice::from_ref(&entry),
        kubeconfig: Some(kubeconfig),
        work_dir: Path::new("target/policy-server-soak/bad-settings"),
        workers: Some(1),
        ready_within: Duration::from_secs(180),
    });
    match started {
        Ok(_) => bail!("policy-server started with settings the policy refuses"),
        Err(e) => {
            let text = format!("{e:#}");
            let line = text
                .lines()
                .find(|l| l.contains("settings are invalid"))
                .ok_or_else(|| anyhow!("policy-server failed for another reason: {text}"))?;
            Ok(line.trim().to_string())
        }
    }
}

/// `revinject soak`.
pub fn run(args: &SoakArgs) -> anyhow::Result<ExitCode> {
    if !args.policy_server {
        bail!("only `revinject soak --policy-server` exists; `revinject fuzz --duration` soaks revinject's own host");
    }
    let (kwctl, binary) =
        match locate_engines(args.kwctl.as_deref(), args.policy_server_bin.as_deref())? {
            Ok(found) => found,
            Err(why) => {
                println!("policy-server soak skipped: {why}");
                return Ok(ExitCode::SUCCESS);
            }
        };
    let work = PathBuf::from("target/policy-server-soak");
    std::fs::create_dir_all(&work)?;
    let module = work.join("annotated-policy.wasm");
    engines::annotate(
        &kwctl,
        &args.policy,
        Path::new("policy-metadata.yml"),
        &module,
    )?;
    let kube = FakeKube::start(0)?;
    let kubeconfig = kube.write_kubeconfig(&work.join("kubeconfig"))?;
    let refused = bad_settings_refused(&binary, &module, &kubeconfig)?;
    println!("bad settings: policy-server refuses to start: {refused}");

    let (kinds, policies) = mix(args, &module, &kube)?;
    let server = PolicyServer::start(&Launch {
        binary: &binary,
        policies: &policies,
        kubeconfig: Some(&kubeconfig),
        work_dir: &work.join("server"),
        workers: Some(args.clients.max(1)),
        ready_within: Duration::from_secs(300),
    })?;
    let rss_start = server.rss_bytes();
    let addr = server.addr();
    let timeout = Duration::from_millis(args.timeout_ms);
    let duration = Duration::from_secs(args.duration);
    let tally = Mutex::new(Tally {
        per_kind: vec![0; kinds.len()],
        ..Tally::default()
    });
    let next = AtomicUsize::new(0);
    let mut rss: Vec<(f64, u64)> = Vec::new();
    let started = Instant::now();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let mut handles = Vec::new();
        for _ in 0..args.clients.max(1) {
            handles.push(scope.spawn(|| -> anyhow::Result<()> {
                let mut client = HttpClient::connect(addr)?;
                client.set_timeout(timeout)?;
                let mut mine = Tally {
                    per_kind: vec![0; kinds.len()],
                    ..Tally::default()
                };
                while started.elapsed() < duration {
                    let i = next.fetch_add(1, Ordering::SeqCst) % kinds.len();
                    let kind = &kinds[i];
                    let t = Instant::now();
                    let answer = client.validate(&kind.policy, &kind.review);
                    let ns = t.elapsed().as_nanos() as u64;
                    mine.per_kind[i] += 1;
                    match answer {
                        Ok((code, body)) => {
                            mine.latencies.push(ns);
                            for p in check_answer(kind, code, &body) {
                                mine.errors.push(format!("{}: {p}", kind.name));
                            }
                        }
                        Err(e) if is_timeout(&e) => {
                            mine.timeouts += 1;
                            client = HttpClient::connect(addr)?;
                            client.set_timeout(timeout)?;
                        }
                        Err(e) => {
                            mine.errors.push(format!("{}: {e:#}", kind.name));
                            client = HttpClient::connect(addr)?;
                            client.set_timeout(timeout)?;
                        }
                    }
                }
                let mut all = tally.lock().unwrap_or_else(|e| e.into_inner());
                all.latencies.extend(mine.latencies);
                all.errors.extend(mine.errors);
                all.timeouts += mine.timeouts;
                for (a, b) in all.per_kind.iter_mut().zip(mine.per_kind) {
                    *a += b;
                }
                Ok(())
            }));
        }
        // Sample RSS every second until the clients are done (bounded by the duration).
        while started.elapsed() < duration + Duration::from_secs(1)
            && !handles.iter().all(|h| h.is_finished())
        {
            if let Some(bytes) = server.rss_bytes() {
                rss.push((started.elapsed().as_secs_f64(), bytes));
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        for h in handles {
            h.join().map_err(|_| anyhow!("a client panicked"))??;
        }
        Ok(())
    })?;
    let elapsed = started.elapsed();
    let mut server = server;
    let alive = server.running();
    let rss_end = server.rss_bytes();
    drop(server);
    drop(kube);

    let mut tally = tally.into_inner().unwrap_or_else(|e| e.into_inner());
    tally.latencies.sort_unstable();
    let p = |q: f64| crate::bench::percentile(&tally.latencies, q) as f64 / 1e3;
    let total = tally.latencies.len() as u64 + tally.timeouts;
    let warm = rss
        .iter()
        .find(|(t, _)| *t >= duration.as_secs_f64() / 10.0)
        .map(|(_, b)| *b);
    let peak = rss.iter().map(|(_, b)| *b).max();
    let mib = |b: Option<u64>| {
        b.map_or("?".to_string(), |b| {
            format!("{:.0} MiB", b as f64 / 1048576.0)
        })
    };
    let mut text = String::new();
    let _ = writeln!(
        text,
        "`revinject soak --policy-server --duration {} --clients {}`: {} requests in {:.1} s \
         ({:.0} req/s) over {} kinds; errors: {}; timeouts (> {} ms): {}; latency p50 {:.0} µs, \
         p90 {:.0} µs, p99 {:.0} µs, max {:.0} µs; policy-server RSS {} after start, {} after \
         warm-up, {} at the end, peak {}; policy-server {} at the end.",
        args.duration,
        args.clients,
        total,
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        kinds.len(),
        tally.errors.len(),
        args.timeout_ms,
        tally.timeouts,
        p(0.5),
        p(0.9),
        p(0.99),
        p(1.0),
        mib(rss_start),
        mib(warm),
        mib(rss_end),
        mib(peak),
        if alive { "still running" } else { "had exited" }
    );
    let _ = writeln!(
        text,
        "\nA policy instance with bad settings (`revison: x`): {refused} (policy-server does not start; the instance cannot be served).\n"
    );
    let _ = writeln!(text, "| kind | requests |\n| --- | ---: |");
    for (k, n) in kinds.iter().zip(&tally.per_kind) {
        let _ = writeln!(text, "| {} | {n} |", k.name);
    }
    let _ = writeln!(text, "\nRSS over time (s: MiB):");
    let series: Vec<String> = rss
        .iter()
        .step_by((rss.len() / 12).max(1))
        .map(|(t, b)| format!("{t:.0}: {:.0}", *b as f64 / 1048576.0))
        .collect();
    let _ = writeln!(text, "{}", series.join(", "));
    print!("{text}");
    for e in tally.errors.iter().take(20) {
        println!("error: {e}");
    }
    if let Some(path) = &args.markdown {
        report::write_section(path, "policy-server-soak", &text)?;
    }
    Ok(if tally.errors.is_empty() && tally.timeouts == 0 && alive {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn is_timeout(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::encode_patch;

    #[test]
    fn malformed_answers_are_errors() {
        let object = json!({"metadata": {"name": "p"}, "spec": {"containers": []}});
        let request = json!({"uid": "u1", "object": object});
        let k = kind("pod", "seed", request, Some(true)).unwrap();
        let mut mutated = object.clone();
        mutated["metadata"]["labels"] = json!({"a": "b"});
        let patch = encode_patch(&object, &mutated).unwrap().unwrap();
        let good = json!({"kind": "AdmissionReview", "response": {
            "uid": "u1", "allowed": true, "patchType": "JSONPatch", "patch": patch}});
        assert_eq!(check_answer(&k, 200, &good), Vec::<String>::new());
        assert_eq!(check_answer(&k, 500, &good).len(), 1);
        let mut wrong_uid = good.clone();
        wrong_uid["response"]["uid"] = json!("u2");
        assert_eq!(check_answer(&k, 200, &wrong_uid).len(), 1);
        let bare_rejection =
            json!({"kind": "AdmissionReview", "response": {"uid": "u1", "allowed": false}});
        // no message/code, and no patch although one is expected
        assert_eq!(check_answer(&k, 200, &bare_rejection).len(), 2);
        let mut bad_patch = good.clone();
        bad_patch["response"]["patch"] = json!("not base64!");
        assert_eq!(check_answer(&k, 200, &bad_patch).len(), 1);
        assert_eq!(check_answer(&k, 200, &json!({"response": 1})).len(), 2);
    }

    #[test]
    fn renamed_moves_request_and_object() {
        let r = renamed(
            json!({"namespace": "shop", "object": {"metadata": {"namespace": "shop"}}}),
            "x",
        );
        assert_eq!(
            r,
            json!({"namespace": "x", "object": {"metadata": {"namespace": "x"}}})
        );
    }
}
