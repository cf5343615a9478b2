//! `revinject bench --policy-server`: this policy in Kubewarden's real policy-server, against
//! the two floors on the same pods, over loopback HTTP.
//!
//! One policy-server (`--workers` = the largest client count) loads, annotated:
//! - `revinject-W`: policy.wasm with workload W's settings (context aware: the Namespace comes
//!   from the fake Kubernetes API, and policy-server caches it for a few seconds);
//! - `injection-floor`: answers each bench pod with its precomputed injected form (the floor
//!   for an injected pod: policy-server's cost of reading the answer and diffing the patch);
//! - `floor`: the smallest SDK policy, accepting (the floor for a pod left alone);
//! - `floor-mutate`: the same adding one label (the floor for returning a mutated pod of that
//!   size: policy-server parses the whole object back and diffs it).
//!
//! Every (workload, policy, clients) measurement runs `--duration` seconds after a tenth of it
//! untimed; `--rounds` repeats them all, interleaved, and each row is the round with the
//! median p50. Clients keep one HTTP/1.1 connection each, as an API server does.

use anyhow::{anyhow, bail, Context as _};
use serde::Serialize;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use super::measure::percentile;
use super::{BenchArgs, Workload, WORKLOADS};
use crate::e2e::locate_engines;
use crate::engines;
use crate::fake_kube::FakeKube;
use crate::policy_server::{HttpClient, Launch, PolicyEntry, PolicyServer};

/// The policies measured on every workload, in report order.
pub const POLICIES: [&str; 4] = ["revinject", "injection-floor", "floor", "floor-mutate"];

/// The targets: (workload, floor, p50 ratio). env2000 is held against floor-policy;
/// both of its variants are listed (a mutating policy must at least pay `floor-mutate`).
pub const TARGETS: [(&str, &str, f64); 5] = [
    ("hello", "injection-floor", 1.15),
    ("realistic", "injection-floor", 1.10),
    ("skip", "floor", 1.10),
    ("env2000", "floor-mutate", 1.10),
    ("env2000", "floor", 1.10),
];

/// The floor each workload's ratios are given against in the tables, and its target.
pub fn bound(workload: &str) -> (&'static str, f64) {
    match workload {
        "hello" => ("injection-floor", 1.15),
        "realistic" => ("injection-floor", 1.10),
        "skip" => ("floor", 1.10),
        _ => ("floor-mutate", 1.10),
    }
}

/// One measurement.
#[derive(Debug, Clone, Serialize)]
pub struct ServerRow {
    pub workload: String,
    pub policy: String,
    pub clients: u32,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub rps: f64,
    pub requests: usize,
    #[serde(skip)]
    pub samples: Vec<u64>,
}

/// What the run measured.
#[derive(Debug, Clone, Serialize)]
pub struct ServerReport {
    pub rows: Vec<ServerRow>,
    /// Namespace reads policy-server made from the fake API during the measurements.
    pub namespace_reads: u64,
    /// Requests sent to the `revinject-*` policies.
    pub injector_requests: u64,
    pub policy_server: String,
    pub startup_s: f64,
    pub rss_bytes: Option<u64>,
}

impl ServerReport {
    pub fn find(&self, workload: &str, policy: &str, clients: u32) -> Option<&ServerRow> {
        self.rows
            .iter()
            .find(|r| r.workload == workload && r.policy == policy && r.clients == clients)
    }
}

fn policy_id(policy: &str, workload: &str) -> String {
    if policy == "revinject" {
        format!("revinject-{workload}")
    } else {
        policy.to_string()
    }
}

