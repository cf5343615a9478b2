//! What `revinject bench` prints: the table, the JSON object scripts read, the SVG chart of the
//! latency distributions and the Markdown report `make bench` writes to docs/benchmarks.md.

use anyhow::{anyhow, Context as _};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::measure::percentile;
use super::{Allocator, BenchArgs, WORKLOADS};

/// The `--output json` object (the field names and units scripts rely on).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub module_bytes: u64,
    /// Cold compilation (no module cache) of the module, in milliseconds.
    pub compile_ms: f64,
    /// Median time to make a ready instance from the pre-instantiated module, in microseconds.
    pub instantiate_us: f64,
    pub peak_rss_bytes: u64,
    pub results: Vec<ResultRow>,
    #[serde(skip)]
    pub distributions: Vec<Distribution>,
    #[serde(skip)]
    pub allocator: Allocator,
}

/// One measurement: latencies in microseconds, throughput over all workers.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ResultRow {
    pub workload: String,
    pub mode: String,
    pub threads: u32,
    pub scope: String,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub rps: f64,
}

/// The sorted latencies (ns) of one measurement, for the chart.
#[derive(Debug, Clone)]
pub struct Distribution {
    pub label: String,
    pub mode: String,
    pub scope: String,
    pub threads: u32,
    pub samples: Vec<u64>,
}

impl Report {
    /// The row of one measurement, if it was run.
    pub fn find(
        &self,
        workload: &str,
        mode: &str,
        threads: u32,
        scope: &str,
    ) -> Option<&ResultRow> {
        self.results.iter().find(|r| {
            r.workload == workload && r.mode == mode && r.threads == threads && r.scope == scope
        })
    }

    fn summary(&self) -> String {
        let allocator = match self.allocator {
            Allocator::Pooling => "pooling allocator, copy-on-write memory image",
            Allocator::OnDemand => "on-demand allocator",
        };
        format!(
            "policy.wasm {} bytes; cold compile {:.0} ms; instantiate {:.1} µs ({allocator}); \
             peak RSS {:.1} MiB",
            self.module_bytes,
            self.compile_ms,
            self.instantiate_us,
            self.peak_rss_bytes as f64 / (1024.0 * 1024.0)
        )
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = format!("{}\n\n", self.summary());
        let _ = writeln!(
            out,
            "{:<10} {:<6} {:>7} {:<11} {:>9} {:>9} {:>9} {:>9} {:>10}",
            "workload", "mode", "threads", "scope", "p50 µs", "p90 µs", "p99 µs", "max µs", "req/s"
        );
        for r in &self.results {
            let _ = writeln!(
                out,
                "{:<10} {:<6} {:>7} {:<11} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>10.0}",
                r.workload,
                r.mode,
                r.threads,
                r.scope,
                r.p50_us,
                r.p90_us,
                r.p99_us,
                r.max_us,
                r.rps
            );
        }
        out
    }
}

/// Criterion's median estimates (ns) of the native baseline, by benchmark id
/// (`evaluate/hello`, `payload/hello`, ...); empty when `cargo bench` has not run.
pub fn native_medians(criterion_dir: &Path) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for group in ["evaluate", "payload"] {
        for workload in WORKLOADS {
            // Criterion names the directory of `group/name` as `group_name`.
            let path = criterion_dir
                .join(format!("{group}_{workload}"))
                .join("new/estimates.json");
            let median = std::fs::read_to_string(&path)
                .ok()
                .and_then(|text| serde_json::from_str::<Value>(&text).ok())
                .and_then(|v| v.pointer("/median/point_estimate").and_then(Value::as_f64));
            if let Some(ns) = median {
                out.insert(format!("{group}/{workload}"), ns);
            }
        }
    }
    out
}

