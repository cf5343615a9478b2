//! `revinject bench`: how fast `policy.wasm` answers, measured the way policy-server pays it.
//!
//! Every workload of `test-data/bench/` (an AdmissionReview, settings and the pod's Namespace)
//! is evaluated in two modes: `warm` (one instance reused, as `kwctl bench`) and `fresh` (a new
//! instance per request from the pre-instantiated module, as policy-server does), each in two
//! scopes: `end-to-end` (serialize the ValidationRequest, the guest call, the JSONPatch diff
//! and base64: [`PolicyRuntime::admission_response`](crate::runtime::PolicyRuntime::admission_response)) and `guest` (the waPC call alone).
//! `--threads N` runs N workers, each with its own instance, sharing one compiled module.
//!
//! The engine uses wasmtime's pooling allocator by default, so a fresh instance reuses a
//! memory slot initialized copy-on-write from the module's image instead of mapping memory.

mod measure;
pub mod report;
pub mod server;

use anyhow::{anyhow, bail, Context as _};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::input;
use crate::runtime::StaticNamespaces;

pub use measure::{percentile, Mode, Scope};
pub use report::{Report, ResultRow};

/// The bundled workloads, in report order.
pub const WORKLOADS: [&str; 4] = ["hello", "realistic", "env2000", "skip"];

/// How each instance gets its linear memory.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allocator {
    /// wasmtime's pooling allocator: pre-reserved slots, copy-on-write memory images.
    Pooling,
    /// wasmtime's default: memory mapped per instance.
    OnDemand,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// A human-readable table.
    Table,
    /// One JSON object (module_bytes, compile_ms, instantiate_us, peak_rss_bytes, results).
    Json,
}

/// Arguments of `revinject bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// A workload to run (hello, realistic, env2000, skip); repeat for several. Default: all.
    #[arg(long = "workload", value_name = "W")]
    pub workloads: Vec<String>,
    /// Instance model; repeat for both. Default: warm and fresh.
    #[arg(long = "mode", value_enum)]
    pub modes: Vec<Mode>,
    /// Workers evaluating concurrently, each with its own instance; repeat to measure
    /// several counts (e.g. `--threads 1 --threads 2`). Default: 1.
    #[arg(long = "threads", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub threads: Vec<u32>,
    /// Requests per worker and measurement (instead of --duration).
    #[arg(long, conflicts_with = "duration")]
    pub iterations: Option<u64>,
    /// Seconds per measurement (default 2).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Repeat every measurement this many times, interleaved, and report for each the round
    /// with the median p50 (a burst of load on a shared machine then moves one round, not
    /// the figure).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=99))]
    pub rounds: u32,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub output: Output,
    /// Draw the latency distributions (CDF per workload, mode and scope) into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Also write the Markdown report (machine, figures, wasm/native ratios) to this file.
    #[arg(long, value_name = "FILE.md")]
    pub markdown: Option<PathBuf>,
    /// Criterion's output directory, read for the native baseline of the Markdown report.
    #[arg(long, default_value = "target/criterion")]
    pub criterion_dir: PathBuf,
    /// Where the workloads live.
    #[arg(long, default_value = "test-data/bench")]
    pub workloads_dir: PathBuf,
    /// Instance allocator of the engine.
    #[arg(long, value_enum, default_value = "pooling")]
    pub allocator: Allocator,
    /// Measure in Kubewarden's real policy-server instead (over loopback HTTP, against the
    /// floor policies; `--threads` are concurrent clients; `--markdown` replaces its section
    /// of the file, `--plot` draws its chart).
    #[arg(long)]
    pub policy_server: bool,
    /// policy-server binary (default: $POLICY_SERVER, PATH, ../shared/kubewarden/bin).
    #[arg(long, value_name = "PATH")]
    pub policy_server_bin: Option<PathBuf>,
    /// kwctl binary, to annotate the modules (default: $KWCTL, PATH, ../shared/kubewarden/bin).
    #[arg(long, value_name = "PATH")]
    pub kwctl: Option<PathBuf>,
    /// Where floor-policy/ and injection-floor/ live.
    #[arg(long, default_value = "../shared/kubewarden")]
    pub floors_dir: PathBuf,
    /// The policy module.
    #[arg(default_value = "policy.wasm")]
    pub policy: PathBuf,
}

