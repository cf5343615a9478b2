//! Running the measurements: one compiled module shared by `threads` workers, each worker with
//! its own [`PolicyRuntime`], all starting every measurement together at a barrier.

use anyhow::{anyhow, bail};
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::Barrier;
use std::time::{Duration, Instant};
use wasmtime_provider::wasmtime;

use super::report::{Distribution, Report, ResultRow};
use super::{Allocator, Workload};
use crate::runtime::{self, PolicyRuntime, RuntimeOptions};

/// Instance model of a measurement.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One instance reused for every request (as `kwctl bench`).
    Warm,
    /// A new instance per request from the pre-instantiated module (as policy-server).
    Fresh,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Warm => "warm",
            Mode::Fresh => "fresh",
        }
    }
}

/// What one sample times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The ValidationRequest serialization, the guest call, the JSONPatch diff and base64.
    EndToEnd,
    /// The waPC `validate` call alone (payload already serialized, instance already made).
    Guest,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::EndToEnd => "end-to-end",
            Scope::Guest => "guest",
        }
    }
}

/// How long one measurement runs, per worker.
#[derive(Clone, Copy, Debug)]
pub enum Budget {
    Iterations(u64),
    Time(Duration),
}

impl Budget {
    /// Untimed requests before a measurement: page faults, caches, pool slots.
    fn warmup(self) -> (u64, Duration) {
        match self {
            Budget::Iterations(n) => ((n / 10).clamp(1, 200), Duration::ZERO),
            Budget::Time(d) => (1, d / 10),
        }
    }
}

pub struct Plan<'a> {
    pub workloads: &'a [Workload],
    pub modes: &'a [Mode],
    /// Worker counts, each measured in turn.
    pub threads: &'a [u32],
    pub budget: Budget,
    pub allocator: Allocator,
    /// Times every measurement is repeated (all jobs at every worker count in turn, then
    /// again); each figure comes from the round with the median p50, so one burst of load
    /// on a shared machine does not decide a figure, and the worker counts of a round are
    /// measured back to back, which keeps the scaling figures comparable.
    pub rounds: u32,
}

impl Plan<'_> {
    fn max_threads(&self) -> u32 {
        self.threads.iter().copied().max().unwrap_or(1)
    }
}

/// One measurement: which workload, how, what is timed.
#[derive(Clone, Copy, Debug)]
struct Job {
    workload: usize,
    mode: Mode,
    scope: Scope,
}

/// What one worker measured for one job.
struct WorkerRun {
    samples: Vec<u64>,
    elapsed: Duration,
}

const SCOPES: [Scope; 2] = [Scope::EndToEnd, Scope::Guest];
/// Instantiations timed for `instantiate_us`.
const INSTANTIATIONS: usize = 200;

fn options() -> RuntimeOptions {
    RuntimeOptions {
        deadline: Duration::from_secs(2),
        cache_dir: None,
        guest_logs: false,
        ..RuntimeOptions::default()
    }
}

fn engine(plan: &Plan) -> anyhow::Result<wasmtime::Engine> {
    let slots = plan.max_threads().saturating_mul(2).saturating_add(8);
    let allocator = plan.allocator;
    runtime::new_engine_with(&options(), move |config| {
        if allocator == Allocator::Pooling {
            let mut pool = wasmtime::PoolingAllocationConfig::new();
            pool.total_core_instances(slots)
                .total_memories(slots)
                .total_tables(slots)
                // Policies run in well under 1 GiB; a smaller slot keeps the reservation modest.
                .max_memory_size(1 << 30);
            config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
            config.memory_init_cow(true);
        }
    })
}