/// Run the measurements.
pub fn run(args: &BenchArgs) -> anyhow::Result<Option<ServerReport>> {
    let (kwctl, binary) =
        match locate_engines(args.kwctl.as_deref(), args.policy_server_bin.as_deref())? {
            Ok(found) => found,
            Err(why) => {
                println!("policy-server benchmark skipped: {why}");
                return Ok(None);
            }
        };
    let names: Vec<&str> = if args.workloads.is_empty() {
        WORKLOADS.to_vec()
    } else {
        args.workloads.iter().map(String::as_str).collect()
    };
    let mut workloads = Vec::new();
    for name in &names {
        if !WORKLOADS.contains(name) {
            bail!("unknown workload {name:?}");
        }
        workloads.push(Workload::load(name, &args.workloads_dir.join(name))?);
    }
    let work = PathBuf::from("target/policy-server-bench");
    std::fs::create_dir_all(&work)?;
    let annotate = |module: &Path, metadata: &Path, name: &str| -> anyhow::Result<PathBuf> {
        let out = work.join(name);
        engines::annotate(&kwctl, module, metadata, &out)?;
        Ok(out)
    };
    let ours = annotate(
        &args.policy,
        Path::new("policy-metadata.yml"),
        "policy.wasm",
    )?;
    let floors = &args.floors_dir;
    let floor = annotate(
        &floors.join("floor-policy/floor.wasm"),
        &floors.join("floor-policy/metadata.yml"),
        "floor.wasm",
    )?;
    let injection_floor = annotate(
        &floors.join("injection-floor/injection-floor.wasm"),
        &floors.join("injection-floor/metadata.yml"),
        "injection-floor.wasm",
    )?;

    let mut policies = vec![
        PolicyEntry::local(
            "injection-floor",
            &injection_floor,
            &serde_json::json!({}),
            false,
        ),
        PolicyEntry::local("floor", &floor, &serde_json::json!({}), false),
        PolicyEntry::local(
            "floor-mutate",
            &floor,
            &serde_json::json!({"mutate": true}),
            false,
        ),
    ];
    for w in &workloads {
        policies.push(PolicyEntry::local(
            &policy_id("revinject", &w.name),
            &ours,
            &w.settings,
            true,
        ));
    }
    let kube = FakeKube::start(0)?;
    for w in &workloads {
        for namespace in w.namespaces.0.values() {
            kube.set_namespace(namespace.clone())?;
        }
    }
    let kubeconfig = kube.write_kubeconfig(&work.join("kubeconfig"))?;
    let mut clients: Vec<u32> = if args.threads.is_empty() {
        vec![1, 2]
    } else {
        args.threads.clone()
    };
    clients.dedup();
    let started = Instant::now();
    let server = PolicyServer::start(&Launch {
        binary: &binary,
        policies: &policies,
        kubeconfig: Some(&kubeconfig),
        work_dir: &work.join("server"),
        workers: clients.iter().copied().max(),
        ready_within: Duration::from_secs(300),
    })?;
    let startup_s = started.elapsed().as_secs_f64();

    // Every answer is checked once: the right decision, before anything is timed.
    let reviews: Vec<Vec<u8>> = workloads
        .iter()
        .map(|w| {
            serde_json::to_vec(&serde_json::json!({
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "request": w.request,
            }))
        })
        .collect::<Result<_, _>>()?;
    {
        let mut client = HttpClient::connect(server.addr())?;
        for (w, review) in workloads.iter().zip(&reviews) {
            for policy in POLICIES {
                let id = policy_id(policy, &w.name);
                let (code, body) = client.validate(&id, review)?;
                let response = body.get("response").cloned().unwrap_or(Value::Null);
                if code != 200 || response.get("allowed") != Some(&Value::Bool(true)) {
                    bail!("{id} on {}: HTTP {code} {body}", w.name);
                }
                let patched = response.get("patch").is_some();
                let want = match policy {
                    "floor" => false,
                    "floor-mutate" => true,
                    _ => w.name != "skip",
                };
                if patched != want {
                    bail!("{id} on {}: patch {patched}, expected {want}", w.name);
                }
            }
        }
    }

    let duration = match (args.iterations, args.duration) {
        (_, Some(s)) if s.is_finite() && s > 0.0 => Duration::from_secs_f64(s),
        _ => Duration::from_secs(2),
    };
    let rounds = args.rounds.max(1) as usize;
    let jobs: Vec<(usize, &str, u32)> = clients
        .iter()
        .flat_map(|&c| {
            (0..workloads.len()).flat_map(move |w| POLICIES.iter().map(move |p| (w, *p, c)))
        })
        .collect();
    let reads_before = kube.requests();
    let mut per_job: Vec<Vec<(Vec<u64>, Duration)>> = jobs.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for (index, &(w, policy, c)) in jobs.iter().enumerate() {
            let id = policy_id(policy, &workloads[w].name);
            let run = measure(server.addr(), &id, &reviews[w], c, duration)
                .with_context(|| format!("{id} on {} with {c} clients", workloads[w].name))?;
            per_job[index].push(run);
            eprint!(
                "\rround {}/{rounds}, measurement {}/{}   ",
                round + 1,
                index + 1,
                jobs.len()
            );
        }
    }
    eprintln!();
    let namespace_reads = kube.requests() - reads_before;
    let rss_bytes = server.rss_bytes();
    let mut rows = Vec::new();
    let mut injector_requests = 0u64;
    for ((w, policy, c), runs) in jobs.iter().zip(per_job) {
        let mut runs: Vec<(Vec<u64>, Duration)> = runs;
        for (samples, _) in &runs {
            if *policy == "revinject" {
                injector_requests += samples.len() as u64;
            }
        }
        runs.sort_by_key(|(s, _)| percentile(s, 0.5));
        let (samples, elapsed) = runs.swap_remove(runs.len() / 2);
        let us = |q: f64| percentile(&samples, q) as f64 / 1e3;
        rows.push(ServerRow {
            workload: workloads[*w].name.clone(),
            policy: policy.to_string(),
            clients: *c,
            p50_us: us(0.5),
            p90_us: us(0.9),
            p99_us: us(0.99),
            rps: samples.len() as f64 / elapsed.as_secs_f64().max(1e-9),
            requests: samples.len(),
            samples,
        });
    }
    drop(server);
    Ok(Some(ServerReport {
        rows,
        namespace_reads,
        injector_requests,
        policy_server: {
            let version = std::process::Command::new(&binary)
                .arg("--version")
                .output()
                .map(|o| {
                    let text = String::from_utf8_lossy(&o.stdout).into_owned();
                    text.lines().next().unwrap_or("").trim().to_string()
                })
                .unwrap_or_default();
            format!("{}, {version}", binary.display())
        },
        startup_s,
        rss_bytes,
    }))
}

