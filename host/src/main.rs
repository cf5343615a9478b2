//! `revinject`: run the revision-injector policy natively, like `kwctl run`, and replay the
//! bundled fixtures.
//!
//! Adding a subcommand: a variant of [`Command`] with its clap arguments (or a `clap::Args`
//! struct in its own module) and one arm in [`run`].

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use revinject::runtime::{HostCapabilities, PolicyRuntime, RuntimeOptions};
use revinject::{input, replay, Session};

/// policy-server's allocator since 1.13 (kubewarden/policy-server#766). The host's share of
/// a request (serializing it, parsing the mutated pod back, the JSONPatch diff) is mostly
/// allocation, so `revinject bench` costs it with the allocator the cluster runs.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "revinject",
    version,
    about = "Host harness for the revision-injector Kubewarden policy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options of the wasm runtime shared by the subcommands that load the policy.
#[derive(clap::Args, Clone, Debug)]
struct RuntimeArgs {
    /// Wall-clock deadline of one policy call, in milliseconds (policy-server's default: 2000).
    #[arg(long, default_value_t = 2000)]
    deadline_ms: u64,
    /// Do not use the on-disk cache of compiled modules.
    #[arg(long)]
    no_cache: bool,
    /// Cap on the policy's linear memory, in MiB (0: no cap beyond wasm's 4 GiB).
    #[arg(long, default_value_t = (revinject::runtime::DEFAULT_MAX_MEMORY >> 20) as u64)]
    max_memory_mb: u64,
}

impl RuntimeArgs {
    fn options(&self) -> RuntimeOptions {
        let mut options = RuntimeOptions {
            deadline: Duration::from_millis(self.deadline_ms),
            max_memory: (self.max_memory_mb > 0).then(|| {
                let bytes = self.max_memory_mb.saturating_mul(1 << 20);
                usize::try_from(bytes).unwrap_or(usize::MAX)
            }),
            ..RuntimeOptions::default()
        };
        if self.no_cache {
            options.cache_dir = None;
        }
        options
    }
}

