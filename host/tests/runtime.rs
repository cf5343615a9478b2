//! End-to-end tests of the host against the real `policy.wasm` (built by `make` before the
//! tests run) and against tiny hand-written waPC guests for the failure paths.

use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use revinject::input::read_request;
use revinject::runtime::{PolicyRuntime, RuntimeOptions};
use revinject::session::Session;

mod common;
use common::repo;

fn policy() -> PolicyRuntime {
    let wasm = common::policy_wasm();
    PolicyRuntime::load(&wasm, &RuntimeOptions::default()).unwrap()
}

fn fixture(path: &str) -> PathBuf {
    repo().join("test-data").join(path)
}

fn seed_settings() -> Value {
    revinject::input::read_settings(Some(&fixture("seed-asm-1233-2/settings.yaml"))).unwrap()
}

#[test]
fn injection_comes_back_as_a_json_patch_that_rebuilds_the_mutated_pod() {
    let runtime = policy();
    let request = read_request(&fixture("seed-asm-1233-2/request.json")).unwrap();
    let session = Session::load(&fixture("seed-asm-1233-2/session.yml")).unwrap();
    let response = runtime
        .admission_response(&request, &seed_settings(), &session)
        .unwrap();
    assert_eq!(response.uid, request["uid"].as_str().unwrap());
    assert!(response.allowed, "{response:?}");
    assert_eq!(response.patch_type.as_deref(), Some("JSONPatch"));
    let ops = serde_json::to_value(response.patch_operations().unwrap().unwrap()).unwrap();
    assert!(!ops.as_array().unwrap().is_empty());
    // Applying the patch to the original object gives an injected pod that kept its own fields.
    let original = &request["object"];
    let patched = response.patched_object(original).unwrap();
    assert_eq!(
        patched["metadata"]["annotations"]["istio.io/rev"],
        "asm-1233-2"
    );
    assert_eq!(
        patched["spec"]["containers"][0],
        original["spec"]["containers"][0]
    );
    assert_eq!(
        patched["metadata"]["ownerReferences"],
        original["metadata"]["ownerReferences"]
    );
    let names: Vec<&str> = ["containers", "initContainers"]
        .iter()
        .flat_map(|k| patched["spec"][k].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(names.contains(&"istio-proxy"), "{names:?}");
    assert_eq!(session.remaining(), 0);

    // The JSON form is the same response, with kwctl's keys.
    session.rewind();
    let value = runtime
        .validate(&request, &seed_settings(), &session)
        .unwrap();
    assert_eq!(value["patch"], json!(response.patch));
    assert!(value.get("auditAnnotations").is_some() && value.get("warnings").is_some());
}

#[test]
fn session_mismatch_and_exhaustion_reach_the_policy_as_kwctl_errors() {
    let runtime = policy();
    let request = read_request(&fixture("seed-asm-1233-2/request.json")).unwrap();
    // A session recorded for another namespace: the n-th call must match the n-th exchange.
    let other = Session::load(&fixture("namespace-lookup-fails/session.yml")).unwrap();
    let response = runtime
        .admission_response(&request, &seed_settings(), &other)
        .unwrap();
    assert!(!response.allowed);
    let message = response.status.unwrap().message.unwrap();
    assert!(
        message.contains("Replay error: unexpected request")
            && message.contains("name: \"payments\"")
            && message.contains("name: \"shop\""),
        "{message}"
    );
    // No exchanges left (or none recorded): kwctl's exhaustion error.
    let empty = Session::parse("[]").unwrap();
    let response = runtime
        .admission_response(&request, &seed_settings(), &empty)
        .unwrap();
    let message = response.status.unwrap().message.unwrap();
    assert!(
        message.contains("the list of recorded responses is empty or has been exhausted"),
        "{message}"
    );
    // The instance is still usable after those rejections.
    let session = Session::load(&fixture("seed-asm-1233-2/session.yml")).unwrap();
    let response = runtime
        .admission_response(&request, &seed_settings(), &session)
        .unwrap();
    assert!(response.allowed && response.patch.is_some());
    // Settings go through the guest's validate_settings.
    assert_eq!(
        runtime.validate_settings(&seed_settings()).unwrap(),
        (true, None)
    );
    let (valid, message) = runtime.validate_settings(&json!({"revison": "x"})).unwrap();
    assert!(!valid && message.unwrap().contains("revison"));
}

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_revinject"))
        .current_dir(repo())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn run_prints_one_line_for_an_admission_review_or_a_bare_request() {
    let review = "test-data/malformed/update.json";
    let document: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join(review)).unwrap()).unwrap();
    let bare = std::env::temp_dir().join(format!("revinject-bare-{}.json", std::process::id()));
    std::fs::write(&bare, document["request"].to_string()).unwrap();

    let (ok, from_review, stderr) = cli(&["run", "--request-path", review, "policy.wasm"]);
    assert!(ok, "{stderr}");
    let (ok, from_bare, stderr) = cli(&["run", "-r", bare.to_str().unwrap(), "policy.wasm"]);
    assert!(ok, "{stderr}");
    std::fs::remove_file(&bare).unwrap();
    assert_eq!(from_review, from_bare);
    assert_eq!(from_review.lines().count(), 1, "{from_review}");
    let response: Value = serde_json::from_str(&from_review).unwrap();
    assert_eq!(response["uid"], document["request"]["uid"]);
    assert_eq!(response["allowed"], true);

    // Invalid settings: kwctl's refusal, non-zero exit.
    let (ok, stdout, stderr) = cli(&[
        "run",
        "-r",
        review,
        "--settings-path",
        "test-data/malformed/settings-typo.yaml",
        "policy.wasm",
    ]);
    assert!(!ok);
    assert!(stdout.contains("\"valid\":false"), "{stdout}");
    // The policy answers valid:false itself, naming the unknown key (not a guest error).
    assert!(stdout.contains("unknown field `revison`"), "{stdout}");
    assert!(
        stderr.contains("Provided settings are not valid"),
        "{stderr}"
    );
}