/// Draw one panel per mode: the latency CDF of every single-worker measurement.
pub fn plot(report: &Report, path: &Path) -> anyhow::Result<()> {
    use plotters::prelude::*;

    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        let modes: Vec<&str> = ["warm", "fresh"]
            .into_iter()
            .filter(|m| report.distributions.iter().any(|d| d.mode == *m))
            .collect();
        let root =
            SVGBackend::new(path, (640 * modes.len().max(1) as u32, 480)).into_drawing_area();
        root.fill(&WHITE)?;
        let shown: Vec<&Distribution> = report
            .distributions
            .iter()
            .filter(|d| d.threads == 1 && !d.samples.is_empty())
            .collect();
        let lo = shown
            .iter()
            .filter_map(|d| d.samples.first())
            .min()
            .copied()
            .unwrap_or(1000);
        let hi = shown
            .iter()
            .filter_map(|d| d.samples.last())
            .max()
            .copied()
            .unwrap_or(1000);
        let (lo, hi) = (
            (lo as f64 / 1e3 * 0.8).max(0.1),
            (hi as f64 / 1e3 * 1.25).max(1.0),
        );
        let panels = root.split_evenly((1, modes.len().max(1)));
        for (panel, mode) in panels.iter().zip(&modes) {
            let mut chart = ChartBuilder::on(panel)
                .caption(format!("{mode} instance, 1 thread"), ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(50)
                .build_cartesian_2d((lo..hi).log_scale(), 0f64..100f64)?;
            chart
                .configure_mesh()
                .x_desc("latency (µs, log scale)")
                .y_desc("percentile")
                .draw()?;
            for d in shown.iter().filter(|d| d.mode == *mode) {
                let workload = d.label.split(' ').next().unwrap_or("");
                let index = WORKLOADS.iter().position(|w| *w == workload).unwrap_or(0);
                let color = Palette99::pick(index);
                let style = if d.scope == "guest" {
                    color.mix(0.45).stroke_width(1)
                } else {
                    color.stroke_width(2)
                };
                let points = (0..=200).map(|i| {
                    let q = f64::from(i) / 200.0;
                    let us = (percentile(&d.samples, q.max(1e-9)) as f64 / 1e3).clamp(lo, hi);
                    (us, q * 100.0)
                });
                chart
                    .draw_series(LineSeries::new(points, style))?
                    .label(format!("{workload} {}", d.scope))
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

/// Facts about the machine for the report.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            let line = t.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(format!("{:.1} GiB", kb / (1024.0 * 1024.0)))
        })
        .unwrap_or_else(|| "unknown".into());
    // Other work on the machine skews the figures: say how busy it was.
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    format!(
        "- CPUs (nproc): {cpus}\n- CPU model: {cpu}\n- memory: {memory}\n- Linux {kernel}\n\
         - load average (1 min) when the report was written: {load}\n"
    )
}

fn check(met: bool) -> &'static str {
    if met {
        "yes"
    } else {
        "**no**"
    }
}