#[derive(Subcommand)]
enum Command {
    /// Evaluate one request and print the AdmissionResponse as one JSON line, like `kwctl run`.
    Run {
        /// An AdmissionReview or a bare AdmissionRequest (JSON).
        #[arg(short = 'r', long)]
        request_path: PathBuf,
        /// Policy settings (YAML or JSON).
        #[arg(short = 's', long)]
        settings_path: Option<PathBuf>,
        /// A kwctl host-capabilities session answering the policy's namespace lookups.
        #[arg(long)]
        replay_host_capabilities_interactions: Option<PathBuf>,
        /// Accepted for kwctl compatibility: lookups are always allowed (answered by the session).
        #[arg(long)]
        allow_context_aware: bool,
        #[command(flatten)]
        runtime: RuntimeArgs,
        /// The policy module.
        policy: PathBuf,
    },
    /// Run every fixture case under DIR against its expectation.
    Replay {
        /// Directory searched recursively for `case.yaml` manifests.
        dir: PathBuf,
        /// Print each decision (the `revision-injector/decision` audit annotation).
        #[arg(long)]
        verbose: bool,
        /// The policy module.
        #[arg(long, default_value = "policy.wasm")]
        policy: PathBuf,
        #[command(flatten)]
        runtime: RuntimeArgs,
    },
    /// Run Istio's sidecar-injection golden tests (a conformance suite directory) through the policy.
    Conformance(revinject::conformance::ConformanceArgs),
    /// Inject the pod templates of a manifest offline through the policy, like `istioctl kube-inject`.
    KubeInject(revinject::kube_inject::KubeInjectArgs),
    /// Settings and manifests for every revision an istiod install runs, from
    /// `kubectl get configmap,mutatingwebhookconfiguration -A -o yaml`.
    Import(revinject::import::ImportArgs),
    /// Print the Kubewarden ClusterAdmissionPolicy (and policy-server entry) for a revision.
    Manifest(revinject::manifest::ManifestArgs),
    /// Rehearse a canary upgrade scenario: which revision each pod runs on after every step.
    Upgrade(revinject::upgrade::UpgradeArgs),
    /// Which installed revision injects a pod, and why (like `istioctl x check-inject`).
    Check(revinject::check::CheckArgs),
    /// Random requests through the policy, checking its invariants (and, with --duration, a
    /// multi-threaded soak compared with a single-threaded run).
    Fuzz(revinject::fuzz::FuzzArgs),
    /// Measure policy.wasm on the bundled workloads (latency, throughput, instantiation).
    Bench(revinject::bench::BenchArgs),
    /// Every fixture case through Kubewarden's real `kwctl run` and through revinject: both
    /// must answer the same (and meet the case's expectation).
    Crosscheck {
        #[command(flatten)]
        args: revinject::crosscheck::CrosscheckArgs,
        #[command(flatten)]
        runtime: RuntimeArgs,
    },
    /// The fixtures through Kubewarden's real policy-server on loopback, with Namespaces from
    /// a fake Kubernetes API: every answer must meet its case and equal revinject's.
    E2e {
        #[command(flatten)]
        args: revinject::e2e::E2eArgs,
        #[command(flatten)]
        runtime: RuntimeArgs,
    },
    /// Serve Namespaces (from sessions or JSON files) as a small fake Kubernetes API on
    /// 127.0.0.1, for a local policy-server.
    FakeKube(revinject::fake_kube::FakeKubeArgs),
    /// A bounded soak through Kubewarden's real policy-server: every answer well formed,
    /// timeouts, p99 and policy-server's RSS over time.
    Soak(revinject::soak::SoakArgs),
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("revinject: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run {
            request_path,
            settings_path,
            replay_host_capabilities_interactions,
            allow_context_aware: _,
            runtime,
            policy,
        } => run_one(
            &request_path,
            settings_path.as_deref(),
            replay_host_capabilities_interactions.as_deref(),
            &runtime.options(),
            &policy,
        ),
        Command::Replay {
            dir,
            verbose,
            policy,
            runtime,
        } => replay::run(&dir, &policy, &runtime.options(), verbose),
        Command::KubeInject(args) => revinject::kube_inject::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Manifest(args) => revinject::manifest::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Import(args) => revinject::import::run(&args),
        Command::Upgrade(args) => revinject::upgrade::run(&args),
        Command::Check(args) => revinject::check::run(&args),
        Command::Fuzz(args) => revinject::fuzz::run(&args),
        Command::Bench(args) => revinject::bench::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Crosscheck { args, runtime } => {
            revinject::crosscheck::run(&args, &runtime.options())
        }
        Command::E2e { args, runtime } => revinject::e2e::run(&args, &runtime.options()),
        Command::Soak(args) => revinject::soak::run(&args),
        Command::FakeKube(args) => revinject::fake_kube::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Conformance(args) => Ok(if revinject::conformance::run(&args)? {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }),
    }
}

/// `revinject run`: same inputs and output as `kwctl run`.
fn run_one(
    request_path: &std::path::Path,
    settings_path: Option<&std::path::Path>,
    session_path: Option<&std::path::Path>,
    options: &RuntimeOptions,
    policy: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let request = input::read_request(request_path)?;
    let settings = input::read_settings(settings_path)?;
    let session = match session_path {
        Some(path) => Session::load(path)?,
        None => Session::default(),
    };
    let runtime = PolicyRuntime::load(policy, options)?;
    let (valid, message) = runtime
        .validate_settings(&settings)
        .context("cannot validate the settings")?;
    if !valid {
        println!(
            "{}",
            serde_json::json!({"valid": false, "message": message})
        );
        bail!(
            "Provided settings are not valid: {}",
            message.unwrap_or_default()
        );
    }
    let host: &dyn HostCapabilities = &session;
    let response = runtime.admission_response(&request, &settings, host)?;
    println!("{}", serde_json::to_string(&response)?);
    if session.remaining() > 0 {
        eprintln!(
            "revinject: {} of {} recorded exchanges were not replayed",
            session.remaining(),
            session.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