/// Compile, time instantiation, then run every job for every worker count.
pub fn run(plan: &Plan, bytes: &[u8]) -> anyhow::Result<Report> {
    let engine = engine(plan)?;
    let started = Instant::now();
    let module = runtime::compile(&engine, bytes)?;
    let compile = started.elapsed();

    let opts = options();
    let probe = PolicyRuntime::from_module(&engine, module.clone(), &opts)?;
    for workload in plan.workloads {
        check_workload(&probe, workload)?;
    }
    let instantiate = time_instantiation(&probe)?;
    drop(probe);

    let jobs: Vec<Job> = (0..plan.workloads.len())
        .flat_map(|workload| {
            plan.modes.iter().flat_map(move |&mode| {
                SCOPES.map(|scope| Job {
                    workload,
                    mode,
                    scope,
                })
            })
        })
        .collect();
    let rounds = plan.rounds.max(1) as usize;
    let bar = ProgressBar::new((jobs.len() * plan.threads.len() * rounds) as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(100));

    // Rounds outermost: a slow phase of the machine (seconds to minutes) then falls on
    // every worker count of a round alike rather than on one count's rounds only.
    let mut per_threads: Vec<Vec<Vec<Vec<WorkerRun>>>> = plan
        .threads
        .iter()
        .map(|_| Vec::with_capacity(rounds))
        .collect();
    for _ in 0..rounds {
        for (&threads, per_round) in plan.threads.iter().zip(&mut per_threads) {
            let pool = Pool {
                plan,
                engine: &engine,
                module: &module,
                opts: &opts,
                jobs: &jobs,
                threads,
            };
            match pool.run(&bar) {
                Ok(per_worker) => per_round.push(per_worker),
                Err(e) => {
                    bar.finish_and_clear();
                    return Err(e);
                }
            }
        }
    }
    let mut results = Vec::new();
    let mut distributions = Vec::new();
    for (&threads, per_round) in plan.threads.iter().zip(&per_threads) {
        for (index, job) in jobs.iter().enumerate() {
            let (samples, wall) = median_round(per_round, index);
            let name = plan
                .workloads
                .get(job.workload)
                .map_or("", |w| w.name.as_str());
            let row = ResultRow::from_samples(name, *job, threads, &samples, wall);
            distributions.push(Distribution {
                label: format!("{} {} {} x{threads}", row.workload, row.mode, row.scope),
                mode: row.mode.clone(),
                scope: row.scope.clone(),
                threads,
                samples,
            });
            results.push(row);
        }
    }
    bar.finish_and_clear();
    Ok(Report {
        module_bytes: bytes.len() as u64,
        compile_ms: compile.as_secs_f64() * 1e3,
        instantiate_us: instantiate,
        peak_rss_bytes: peak_rss_bytes().unwrap_or(0),
        results,
        distributions,
        allocator: plan.allocator,
    })
}

/// Job `index`'s samples (all workers, sorted) and wall time in the round whose p50 is the
/// median of the rounds' (the lower middle one for an even count).
fn median_round(per_round: &[Vec<Vec<WorkerRun>>], index: usize) -> (Vec<u64>, Duration) {
    let mut rounds: Vec<(Vec<u64>, Duration)> = per_round
        .iter()
        .map(|per_worker| {
            let runs: Vec<&WorkerRun> = per_worker.iter().filter_map(|w| w.get(index)).collect();
            let mut samples: Vec<u64> = runs
                .iter()
                .flat_map(|r| r.samples.iter().copied())
                .collect();
            samples.sort_unstable();
            let wall = runs.iter().map(|r| r.elapsed).max().unwrap_or_default();
            (samples, wall)
        })
        .collect();
    rounds.sort_by_key(|(samples, _)| percentile(samples, 0.5));
    let middle = rounds.len().saturating_sub(1) / 2;
    if middle < rounds.len() {
        rounds.swap_remove(middle)
    } else {
        (Vec::new(), Duration::ZERO)
    }
}

/// `threads` workers running every job together.
struct Pool<'a> {
    plan: &'a Plan<'a>,
    engine: &'a wasmtime::Engine,
    module: &'a wasmtime::Module,
    opts: &'a RuntimeOptions,
    jobs: &'a [Job],
    threads: u32,
}

