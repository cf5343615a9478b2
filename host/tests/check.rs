//! `revinject check` against the real `policy.wasm` (built by `make` before the tests run),
//! with the canary fixtures' settings (`test-data/canary`).

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use revinject::check::{check_pod, pod_object, Installed, Verdict};
use revinject::conformance::{NativeEvaluator, WasmEvaluator};
use revinject::runtime::namespace_object;

mod common;
use common::repo;

const OLD: &str = "test-data/canary/settings-old.yaml";
const NEW: &str = "test-data/canary/settings-new.yaml";

fn wasm() -> WasmEvaluator {
    let wasm = common::policy_wasm();
    WasmEvaluator::load(&wasm).unwrap()
}

/// Run the CLI from the repository root: (exit code, stdout, stderr).
fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_revinject"))
        .current_dir(repo())
        .arg("check")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// Input files under Cargo's scratch directory for integration tests (inside `target/`), so
/// test runs leave nothing behind in the system's temporary directory.
fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn json_names_the_revision_the_namespace_label_selects() {
    for (label, injector) in [
        ("asm-1233-2", "asm-1233-2 (default)"),
        ("asm-1240-1", "asm-1240-1"),
    ] {
        let ns = format!("istio.io/rev={label}");
        let (code, out, err) = cli(&[
            OLD,
            NEW,
            "--namespace-labels",
            &ns,
            "--pod-labels",
            "app=web",
            "-o",
            "json",
        ]);
        assert_eq!(code, 0, "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["injectedBy"], json!([injector]), "{out}");
        let rules: Vec<&str> = v["revisions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["rule"].as_str().unwrap())
            .collect();
        assert!(
            rules.contains(&"rev.namespace") && rules.contains(&"none"),
            "{out}"
        );
    }
}

#[test]
fn table_shows_the_leftover_istio_injection_label_once() {
    let (code, out, err) = cli(&[
        OLD,
        NEW,
        "--namespace-labels",
        "istio-injection=enabled,istio.io/rev=asm-1240-1",
        "-n",
        "shop",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("REVISION"), "{out}");
    assert!(out.lines().next().unwrap().contains("ISTIO"), "{out}");
    // Each revision's row names the Istio version its settings pin.
    let row = |rev: &str| {
        out.lines()
            .find(|l| l.starts_with(rev))
            .unwrap_or("")
            .to_string()
    };
    assert!(row("asm-1233-2").contains("1.23.3"), "{out}");
    assert!(row("asm-1240-1").contains("1.24.0"), "{out}");
    assert_eq!(out.matches("IST0123").count(), 1, "{out}");
    assert!(
        out.contains("Warning (asm-1233-2 (default)): namespace \"shop\""),
        "{out}"
    );
    assert!(
        out.contains("Revision asm-1233-2 (default) injects this pod."),
        "{out}"
    );
}

#[test]
fn manifests_work_for_the_namespace_and_the_pod() {
    let ns = temp_file(
        "ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels: {istio.io/rev: asm-1240-1}\n",
    );
    let deploy = temp_file(
        "deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec:\n  template:\n    metadata:\n      labels: {app: web, sidecar.istio.io/inject: \"false\"}\n    spec:\n      containers: [{name: web, image: nginx}]\n",
    );
    let (code, out, err) = cli(&[
        OLD,
        NEW,
        "--namespace-file",
        ns.to_str().unwrap(),
        "-f",
        deploy.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["namespace"], "shop");
    assert_eq!(v["injectedBy"], json!([]), "the pod opts out: {out}");
    assert!(v["revisions"][1]["reason"]
        .as_str()
        .unwrap()
        .contains("sidecar.istio.io/inject=false"));
}

#[test]
fn overlaps_pass_for_the_canary_setup_and_fail_for_two_defaults() {
    let (code, out, err) = cli(&["--overlaps", OLD, NEW]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("No overlap"), "{out}");

    let second_default = temp_file(
        "second-default.yaml",
        "revision: asm-1240-1\ndefaultRevision: true\n",
    );
    let (code, out, _) = cli(&[
        "--overlaps",
        OLD,
        second_default.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert_eq!(code, 1, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let found = v["overlaps"].as_array().unwrap();
    assert!(
        found.iter().any(
            |o| o["namespaceLabels"] == json!({"istio-injection": "enabled"})
                && o["podLabels"] == json!({})
        ),
        "{out}"
    );
}

#[test]
fn invalid_settings_are_refused_naming_the_file() {
    let bad = temp_file("bad.yaml", "revision: asm-1240-1\ntags: [asm-1240-1]\n");
    let (code, _, err) = cli(&[
        bad.to_str().unwrap(),
        "--namespace-labels",
        "istio.io/rev=x",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("bad.yaml") && err.contains("tags[0]"), "{err}");
}

/// The wasm policy and the native code agree on every label combination of the canary setup.
#[test]
fn policy_wasm_decides_like_the_native_code() {
    let settings = |p: &str| revinject::input::read_settings(Some(&repo().join(p))).unwrap();
    let mut wasm = wasm();
    let installed: Vec<Installed> = [OLD, NEW]
        .iter()
        .map(|p| Installed::new(p, settings(p), &mut wasm).unwrap())
        .collect();
    let revs = [
        None,
        Some("default"),
        Some("asm-1233-2"),
        Some("asm-1240-1"),
    ];
    let mut compared = 0;
    for injection in [None, Some("enabled"), Some("disabled")] {
        for ns_rev in revs {
            for inject in [None, Some("true"), Some("false")] {
                for pod_rev in revs {
                    let pick = |pairs: [(&str, Option<&str>); 2]| -> BTreeMap<String, String> {
                        pairs
                            .iter()
                            .filter_map(|(k, v)| v.map(|v| (k.to_string(), v.to_string())))
                            .collect()
                    };
                    let ns = namespace_object(
                        "shop",
                        &pick([("istio-injection", injection), ("istio.io/rev", ns_rev)]),
                    );
                    let pod_labels = pick([
                        ("sidecar.istio.io/inject", inject),
                        ("istio.io/rev", pod_rev),
                    ]);
                    let pod = pod_object("shop", &pod_labels, &BTreeMap::new());
                    let from_wasm: Vec<Verdict> =
                        check_pod(&mut wasm, &installed, &ns, &pod).unwrap();
                    let native = check_pod(&mut NativeEvaluator, &installed, &ns, &pod).unwrap();
                    assert_eq!(from_wasm, native);
                    assert!(
                        from_wasm.iter().filter(|v| v.injected).count() <= 1,
                        "{from_wasm:?}"
                    );
                    compared += 1;
                }
            }
        }
    }
    assert_eq!(compared, 144);
}
