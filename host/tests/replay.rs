//! `revinject replay` as CI runs it: one line per case, the closing count, the exit status.

use std::path::Path;
use std::process::Command;

mod common;
use common::repo;

fn replay(dir: &Path) -> (bool, Vec<String>) {
    let out = Command::new(env!("CARGO_BIN_EXE_revinject"))
        .arg("replay")
        .arg(dir)
        .arg("--policy")
        .arg(repo().join("policy.wasm"))
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!stdout.is_empty(), "{stderr}");
    (
        out.status.success(),
        stdout.lines().map(str::to_string).collect(),
    )
}

#[test]
fn failures_fail_the_run_and_pending_cases_are_reported_apart() {
    let dir = std::env::temp_dir().join(format!("revinject-replay-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("update")).unwrap();
    std::fs::copy(
        repo().join("test-data/malformed/update.json"),
        dir.join("update/request.json"),
    )
    .unwrap();
    let manifest = |failing: bool| {
        let mut cases = String::from(
            "cases:\n\
             - name: accepted\n  expect: {allowed: true, injected: false}\n\
             - name: not-yet\n  pending: waits for a feature\n  expect: {allowed: false}\n",
        );
        if failing {
            cases.push_str("- name: wrong\n  expect: {allowed: false}\n");
        }
        cases
    };

    std::fs::write(dir.join("update/case.yaml"), manifest(true)).unwrap();
    let (ok, lines) = replay(&dir);
    assert!(!ok, "{lines:?}");
    assert_eq!(lines[0], "ok   update/accepted");
    assert!(
        lines[1].starts_with("PEND update/not-yet: waits for a feature"),
        "{lines:?}"
    );
    assert!(
        lines[2].starts_with("FAIL update/wrong: allowed=true, expected false"),
        "{lines:?}"
    );
    assert_eq!(lines.last().unwrap(), "1 passed, 1 failed (1 pending)");

    std::fs::write(dir.join("update/case.yaml"), manifest(false)).unwrap();
    let (ok, lines) = replay(&dir);
    assert!(ok, "{lines:?}");
    assert_eq!(lines.last().unwrap(), "1 passed, 0 failed (1 pending)");

    // A broken manifest is an error, not a silent skip.
    std::fs::write(dir.join("update/case.yaml"), "expect: {alowed: true}\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_revinject"))
        .args(["replay", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("alowed"));
    std::fs::remove_dir_all(&dir).unwrap();
}