/// A waPC guest that answers `protocol_version` and then, for `validate`, loops forever when
/// the request uid is "l", traps when it is "t", and accepts otherwise.
const TOY_GUEST: &str = r#"
(module
  (import "wapc" "__guest_request" (func $request (param i32 i32)))
  (import "wapc" "__guest_response" (func $respond (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 2048) "\"v1\"")
  (data (i32.const 2064) "{\"accepted\":true}")
  (func (export "__guest_call") (param $op_len i32) (param $msg_len i32) (result i32)
    (call $request (i32.const 0) (i32.const 1024))
    (if (i32.eq (local.get $op_len) (i32.const 16))
      (then (call $respond (i32.const 2048) (i32.const 4)) (return (i32.const 1))))
    ;; the payload is {"request":{"uid":"X"},"settings":{}}: X is at offset 19
    (if (i32.eq (i32.load8_u (i32.const 1043)) (i32.const 108))
      (then (loop $forever (br $forever))))
    (if (i32.eq (i32.load8_u (i32.const 1043)) (i32.const 116))
      (then unreachable))
    (call $respond (i32.const 2064) (i32.const 17))
    (i32.const 1)))
"#;

#[test]
fn timeouts_and_traps_become_500s_and_the_next_call_gets_a_fresh_instance() {
    let options = RuntimeOptions {
        deadline: Duration::from_millis(200),
        cache_dir: None,
        guest_logs: false,
        ..RuntimeOptions::default()
    };
    let runtime = PolicyRuntime::from_bytes(TOY_GUEST.as_bytes(), &options).unwrap();
    let none = Session::default();
    let settings = json!({});
    let run = |uid: &str| {
        runtime
            .admission_response(&json!({"uid": uid}), &settings, &none)
            .unwrap()
    };
    assert!(run("o").allowed);

    let started = Instant::now();
    let timed_out = run("l");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let status = timed_out.status.clone().unwrap();
    assert!(!timed_out.allowed && status.code == Some(500));
    let message = status.message.unwrap();
    assert!(
        message.starts_with("internal server error: the policy timed out"),
        "{message}"
    );
    assert!(run("o").allowed, "a fresh instance after the timeout");

    let trapped = run("t");
    let message = trapped.status.unwrap().message.unwrap();
    assert!(message.contains("the policy trapped"), "{message}");
    assert!(run("o").allowed, "a fresh instance after the trap");
}

#[test]
fn modules_that_are_not_policies_are_refused_at_load() {
    let options = RuntimeOptions {
        cache_dir: None,
        ..RuntimeOptions::default()
    };
    let err = PolicyRuntime::from_bytes(b"not wasm", &options)
        .err()
        .unwrap();
    assert!(
        format!("{err:#}").contains("not a valid WebAssembly module"),
        "{err:#}"
    );
    let wasi_only = r#"(module (import "env" "exit" (func (param i32))) (func (export "__guest_call") (param i32 i32) (result i32) (i32.const 0)))"#;
    let err = PolicyRuntime::from_bytes(wasi_only.as_bytes(), &options)
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("cannot link"), "{err:#}");
}

#[test]
fn runtimes_sharing_an_engine_keep_their_full_deadline() {
    use revinject::runtime::{compile, new_engine_with};
    let options = RuntimeOptions {
        deadline: Duration::from_millis(400),
        cache_dir: None,
        ..RuntimeOptions::default()
    };
    let engine = new_engine_with(&options, |_| {}).unwrap();
    let module = compile(&engine, TOY_GUEST.as_bytes()).unwrap();
    let runtimes: Vec<PolicyRuntime> = (0..4)
        .map(|_| PolicyRuntime::from_module(&engine, module.clone(), &options).unwrap())
        .collect();
    let started = Instant::now();
    let response = runtimes[0]
        .admission_response(&json!({"uid": "l"}), &json!({}), &Session::default())
        .unwrap();
    let elapsed = started.elapsed();
    assert!(!response.allowed);
    // One tick per engine, not one per runtime: four runtimes would otherwise cut it to ~100 ms.
    assert!(elapsed >= Duration::from_millis(350), "{elapsed:?}");
    drop(runtimes);
}