/// The Markdown report: how to rerun, the machine, targets, figures, native ratios, chart.
pub fn markdown(
    report: &Report,
    native: &BTreeMap<String, f64>,
    args: &BenchArgs,
    chart: Option<&Path>,
) -> String {
    let mut out = String::from(
        "# Benchmarks\n\n\
         Generated by `make bench`; rerun it to refresh this page. Where the time and the \
         bytes go, and what was done about it: [performance-notes.md](performance-notes.md). \
         `make bench` runs\n\n\
         ```sh\n\
         cargo bench --bench evaluate        # native baseline (criterion)\n",
    );
    let mut threads: Vec<String> = args
        .threads
        .iter()
        .map(|t| format!("--threads {t}"))
        .collect();
    if let Some(d) = args.duration {
        threads.push(format!("--duration {d}"));
    }
    if args.rounds > 1 {
        threads.push(format!("--rounds {}", args.rounds));
    }
    let _ = writeln!(
        out,
        "revinject bench {} --plot docs/benchmarks.svg --markdown docs/benchmarks.md {}\n\
         revinject bench --policy-server --threads 1 --threads 2 --duration 2 --rounds 3 \
         --plot docs/benchmarks-policy-server.svg --markdown docs/benchmarks.md policy.wasm\n\
         scripts/fresh-instructions.sh 20 docs/benchmarks.md   # callgrind, fresh instance\n```\n",
        threads.join(" "),
        args.policy.display()
    );
    out.push_str(
        "The first sections are measured in Kubewarden's real policy-server and in \
         instructions (load-independent); the in-process figures after them come from \
         revinject's own wasmtime host. \
         In process, each figure is measured as policy-server pays it: `end-to-end` serializes the \
         ValidationRequest, calls the guest, diffs the mutated pod into a JSONPatch and \
         base64-encodes it, with the crates and the allocator (jemalloc) policy-server \
         uses; `guest` is the waPC `validate` call alone (its namespace lookup included). \
         With `--rounds N` every measurement is repeated N times, interleaved, and each row \
         is the round with the median p50. `warm` reuses one instance, `fresh` makes a new \
         one per request from the pre-instantiated module (pooling allocator, copy-on-write \
         memory image), as policy-server does. Latencies are percentiles of every request; \
         req/s counts all workers.\n\n## Machine\n\n",
    );
    out.push_str(&machine());
    out.push('\n');
    for name in SECTIONS {
        let _ = writeln!(
            out,
            "{}\n(not measured yet: `make bench` writes it)\n{}\n",
            begin(name),
            end(name)
        );
    }
    let _ = writeln!(
        out,
        "## In-process (revinject's wasmtime host)\n\n{}\n",
        report.summary()
    );

    out.push_str("### Targets\n\n| target | measured | met |\n| --- | --- | --- |\n");
    let p50 = |w: &str, m: &str, s: &str| report.find(w, m, 1, s).map(|r| r.p50_us);
    let mut target = |name: &str, measured: Option<f64>, unit: &str, limit: f64| {
        let _ = match measured {
            Some(v) => writeln!(out, "| {name} | {v:.1} {unit} | {} |", check(v <= limit)),
            None => writeln!(out, "| {name} | not run | |"),
        };
    };
    target(
        "hello, fresh, end to end, p50 ≤ 80 µs",
        p50("hello", "fresh", "end-to-end"),
        "µs",
        80.0,
    );
    target(
        "env2000, warm, end to end, p50 ≤ 3 ms",
        p50("env2000", "warm", "end-to-end"),
        "µs",
        3000.0,
    );
    let ratios: Vec<(&str, f64)> = WORKLOADS
        .iter()
        .filter_map(|w| {
            let wasm = p50(w, "warm", "guest")?;
            let native = native.get(&format!("payload/{w}"))? / 1e3;
            Some((*w, wasm / native))
        })
        .collect();
    let worst = ratios
        .iter()
        .map(|(_, r)| *r)
        .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))));
    target(
        "wasm/native ≤ 2.0 on every workload (worst)",
        worst,
        "×",
        2.0,
    );
    let scaling = report
        .find("hello", "warm", 2, "end-to-end")
        .zip(report.find("hello", "warm", 1, "end-to-end"))
        .map(|(two, one)| two.rps / one.rps);
    let _ = match scaling {
        Some(s) => writeln!(
            out,
            "| `--threads 2` ≥ 1.7× one thread (hello, warm) | {s:.2}× | {} |",
            check(s >= 1.7)
        ),
        None => writeln!(
            out,
            "| `--threads 2` ≥ 1.7× one thread (hello, warm) | not run | |"
        ),
    };

    out.push_str(
        "\n### Results\n\n| workload | mode | threads | scope | p50 µs | p90 µs | p99 µs | max µs | req/s |\n\
         | --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for r in &report.results {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} |",
            r.workload, r.mode, r.threads, r.scope, r.p50_us, r.p90_us, r.p99_us, r.max_us, r.rps
        );
    }

    out.push_str(
        "\n### Native baseline\n\nThe same code natively (`cargo bench --bench evaluate`, \
         criterion medians): `payload` is the guest's whole `validate` (parse the payload, \
         settings, `admission::evaluate_owned` as the glue calls it, serialize the answer), \
         `evaluate` starts from the parsed request (and copies the pod it borrows). The ratio compares the wasm guest call (warm, p50) with `payload`.\n\n\
         | workload | native evaluate µs | native payload µs | wasm guest µs | wasm/native |\n\
         | --- | ---: | ---: | ---: | ---: |\n",
    );
    for w in WORKLOADS {
        let native_us = |group: &str| native.get(&format!("{group}/{w}")).map(|ns| ns / 1e3);
        let cell = |v: Option<f64>| v.map_or_else(|| "–".to_string(), |v| format!("{v:.1}"));
        let ratio = ratios
            .iter()
            .find(|(n, _)| *n == w)
            .map(|(_, r)| format!("{r:.2}×"));
        let _ = writeln!(
            out,
            "| {w} | {} | {} | {} | {} |",
            cell(native_us("evaluate")),
            cell(native_us("payload")),
            cell(p50(w, "warm", "guest")),
            ratio.unwrap_or_else(|| "–".into())
        );
    }
    if let Some(chart) = chart {
        let name = chart
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "\n### Latency distribution\n\n![latency CDF per workload, mode and scope]({name})"
        );
    }
    out
}

