//! The runtime's limits and fault handling, proven with the hand-written waPC guests in
//! `test-data/wat/`: each one serves normal calls (answering how many calls its instance has
//! served) and misbehaves when the request uid starts with "f". Every fault must become
//! `allowed: false`, code 500, with a message saying which fault, and the next call must run
//! on a fresh instance.

use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use revinject::patch::AdmissionResponse;
use revinject::runtime::{PolicyRuntime, RuntimeOptions};
use revinject::Session;

fn wat(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../test-data/wat")
        .join(format!("{name}.wat"))
}

fn options() -> RuntimeOptions {
    RuntimeOptions {
        deadline: Duration::from_millis(300),
        cache_dir: None,
        guest_logs: false,
        max_memory: Some(16 << 20),
    }
}

/// wasmtime compiles the WAT text directly (its `wat` feature).
fn load(name: &str, options: &RuntimeOptions) -> PolicyRuntime {
    PolicyRuntime::load(&wat(name), options).unwrap()
}

fn call(runtime: &PolicyRuntime, uid: &str) -> AdmissionResponse {
    runtime
        .admission_response(&json!({ "uid": uid }), &json!({}), &Session::default())
        .unwrap()
}

/// The message of a normal answer: calls served by the instance so far.
fn served(response: &AdmissionResponse) -> String {
    assert!(response.allowed, "{response:?}");
    response.status.clone().unwrap().message.unwrap()
}

/// Two normal calls share an instance, the fault is a 500 whose message contains `expected`,
/// and the call after it runs on a fresh instance.
fn assert_fault_recycles(name: &str, options: &RuntimeOptions, expected: &str) -> String {
    let runtime = load(name, options);
    assert_eq!(served(&call(&runtime, "a")), "1");
    assert_eq!(served(&call(&runtime, "b")), "2", "the instance is reused");
    let fault = call(&runtime, "fault");
    assert!(!fault.allowed, "{fault:?}");
    assert!(fault.patch.is_none());
    let status = fault.status.unwrap();
    assert_eq!(status.code, Some(500));
    let message = status.message.unwrap();
    assert!(message.contains(expected), "{name}: {message}");
    assert_eq!(fault.uid, "fault");
    assert_eq!(
        served(&call(&runtime, "c")),
        "1",
        "{name}: a fresh instance after the fault"
    );
    message
}

#[test]
fn a_busy_loop_times_out_at_the_deadline() {
    let started = Instant::now();
    let message =
        assert_fault_recycles("busy-loop", &options(), "the policy timed out after 300ms");
    // Three instantiations and four calls, one of them interrupted at 300 ms.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(message.starts_with("internal server error:"), "{message}");
}

#[test]
fn the_deadline_is_settable() {
    let slow = RuntimeOptions {
        deadline: Duration::from_millis(900),
        ..options()
    };
    let runtime = load("busy-loop", &slow);
    let started = Instant::now();
    let message = call(&runtime, "f").status.unwrap().message.unwrap();
    let took = started.elapsed();
    assert!(message.contains("timed out after 900ms"), "{message}");
    assert!(
        took >= Duration::from_millis(850) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[test]
fn a_memory_bomb_stops_at_the_cap() {
    let message = assert_fault_recycles(
        "memory-bomb",
        &options(),
        "the policy exhausted its memory cap of 16 MiB",
    );
    // The wasm backtrace names the guest function that was refused memory.
    assert!(message.contains("!fault"), "{message}");
}

#[test]
fn the_memory_cap_is_settable_and_a_module_over_it_does_not_load() {
    let roomy = RuntimeOptions {
        max_memory: Some(64 << 20),
        ..options()
    };
    assert_fault_recycles("memory-bomb", &roomy, "memory cap of 64 MiB");
    // A module whose initial memory is already over the cap cannot be instantiated.
    let big = r#"(module (memory (export "memory") 512)
        (func (export "__guest_call") (param i32 i32) (result i32) (i32.const 0)))"#;
    let err = PolicyRuntime::from_bytes(big.as_bytes(), &options())
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("over the cap"), "{err:#}");
    // Without a cap the same module loads (and then fails the protocol check).
    let uncapped = RuntimeOptions {
        max_memory: None,
        ..options()
    };
    let err = PolicyRuntime::from_bytes(big.as_bytes(), &uncapped)
        .err()
        .unwrap();
    assert!(!format!("{err:#}").contains("over the cap"), "{err:#}");
}

#[test]
fn a_trap_in_validate_is_reported_as_a_trap() {
    let message = assert_fault_recycles("trap", &options(), "the policy trapped");
    // wapc keeps the wasm backtrace (not the trap code): it names the trapping function.
    assert!(
        message.contains("wasm backtrace") && message.contains("!fault"),
        "{message}"
    );
}

#[test]
fn an_answer_that_is_not_json_is_a_500() {
    let message = assert_fault_recycles(
        "not-json",
        &options(),
        "the policy's answer is not a ValidationResponse",
    );
    assert!(message.contains("expected"), "{message}");
}

#[test]
fn an_answer_of_the_wrong_shape_is_a_500() {
    let message = assert_fault_recycles(
        "wrong-shape",
        &options(),
        "the policy's answer is not a ValidationResponse",
    );
    assert!(
        message.contains("accepted") || message.contains("bool"),
        "{message}"
    );
}

#[test]
fn a_guest_error_is_a_500_naming_it() {
    assert_fault_recycles(
        "guest-error",
        &options(),
        "the policy returned an error: Guest call failure: validate failed on purpose",
    );
}
