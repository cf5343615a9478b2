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

// ---------------------------------------------------------------------------------------------
// The real policy: failing host callbacks and oversized input.

fn policy() -> PolicyRuntime {
    let wasm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policy.wasm");
    assert!(wasm.exists(), "run `make policy.wasm` first");
    let options = RuntimeOptions {
        guest_logs: false,
        cache_dir: None,
        ..RuntimeOptions::default()
    };
    PolicyRuntime::load(&wasm, &options).unwrap()
}

/// Answers every Namespace lookup the same way, as bytes.
struct Answering(Result<Vec<u8>, String>);

impl revinject::HostCapabilities for Answering {
    fn get_resource(&self, _request: &serde_json::Value) -> Result<serde_json::Value, String> {
        unreachable!("get_resource_bytes is overridden")
    }

    fn get_resource_bytes(&self, _request: &serde_json::Value) -> Result<Vec<u8>, String> {
        self.0.clone()
    }
}

fn labelled() -> Answering {
    Answering(Ok(
        br#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop","labels":{"istio-injection":"enabled"}}}"#.to_vec(),
    ))
}

fn pod_request(pod: serde_json::Value) -> serde_json::Value {
    json!({"uid": "big", "operation": "CREATE", "namespace": "shop",
           "kind": {"group": "", "version": "v1", "kind": "Pod"}, "object": pod})
}

fn app_pod(container: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "big", "namespace": "shop"},
           "spec": {"containers": [container]}})
}

/// A namespace lookup that fails, or answers something that is not a Namespace, follows
/// `namespaceLookupFailure`: rejected (fail closed) or admitted unchanged with a warning.
#[test]
fn failing_namespace_callbacks_follow_namespace_lookup_failure() {
    let runtime = policy();
    let request = pod_request(app_pod(json!({"name": "app", "image": "a"})));
    let answers = [
        (
            "error",
            Answering(Err("namespaces \"shop\" is forbidden".into())),
            &[
                "error invoking host capability kubernetes.get_resource",
                "is forbidden",
            ][..],
        ),
        (
            "not JSON",
            Answering(Ok(b"{\"metadata\": tru".to_vec())),
            &["error deserializing get resource response: EOF while parsing a value at line 1 column 16"],
        ),
        (
            "not UTF-8",
            Answering(Ok(b"{\"metadata\": {\"name\": \"sh\xffop\"}}".to_vec())),
            &["error deserializing get resource response: invalid UTF-8 at line 1 column 26"],
        ),
        (
            "a JSON string",
            Answering(Ok(b"\"shop\"".to_vec())),
            &["malformed"],
        ),
        (
            "labels of the wrong type",
            Answering(Ok(
                br#"{"metadata":{"labels":{"istio-injection":true}}}"#.to_vec()
            )),
            &["metadata.labels is not a map of strings"],
        ),
    ];
    for (what, host, expected) in &answers {
        let reject = json!({"defaultRevision": true, "namespaceLookupFailure": "reject"});
        let r = runtime.admission_response(&request, &reject, host).unwrap();
        let status = r.status.clone().unwrap();
        let message = status.message.unwrap();
        assert!(!r.allowed && status.code == Some(500), "{what}: {r:?}");
        assert!(
            message.contains("cannot read Namespace \"shop\""),
            "{what}: {message}"
        );
        for expected in *expected {
            assert!(message.contains(expected), "{what}: {message}");
        }
        assert!(
            !message.starts_with("internal server error"),
            "{what}: {message}"
        );

        let skip = json!({"defaultRevision": true, "namespaceLookupFailure": "skip"});
        let r = runtime.admission_response(&request, &skip, host).unwrap();
        assert!(r.allowed && r.patch.is_none(), "{what}: {r:?}");
        let warnings = r.warnings.unwrap_or_default();
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("admitted without injection")),
            "{what}: {warnings:?}"
        );
    }
    // The instance survived all of it: a good answer injects.
    let r = runtime
        .admission_response(&request, &json!({"defaultRevision": true}), &labelled())
        .unwrap();
    assert!(r.allowed && r.patch.is_some(), "{r:?}");
}