impl BenchArgs {
    /// How long one measurement runs.
    fn budget(&self) -> anyhow::Result<measure::Budget> {
        Ok(match (self.iterations, self.duration) {
            (Some(0), _) => bail!("--iterations must be at least 1"),
            (Some(n), _) => measure::Budget::Iterations(n),
            (None, Some(s)) if s.is_finite() && s > 0.0 => {
                measure::Budget::Time(Duration::from_secs_f64(s))
            }
            (None, Some(s)) => bail!("--duration must be a positive number of seconds, not {s}"),
            (None, None) => measure::Budget::Time(Duration::from_secs(2)),
        })
    }
}

/// One benchmark input: a bare AdmissionRequest, its settings and the Namespace lookup answers.
#[derive(Debug, Clone)]
pub struct Workload {
    pub name: String,
    pub request: Value,
    pub settings: Value,
    pub namespaces: StaticNamespaces,
}

impl Workload {
    /// Read `DIR/request.json`, `DIR/settings.json` and `DIR/namespace.json`.
    pub fn load(name: &str, dir: &Path) -> anyhow::Result<Workload> {
        let request = input::read_request(&dir.join("request.json"))?;
        let settings = input::read_settings(Some(&dir.join("settings.json")))?;
        let ns_path = dir.join("namespace.json");
        let text = std::fs::read_to_string(&ns_path)
            .with_context(|| format!("cannot read {}", ns_path.display()))?;
        let namespace: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", ns_path.display()))?;
        let ns_name = namespace
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| anyhow!("{} has no metadata.name", ns_path.display()))?
            .to_string();
        Ok(Workload {
            name: name.to_string(),
            request,
            settings,
            namespaces: StaticNamespaces(BTreeMap::from([(ns_name, namespace)])),
        })
    }
}

/// `revinject bench`.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if args.policy_server {
        return run_policy_server(args);
    }
    let names: Vec<&str> = if args.workloads.is_empty() {
        WORKLOADS.to_vec()
    } else {
        args.workloads.iter().map(String::as_str).collect()
    };
    let mut workloads = Vec::new();
    for name in names {
        if !WORKLOADS.contains(&name) {
            bail!(
                "unknown workload {name:?}: choose among {}",
                WORKLOADS.join(", ")
            );
        }
        let dir = args.workloads_dir.join(name);
        workloads.push(Workload::load(name, &dir).with_context(|| format!("workload {name:?}"))?);
    }
    let modes = if args.modes.is_empty() {
        vec![Mode::Warm, Mode::Fresh]
    } else {
        let mut modes = args.modes.clone();
        modes.dedup();
        modes
    };
    let bytes = std::fs::read(&args.policy)
        .with_context(|| format!("cannot read {}", args.policy.display()))?;
    let mut threads = if args.threads.is_empty() {
        vec![1]
    } else {
        args.threads.clone()
    };
    threads.dedup();
    let plan = measure::Plan {
        workloads: &workloads,
        modes: &modes,
        threads: &threads,
        budget: args.budget()?,
        allocator: args.allocator,
        rounds: args.rounds,
    };
    let report = measure::run(&plan, &bytes)?;
    match args.output {
        Output::Table => print!("{}", report.table()),
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    if let Some(path) = &args.plot {
        report::plot(&report, path)?;
    }
    if let Some(path) = &args.markdown {
        let native = report::native_medians(&args.criterion_dir);
        let text = report::markdown(&report, &native, args, args.plot.as_deref());
        report::write_keeping_sections(path, &text)?;
    }
    Ok(())
}

/// `revinject bench --policy-server`.
fn run_policy_server(args: &BenchArgs) -> anyhow::Result<()> {
    let Some(report) = server::run(args)? else {
        return Ok(());
    };
    let mut table = String::new();
    for r in &report.rows {
        let (floor, _) = server::bound(&r.workload);
        let ratio = report
            .find(&r.workload, floor, r.clients)
            .map(|f| format!("{:.2}x {floor}", r.p50_us / f.p50_us))
            .unwrap_or_default();
        table.push_str(&format!(
            "{:<10} {:<16} {:>2} clients  p50 {:>8.0} µs  p90 {:>8.0} µs  p99 {:>8.0} µs  {:>7.0} req/s  {ratio}\n",
            r.workload, r.policy, r.clients, r.p50_us, r.p90_us, r.p99_us, r.rps
        ));
    }
    match args.output {
        Output::Table => print!("{table}"),
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    if let Some(path) = &args.plot {
        server::plot(&report, path)?;
    }
    if let Some(path) = &args.markdown {
        let text = server::markdown(&report, args, args.plot.as_deref());
        report::write_section(path, report::POLICY_SERVER_SECTION, &text)?;
    }
    Ok(())
}
