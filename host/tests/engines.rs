//! `revinject crosscheck` and `revinject e2e` against Kubewarden's real engines: a fixture
//! whose expectation is wrong must fail under them (the engines' answers are checked, not
//! just revinject's), and a failing e2e run must leave no policy-server behind.
//!
//! These need kwctl and policy-server ($KWCTL / $POLICY_SERVER, PATH or
//! ../shared/kubewarden/bin); without them each test says so and returns.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{policy_wasm, repo};

fn engine(env: &str, name: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env).filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let paths = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&paths)
        .map(|d| d.join(name))
        .chain([repo().join("../shared/kubewarden/bin").join(name)])
        .find(|p| p.is_file())
}

/// A copy of the seed fixture whose `injected` case expects the wrong revision annotation.
fn tampered_fixture(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("revinject-engines-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let case = dir.join("seed");
    std::fs::create_dir_all(&case).unwrap();
    let seed = repo().join("test-data/seed-asm-1233-2");
    for f in ["request.json", "session.yml", "settings.yaml"] {
        std::fs::copy(seed.join(f), case.join(f)).unwrap();
    }
    std::fs::write(
        case.join("case.yaml"),
        "settings: settings.yaml\nsession: session.yml\ncases:\n\
         - name: right\n  expect: {allowed: true, injected: true, patched: {/metadata/annotations/istio.io~1rev: asm-1233-2}}\n\
         - name: wrong\n  expect: {allowed: true, injected: true, patched: {/metadata/annotations/istio.io~1rev: asm-9999-9}}\n",
    )
    .unwrap();
    dir
}

fn run(args: &[&str], kwctl: &Path, server: Option<&Path>) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_revinject"));
    command
        .current_dir(repo())
        .args(args)
        .env("KWCTL", kwctl)
        .arg("--policy")
        .arg(policy_wasm());
    if let Some(server) = server {
        command.env("POLICY_SERVER", server);
    }
    let out = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn crosscheck_fails_when_kwctl_misses_the_expectation() {
    let Some(kwctl) = engine("KWCTL", "kwctl") else {
        eprintln!("skipped: kwctl not found");
        return;
    };
    let dir = tampered_fixture("crosscheck");
    let work = dir.join("work");
    let (ok, text) = run(
        &[
            "crosscheck",
            dir.to_str().unwrap(),
            "--work-dir",
            work.to_str().unwrap(),
        ],
        &kwctl,
        None,
    );
    assert!(!ok, "{text}");
    assert!(text.contains("same seed/right"), "{text}");
    assert!(
        text.contains("DIFF seed/wrong: kwctl: /metadata/annotations/istio.io~1rev"),
        "{text}"
    );
    assert!(text.contains("1 cases answered the same"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(cmdline);
        }
    }
    found
}

#[test]
fn e2e_fails_on_a_wrong_expectation_and_leaves_nothing_running() {
    let (Some(kwctl), Some(server)) = (
        engine("KWCTL", "kwctl"),
        engine("POLICY_SERVER", "policy-server"),
    ) else {
        eprintln!("skipped: kwctl or policy-server not found");
        return;
    };
    let dir = tampered_fixture("e2e");
    let work = dir.join("work");
    let (ok, text) = run(
        &[
            "e2e",
            dir.to_str().unwrap(),
            "--work-dir",
            work.to_str().unwrap(),
        ],
        &kwctl,
        Some(&server),
    );
    assert!(!ok, "{text}");
    assert!(text.contains("ok   seed/right"), "{text}");
    assert!(
        text.contains("FAIL seed/wrong: policy-server: /metadata/annotations/istio.io~1rev"),
        "{text}"
    );
    // policy-server was started with files under `work`: none of it may outlive the command.
    let left = processes_mentioning(work.to_str().unwrap());
    assert!(left.is_empty(), "still running: {left:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