/// Kubernetes caps a request body at 3 MiB; the policy handles more than that within the
/// default limits, and a pod beyond the memory cap is a clear 500, not a crash.
#[test]
fn oversized_pods_are_handled_within_the_limits() {
    let runtime = policy();
    let settings = json!({"defaultRevision": true});
    let injects = |pod: serde_json::Value, what: &str| {
        let started = Instant::now();
        let r = runtime
            .admission_response(&pod_request(pod.clone()), &settings, &labelled())
            .unwrap();
        assert!(r.allowed, "{what}: {:?}", r.status);
        let patched = r.patched_object(&pod).unwrap();
        assert!(patched.to_string().contains("istio-proxy"), "{what}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{what}: {:?}",
            started.elapsed()
        );
        patched
    };
    // A 4 MiB annotation.
    let mut pod = app_pod(json!({"name": "app", "image": "a"}));
    pod["metadata"]["annotations"] = json!({"example.com/blob": "x".repeat(4 << 20)});
    let patched = injects(pod, "4 MiB annotation");
    assert_eq!(
        patched["metadata"]["annotations"]["example.com/blob"]
            .as_str()
            .map(str::len),
        Some(4 << 20)
    );
    // 10,000 env vars.
    let env: Vec<_> = (0..10_000)
        .map(|i| json!({"name": format!("E{i}"), "value": "v"}))
        .collect();
    let patched = injects(
        app_pod(json!({"name": "app", "image": "a", "env": env})),
        "10,000 env vars",
    );
    assert_eq!(
        patched["spec"]["containers"][0]["env"]
            .as_array()
            .map(Vec::len),
        Some(10_000)
    );
    // 2,000 containers with probes.
    let containers: Vec<_> = (0..2000)
        .map(|i| {
            json!({"name": format!("c{i}"), "image": "a", "ports": [{"containerPort": 8080}],
                        "readinessProbe": {"httpGet": {"path": "/r", "port": 8080}}})
        })
        .collect();
    let mut pod = app_pod(json!({}));
    pod["spec"]["containers"] = json!(containers);
    injects(pod, "2,000 containers");

    // Past the memory cap: a 500 that says so, and the next request is served.
    let small = RuntimeOptions {
        max_memory: Some(48 << 20),
        ..RuntimeOptions {
            guest_logs: false,
            cache_dir: None,
            ..RuntimeOptions::default()
        }
    };
    let capped = PolicyRuntime::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../policy.wasm"),
        &small,
    )
    .unwrap();
    let mut pod = app_pod(json!({"name": "app", "image": "a"}));
    pod["metadata"]["annotations"] = json!({"example.com/blob": "x".repeat(24 << 20)});
    let r = capped
        .admission_response(&pod_request(pod), &settings, &labelled())
        .unwrap();
    let status = r.status.unwrap();
    assert!(!r.allowed && status.code == Some(500));
    assert!(status
        .message
        .unwrap()
        .contains("exhausted its memory cap of 48 MiB"));
    let ok = capped
        .admission_response(
            &pod_request(app_pod(json!({"name": "app", "image": "a"}))),
            &settings,
            &labelled(),
        )
        .unwrap();
    assert!(ok.allowed && ok.patch.is_some());
}

/// Nesting deeper than serde_json's recursion limit (128) is refused while parsing, with the
/// reason, before any recursion can exhaust the guest's stack.
#[test]
fn deeply_nested_json_is_rejected_with_the_reason() {
    let runtime = policy();
    for depth in [200, 100_000] {
        let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let payload = format!(
            r#"{{"request":{{"uid":"d","operation":"CREATE","object":{{"spec":{deep}}}}},"settings":{{}}}}"#
        );
        let bytes = runtime
            .call("validate", payload.as_bytes(), &labelled())
            .unwrap();
        let answer: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(answer["accepted"], false, "{answer}");
        assert_eq!(answer["code"], 400);
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains("recursion limit exceeded"), "{message}");
    }
}

/// The deepest JSON the parser accepts (127 levels under the payload) runs through the
/// policy's own recursion (the Helm merge of `values`, the writer) within the guest's
/// 512 KiB stack: a pod under settings nested that deep is injected.
#[test]
fn settings_nested_to_the_parse_limit_are_merged() {
    let runtime = policy();
    let depth = 124; // payload, settings, values, then the chain: 127 levels
    let mut nested = json!("leaf");
    for _ in 0..depth {
        nested = json!({"k": nested});
    }
    let settings = json!({"values": {"deep": nested}});
    let r = runtime
        .admission_response(
            &pod_request(app_pod(json!({"name": "app", "image": "a"}))),
            &settings,
            &labelled(),
        )
        .unwrap();
    assert!(r.allowed && r.patch.is_some(), "{r:?}");
    let mut deeper = json!({"values": {"deep": nested}});
    for _ in 0..2 {
        deeper = json!({"values": {"deep": deeper}});
    }
    let r = runtime
        .admission_response(
            &pod_request(app_pod(json!({"name": "app", "image": "a"}))),
            &deeper,
            &labelled(),
        )
        .unwrap();
    let message = r.status.and_then(|s| s.message).unwrap_or_default();
    assert!(
        !r.allowed && message.contains("recursion limit exceeded"),
        "{message}"
    );
}