/// `clients` connections sending `review` to `policy` for `duration` (after a tenth of it
/// untimed); sorted latencies (ns) of all of them and the timed wall clock.
fn measure(
    addr: std::net::SocketAddr,
    policy: &str,
    review: &[u8],
    clients: u32,
    duration: Duration,
) -> anyhow::Result<(Vec<u64>, Duration)> {
    let barrier = Barrier::new(clients as usize);
    let results: Vec<anyhow::Result<(Vec<u64>, Duration)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                let barrier = &barrier;
                scope.spawn(move || -> anyhow::Result<(Vec<u64>, Duration)> {
                    let mut client = HttpClient::connect(addr)?;
                    let mut send = || -> anyhow::Result<u64> {
                        let t = Instant::now();
                        let (code, body) =
                            client.request("POST", &format!("/validate/{policy}"), Some(review))?;
                        let ns = t.elapsed().as_nanos() as u64;
                        if code != 200 || body.is_empty() {
                            bail!("HTTP {code}");
                        }
                        Ok(ns)
                    };
                    barrier.wait();
                    let warm_until = Instant::now() + duration / 10;
                    while Instant::now() < warm_until {
                        send()?;
                    }
                    let start = Instant::now();
                    let mut samples = Vec::new();
                    while start.elapsed() < duration {
                        samples.push(send()?);
                    }
                    Ok((samples, start.elapsed()))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("a client panicked")))
            })
            .collect()
    });
    let mut all = Vec::new();
    let mut wall = Duration::ZERO;
    for r in results {
        let (samples, elapsed) = r?;
        all.extend(samples);
        wall = wall.max(elapsed);
    }
    all.sort_unstable();
    Ok((all, wall))
}