impl Pool<'_> {
    /// Every worker's runs, in job order.
    fn run(&self, bar: &ProgressBar) -> anyhow::Result<Vec<Vec<WorkerRun>>> {
        let barrier = Barrier::new(self.threads as usize);
        let per_worker: Vec<anyhow::Result<Vec<WorkerRun>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..self.threads)
                .map(|index| {
                    let barrier = &barrier;
                    let bar = (index == 0).then_some(bar);
                    std::thread::Builder::new()
                        .name(format!("bench-{index}"))
                        .stack_size(8 << 20)
                        .spawn_scoped(scope, move || self.worker(barrier, bar))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| match h {
                    Ok(h) => h
                        .join()
                        .unwrap_or_else(|_| Err(anyhow!("a bench worker panicked"))),
                    Err(e) => Err(anyhow!("cannot start a bench worker: {e}")),
                })
                .collect()
        });
        per_worker.into_iter().collect()
    }

    fn worker(
        &self,
        barrier: &Barrier,
        bar: Option<&ProgressBar>,
    ) -> anyhow::Result<Vec<WorkerRun>> {
        let plan = self.plan;
        // Every worker reaches every barrier, even after a failure: the others wait on it.
        let runtime = PolicyRuntime::from_module(self.engine, self.module.clone(), self.opts);
        let payloads: Vec<anyhow::Result<Vec<u8>>> = plan.workloads.iter().map(payload).collect();
        let mut runs = Vec::with_capacity(self.jobs.len());
        let mut failure = None;
        for job in self.jobs {
            if let Some(bar) = bar {
                let name = plan
                    .workloads
                    .get(job.workload)
                    .map_or("", |w| w.name.as_str());
                bar.set_message(format!(
                    "{name} {} {} x{}",
                    job.mode.name(),
                    job.scope.name(),
                    self.threads
                ));
            }
            barrier.wait();
            if failure.is_none() {
                let workload = plan.workloads.get(job.workload);
                let run = match (&runtime, workload, payloads.get(job.workload)) {
                    (Ok(runtime), Some(workload), Some(Ok(payload))) => {
                        measure(runtime, workload, payload, *job, plan.budget)
                    }
                    (Err(e), _, _) => Err(anyhow!("cannot load the policy in a worker: {e:#}")),
                    (_, _, Some(Err(e))) => Err(anyhow!("cannot serialize the payload: {e:#}")),
                    _ => Err(anyhow!("no such workload")),
                };
                match run {
                    Ok(run) => runs.push(run),
                    Err(e) => failure = Some(e),
                }
            }
            if let Some(bar) = bar {
                bar.inc(1);
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(runs),
        }
    }
}

impl ResultRow {
    fn from_samples(
        workload: &str,
        job: Job,
        threads: u32,
        sorted: &[u64],
        wall: Duration,
    ) -> Self {
        let us = |q: f64| percentile(sorted, q) as f64 / 1e3;
        let secs = wall.as_secs_f64();
        ResultRow {
            workload: workload.to_string(),
            mode: job.mode.name().to_string(),
            threads,
            scope: job.scope.name().to_string(),
            p50_us: us(0.50),
            p90_us: us(0.90),
            p99_us: us(0.99),
            max_us: sorted.last().copied().unwrap_or(0) as f64 / 1e3,
            rps: if secs > 0.0 {
                sorted.len() as f64 / secs
            } else {
                0.0
            },
        }
    }
}

/// Nearest-rank percentile of sorted nanoseconds.
pub fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.saturating_sub(1).min(sorted.len() - 1))
        .copied()
        .unwrap_or(0)
}

/// A workload must be admitted and its settings accepted: timing errors is not the point.
fn check_workload(runtime: &PolicyRuntime, workload: &Workload) -> anyhow::Result<()> {
    let (valid, message) = runtime.validate_settings(&workload.settings)?;
    if !valid {
        bail!(
            "workload {}: the policy refuses its settings: {}",
            workload.name,
            message.unwrap_or_default()
        );
    }
    let response =
        runtime.admission_response(&workload.request, &workload.settings, &workload.namespaces)?;
    if !response.allowed {
        let message = response.status.and_then(|s| s.message).unwrap_or_default();
        bail!(
            "workload {}: the policy rejects it: {message}",
            workload.name
        );
    }
    Ok(())
}

