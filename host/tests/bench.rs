//! `revinject bench` end to end on the real policy.wasm: a few iterations of two workloads in
//! both modes, checking the JSON scripts read, the chart and the Markdown report (shape and
//! consistency only: no timing is asserted).

use serde_json::Value;
use std::process::Command;

mod common;
use common::repo;

#[test]
fn bench_reports_every_measurement_in_the_issue_schema() {
    let wasm = common::policy_wasm();
    let out_dir = std::env::temp_dir().join(format!("revinject-bench-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).unwrap();
    let (svg, md) = (out_dir.join("chart.svg"), out_dir.join("report.md"));
    let out = Command::new(env!("CARGO_BIN_EXE_revinject"))
        .current_dir(repo())
        .args(["bench", "--workload", "hello", "--workload", "skip"])
        .args([
            "--mode",
            "warm",
            "--mode",
            "fresh",
            "--threads",
            "1",
            "--threads",
            "2",
        ])
        .args([
            "--iterations",
            "3",
            "--rounds",
            "2",
            "--output",
            "json",
            "--plot",
        ])
        .arg(&svg)
        .arg("--markdown")
        .arg(&md)
        .arg(&wasm)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["module_bytes"].as_u64(),
        Some(std::fs::metadata(&wasm).unwrap().len())
    );
    for key in ["compile_ms", "instantiate_us"] {
        assert!(
            report[key].as_f64().is_some_and(|v| v > 0.0),
            "{key}: {report}"
        );
    }
    assert!(report["peak_rss_bytes"].as_u64().is_some_and(|v| v > 0));
    let rows = report["results"].as_array().unwrap();
    // 2 workloads x 2 modes x 2 scopes x 2 thread counts.
    assert_eq!(rows.len(), 16, "{report}");
    for row in rows {
        let p = |k: &str| row[k].as_f64().unwrap();
        assert!(p("p50_us") > 0.0 && p("p50_us") <= p("p90_us"), "{row}");
        assert!(
            p("p90_us") <= p("p99_us") && p("p99_us") <= p("max_us"),
            "{row}"
        );
        assert!(p("rps") > 0.0, "{row}");
        assert!(["hello", "skip"].contains(&row["workload"].as_str().unwrap()));
        assert!(["warm", "fresh"].contains(&row["mode"].as_str().unwrap()));
        assert!(["end-to-end", "guest"].contains(&row["scope"].as_str().unwrap()));
    }
    assert!(rows.iter().any(|r| r["threads"] == 2));
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(
        chart.starts_with("<svg") && chart.contains("hello end-to-end"),
        "{chart}"
    );
    let markdown = std::fs::read_to_string(&md).unwrap();
    assert!(
        markdown.contains("| hello | warm | 1 | guest |"),
        "{markdown}"
    );
    assert!(markdown.contains("--rounds 2"), "{markdown}");
    std::fs::remove_dir_all(&out_dir).unwrap();
}

#[test]
fn bench_refuses_an_unknown_workload() {
    let out = Command::new(env!("CARGO_BIN_EXE_revinject"))
        .current_dir(repo())
        .args(["bench", "--workload", "nope", "policy.wasm"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown workload \"nope\""), "{err}");
}