/// The Markdown section for docs/benchmarks.md.
pub fn markdown(report: &ServerReport, args: &BenchArgs, chart: Option<&Path>) -> String {
    let mut out = String::from("## In policy-server (real engine)\n\n");
    let clients: Vec<String> = args
        .threads
        .iter()
        .map(|t| format!("--threads {t}"))
        .collect();
    let _ = writeln!(
        out,
        "`revinject bench --policy-server {} --duration {} --rounds {}` (part of `make bench`): \
         Kubewarden's policy-server (`{}`) on 127.0.0.1, started with `--workers` = the \
         largest client count (ready in {:.1} s), every policy annotated with `kwctl annotate`; \
         each client keeps one HTTP/1.1 connection and sends the workload's AdmissionReview \
         back to back. `revinject` is policy.wasm with the workload's settings, its Namespace \
         served by a fake Kubernetes API on loopback; `injection-floor` answers each bench pod \
         with its precomputed injected form; `floor` is the smallest SDK policy (accept); \
         `floor-mutate` the same adding one label (so policy-server parses the whole pod back \
         and diffs it). Each row is the round with the median p50 of {} interleaved rounds.\n",
        clients.join(" "),
        args.duration.unwrap_or(2.0),
        args.rounds,
        report.policy_server,
        report.startup_s,
        args.rounds
    );
    out.push_str(
        "### Targets (p50, same pod, one client)\n\n\
         | workload | bound by | target | revinject p50 µs | floor p50 µs | ratio | met |\n\
         | --- | --- | ---: | ---: | ---: | ---: | --- |\n",
    );
    for (w, floor, target) in TARGETS {
        let (Some(ours), Some(theirs)) = (report.find(w, "revinject", 1), report.find(w, floor, 1))
        else {
            continue;
        };
        let ratio = ours.p50_us / theirs.p50_us;
        let _ = writeln!(
            out,
            "| {w} | {floor} | ≤ {target:.2}× | {:.0} | {:.0} | {ratio:.2}× | {} |",
            ours.p50_us,
            theirs.p50_us,
            if ratio <= target { "yes" } else { "**no**" }
        );
    }
    out.push_str(
        "\n### Every measurement\n\n\
         | workload | policy | clients | p50 µs | p90 µs | p99 µs | req/s | ratio to the bound (p50) |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for r in &report.rows {
        let (floor, _) = bound(&r.workload);
        let ratio = report
            .find(&r.workload, floor, r.clients)
            .map(|f| format!("{:.2}×", r.p50_us / f.p50_us))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {ratio} |",
            r.workload, r.policy, r.clients, r.p50_us, r.p90_us, r.p99_us, r.rps
        );
    }
    out.push_str(
        "\n### Where the time goes\n\n\
         policy-server makes a fresh instance of the policy for every request (policy-evaluator \
         rehydrates it from the pre-instantiated module), so nothing the guest computes for its \
         settings survives a request: every request parses the settings, resolves the helm \
         values and mesh config, then selects and renders. The floors pay the same instance, \
         request (de)serialization and HTTP; `injection-floor` also pays the answer's size \
         (parsing the injected pod back and diffing it into a JSONPatch). What `revinject` \
         adds over its floor (p50, one client) is its own guest work plus the Namespace \
         lookup, a host callback answered from policy-server's cache:\n\n",
    );
    for (w, floor, _) in TARGETS.iter().take(4) {
        if let (Some(ours), Some(theirs)) =
            (report.find(w, "revinject", 1), report.find(w, floor, 1))
        {
            let _ = writeln!(
                out,
                "- {w}: {:+.0} µs over {floor} ({:.0} vs {:.0} µs)",
                ours.p50_us - theirs.p50_us,
                ours.p50_us,
                theirs.p50_us
            );
        }
    }
    out.push_str(
        "\nThe guest's share in instructions, independent of the machine's load, is the \
         next section; the in-process `fresh` rows further down split it into instantiation \
         and the guest call.\n",
    );
    let _ = writeln!(
        out,
        "\nLoad average (1 min) when this section was written: {}; on this shared 2-core \
         machine the clients and policy-server's two workers compete with whatever else runs, \
         so compare ratios within one run, not absolute figures across runs.\n\
         \npolicy-server read the Namespace from the API {} times for {} requests to the \
         `revinject` policies (it caches a read Namespace for a few seconds), so a lookup \
         costs a cache hit almost every time; policy-server's RSS at the end: {}.\n",
        std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|t| t.split_whitespace().next().map(str::to_string))
            .unwrap_or_else(|| "unknown".into()),
        report.namespace_reads,
        report.injector_requests,
        report.rss_bytes.map_or("unknown".into(), |b| format!(
            "{:.0} MiB",
            b as f64 / 1048576.0
        ))
    );
    if let Some(chart) = chart {
        let name = chart
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "![latency CDF in policy-server per workload and policy, one client]({name})\n"
        );
    }
    out
}

/// One panel per workload: the latency CDF of each policy with one client.
pub fn plot(report: &ServerReport, path: &Path) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        let workloads: Vec<&str> = WORKLOADS
            .into_iter()
            .filter(|w| report.rows.iter().any(|r| r.workload == *w))
            .collect();
        let root = SVGBackend::new(path, (1280, 960)).into_drawing_area();
        root.fill(&WHITE)?;
        let panels = root.split_evenly((2, 2));
        for (panel, w) in panels.iter().zip(&workloads) {
            let rows: Vec<&ServerRow> = report
                .rows
                .iter()
                .filter(|r| r.workload == *w && r.clients == 1 && !r.samples.is_empty())
                .collect();
            let lo = rows.iter().filter_map(|r| r.samples.first()).min().copied();
            let hi = rows
                .iter()
                .map(|r| percentile(&r.samples, 0.995))
                .max()
                .unwrap_or(1000);
            let lo = (lo.unwrap_or(100) as f64 / 1e3 * 0.9).max(1.0);
            let hi = (hi as f64 / 1e3 * 1.1).max(lo * 2.0);
            let mut chart = ChartBuilder::on(panel)
                .caption(format!("{w}, one client"), ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(50)
                .build_cartesian_2d((lo..hi).log_scale(), 0f64..100f64)?;
            chart
                .configure_mesh()
                .x_desc("latency in policy-server (µs, log scale)")
                .y_desc("percentile")
                .draw()?;
            for r in rows {
                let index = POLICIES.iter().position(|p| *p == r.policy).unwrap_or(0);
                let color = Palette99::pick(index);
                let style = color.stroke_width(if r.policy == "revinject" { 3 } else { 2 });
                let points = (0..=200).map(|i| {
                    let q = f64::from(i) / 200.0;
                    let us = (percentile(&r.samples, q.max(1e-9)) as f64 / 1e3).clamp(lo, hi);
                    (us, q * 100.0)
                });
                chart
                    .draw_series(LineSeries::new(points, style))?
                    .label(r.policy.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()?;
        }
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| anyhow!("cannot draw {}: {e}", path.display()))
}