/// Median time to make a ready instance (store, instantiation from the `InstancePre`,
/// `wapc_init`), in microseconds.
fn time_instantiation(runtime: &PolicyRuntime) -> anyhow::Result<f64> {
    let mut samples = Vec::with_capacity(INSTANTIATIONS);
    for _ in 0..INSTANTIATIONS {
        runtime.discard_instance();
        let started = Instant::now();
        runtime.prepare_instance()?;
        samples.push(started.elapsed().as_nanos() as u64);
    }
    samples.sort_unstable();
    Ok(percentile(&samples, 0.5) as f64 / 1e3)
}

/// The policy-server `validate` payload, serialized once for the guest scope.
fn payload(workload: &Workload) -> anyhow::Result<Vec<u8>> {
    Ok(serde_json::to_vec(&serde_json::json!({
        "request": workload.request,
        "settings": workload.settings,
    }))?)
}

/// Run one job on this worker until the budget is spent.
fn measure(
    runtime: &PolicyRuntime,
    workload: &Workload,
    payload: &[u8],
    job: Job,
    budget: Budget,
) -> anyhow::Result<WorkerRun> {
    let request = |timed: bool| -> anyhow::Result<u64> {
        if job.mode == Mode::Fresh {
            runtime.discard_instance();
            if job.scope == Scope::Guest {
                runtime.prepare_instance()?;
            }
        }
        let started = Instant::now();
        match job.scope {
            Scope::EndToEnd => {
                let response = runtime.admission_response(
                    &workload.request,
                    &workload.settings,
                    &workload.namespaces,
                )?;
                let elapsed = started.elapsed();
                if timed && !response.allowed {
                    bail!("the policy stopped admitting {}", workload.name);
                }
                Ok(elapsed.as_nanos() as u64)
            }
            Scope::Guest => {
                let answer = runtime.call("validate", payload, &workload.namespaces);
                let elapsed = started.elapsed();
                answer?;
                Ok(elapsed.as_nanos() as u64)
            }
        }
    };
    let (warm_iterations, warm_time) = budget.warmup();
    let started = Instant::now();
    let mut done = 0;
    while done < warm_iterations || started.elapsed() < warm_time {
        request(false)?;
        done += 1;
    }
    let mut samples = Vec::new();
    let started = Instant::now();
    loop {
        let done = samples.len() as u64;
        let finished = match budget {
            Budget::Iterations(n) => done >= n,
            Budget::Time(d) => done > 0 && started.elapsed() >= d,
        };
        if finished {
            break;
        }
        samples.push(request(true)?);
    }
    Ok(WorkerRun {
        samples,
        elapsed: started.elapsed(),
    })
}

/// Peak resident set size of this process (`VmHWM` of /proc/self/status), in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_round_with_the_median_p50_gives_the_figures() {
        let run = |samples: Vec<u64>, ms| WorkerRun {
            samples,
            elapsed: Duration::from_millis(ms),
        };
        // One job; p50s by round: 50 (a burst of load), 10, 30 (two workers, merged).
        let per_round = vec![
            vec![vec![run(vec![50, 50, 50], 3)]],
            vec![vec![run(vec![10, 10, 10], 1)]],
            vec![vec![run(vec![40, 30], 2)], vec![run(vec![20, 35], 4)]],
        ];
        let (samples, wall) = median_round(&per_round, 0);
        assert_eq!(samples, vec![20, 30, 35, 40]);
        assert_eq!(
            wall,
            Duration::from_millis(4),
            "the slowest worker's wall time"
        );
        // An even count takes the lower middle round; one round is itself.
        assert_eq!(median_round(&per_round[..2], 0).0, vec![10, 10, 10]);
        assert_eq!(median_round(&per_round[..1], 0).0, vec![50, 50, 50]);
        assert!(median_round(&per_round, 1).0.is_empty(), "no such job");
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let sorted: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 0.5), 50);
        assert_eq!(percentile(&sorted, 0.99), 99);
        assert_eq!(percentile(&sorted, 1.0), 100);
        assert_eq!(percentile(&[7], 0.9), 7);
        assert_eq!(percentile(&[], 0.5), 0);
    }

    #[test]
    fn peak_rss_is_read_from_proc() {
        let rss = peak_rss_bytes().expect("Linux /proc");
        assert!(rss > 1024 * 1024, "{rss}");
    }
}