/// Write `text` to `path`, naming the file on failure.
pub fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// The section `revinject bench --policy-server` writes.
pub const POLICY_SERVER_SECTION: &str = "policy-server";
/// The section `scripts/fresh-instructions.sh` writes (instructions per fresh-instance call).
pub const INSTRUCTIONS_SECTION: &str = "guest-instructions";
/// Sections of docs/benchmarks.md other `make bench` steps fill in, in page order.
pub const SECTIONS: [&str; 2] = [POLICY_SERVER_SECTION, INSTRUCTIONS_SECTION];

fn begin(name: &str) -> String {
    format!("<!-- BEGIN {name} (generated) -->")
}

fn end(name: &str) -> String {
    format!("<!-- END {name} -->")
}

/// The body of section `name` in `doc`, if present.
pub fn section<'a>(doc: &'a str, name: &str) -> Option<&'a str> {
    let (b, e) = (begin(name), end(name));
    let start = doc.find(&b)? + b.len();
    let stop = start + doc[start..].find(&e)?;
    Some(doc[start..stop].trim_matches('\n'))
}

/// `doc` with section `name`'s body replaced by `body` (appended when absent).
pub fn replace_section(doc: &str, name: &str, body: &str) -> String {
    let (b, e) = (begin(name), end(name));
    let body = body.trim_matches('\n');
    if let Some(at) = doc.find(&b) {
        let start = at + b.len();
        if let Some(stop) = doc[start..].find(&e) {
            return format!("{}\n{body}\n{}", &doc[..start], &doc[start + stop..]);
        }
    }
    let sep = if doc.is_empty() || doc.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    format!("{doc}{sep}\n{b}\n{body}\n{e}\n")
}

/// Replace section `name` of the file at `path` (created if missing).
pub fn write_section(path: &Path, name: &str, body: &str) -> anyhow::Result<()> {
    let doc = std::fs::read_to_string(path).unwrap_or_default();
    write(path, &replace_section(&doc, name, body))
}

/// Write `text` to `path`, keeping the bodies of [`SECTIONS`] the old file had (other steps
/// of `make bench` wrote them).
pub fn write_keeping_sections(path: &Path, text: &str) -> anyhow::Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let mut text = text.to_string();
    for name in SECTIONS {
        if let Some(body) = section(&old, name) {
            text = replace_section(&text, name, body);
        }
    }
    write(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_replaced_in_place_and_kept() {
        let doc = format!("# T\n\n{}\nold\n{}\n\n## After\n", begin("a"), end("a"));
        let new = replace_section(&doc, "a", "new body\n");
        assert_eq!(section(&new, "a"), Some("new body"));
        assert!(
            new.starts_with("# T\n") && new.ends_with("## After\n"),
            "{new}"
        );
        assert!(!new.contains("old"));
        let appended = replace_section("# T\n", "b", "x");
        assert_eq!(section(&appended, "b"), Some("x"));
        assert_eq!(section(&appended, "a"), None);
    }

    #[test]
    fn native_medians_read_criterion_estimates() {
        let dir = std::env::temp_dir().join(format!("revinject-criterion-{}", std::process::id()));
        let new = dir.join("payload_hello/new");
        std::fs::create_dir_all(&new).unwrap();
        std::fs::write(
            new.join("estimates.json"),
            r#"{"mean":{"point_estimate":9.0},"median":{"point_estimate":1234.5}}"#,
        )
        .unwrap();
        let medians = native_medians(&dir);
        assert_eq!(medians.get("payload/hello"), Some(&1234.5));
        assert_eq!(medians.len(), 1, "{medians:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn json_has_exactly_the_issue_schema() {
        let report = Report {
            module_bytes: 1,
            compile_ms: 2.0,
            instantiate_us: 3.0,
            peak_rss_bytes: 4,
            results: vec![ResultRow {
                workload: "hello".into(),
                mode: "warm".into(),
                threads: 1,
                scope: "guest".into(),
                p50_us: 1.0,
                p90_us: 2.0,
                p99_us: 3.0,
                max_us: 4.0,
                rps: 5.0,
            }],
            distributions: Vec::new(),
            allocator: Allocator::Pooling,
        };
        let v = serde_json::to_value(&report).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "compile_ms",
                "instantiate_us",
                "module_bytes",
                "peak_rss_bytes",
                "results"
            ]
        );
        let row: Vec<&str> = v["results"][0]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            row,
            [
                "max_us", "mode", "p50_us", "p90_us", "p99_us", "rps", "scope", "threads",
                "workload"
            ]
        );
    }
}
