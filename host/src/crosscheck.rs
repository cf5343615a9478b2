//! `revinject crosscheck`: every fixture case of `test-data/` through Kubewarden's real
//! `kwctl run` and through `revinject`'s own host, which must answer the same.
//!
//! Same answer means: `allowed`, the patched object (each patch applied to the request's
//! object; patch bytes may differ), the warnings, the status message and code, and the audit
//! annotations. A case whose settings the policy refuses must be refused by both (kwctl exits
//! non-zero naming the message). kwctl's answer must also meet the case's expectation, exactly
//! as `revinject replay` checks revinject's.
//!
//! kwctl runs the annotated policy (`kwctl annotate -m policy-metadata.yml`) with
//! `--allow-context-aware` and the case's session through
//! `--replay-host-capabilities-interactions`; a case without a session gets an empty one, so
//! no lookup can reach a real cluster (both hosts then fail the lookup).

use anyhow::{anyhow, Context as _};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::engines::{self, Located, KWCTL};
use crate::input;
use crate::patch::AdmissionResponse;
use crate::replay::{self, Case};
use crate::runtime::{PolicyRuntime, RuntimeOptions};
use crate::session::Session;

/// Arguments of `revinject crosscheck`.
#[derive(clap::Args, Debug, Clone)]
pub struct CrosscheckArgs {
    /// Directory searched recursively for `case.yaml` manifests.
    #[arg(default_value = "test-data")]
    pub dir: PathBuf,
    /// The policy module.
    #[arg(long, default_value = "policy.wasm")]
    pub policy: PathBuf,
    /// Kubewarden metadata to annotate the module with.
    #[arg(long, default_value = "policy-metadata.yml")]
    pub metadata: PathBuf,
    /// kwctl to run (default: $KWCTL, PATH, ../shared/kubewarden/bin/kwctl).
    #[arg(long)]
    pub kwctl: Option<PathBuf>,
    /// Where the annotated module and empty sessions go.
    #[arg(long, default_value = "target/kwctl")]
    pub work_dir: PathBuf,
    /// kwctl processes run at once.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub jobs: u32,
    /// Print both answers of every case.
    #[arg(long)]
    pub verbose: bool,
}

/// What an engine answered for a case.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineAnswer {
    /// An AdmissionResponse.
    Response(AdmissionResponse),
    /// The settings were refused (the engine's message).
    SettingsRefused(String),
}

/// revinject's answer, as `revinject run` gives it: settings validated first, then the request.
pub fn revinject_answer(
    runtime: &PolicyRuntime,
    request: &Value,
    settings: &Value,
    session: &Session,
) -> anyhow::Result<EngineAnswer> {
    let (valid, message) = runtime.validate_settings(settings)?;
    if !valid {
        return Ok(EngineAnswer::SettingsRefused(message.unwrap_or_default()));
    }
    Ok(EngineAnswer::Response(
        runtime.admission_response(request, settings, session)?,
    ))
}

/// The inputs of a case, resolved.
struct Inputs {
    request_path: PathBuf,
    settings_path: Option<PathBuf>,
    session_path: Option<PathBuf>,
}

fn inputs(case: &Case) -> Inputs {
    let spec = &case.spec;
    Inputs {
        request_path: case
            .dir
            .join(spec.request.as_deref().unwrap_or(Path::new("request.json"))),
        settings_path: spec.settings.as_ref().map(|p| case.dir.join(p)),
        session_path: spec.session.as_ref().map(|p| case.dir.join(p)),
    }
}

/// `kwctl run` on one case; `empty_session` stands in when the case has none.
fn kwctl_answer(
    kwctl: &Path,
    policy: &Path,
    inputs: &Inputs,
    empty_session: &Path,
) -> anyhow::Result<EngineAnswer> {
    let mut command = Command::new(kwctl);
    command
        .env("RUST_BACKTRACE", "0")
        .arg("run")
        .arg("--allow-context-aware")
        .arg("--request-path")
        .arg(&inputs.request_path)
        .arg("--replay-host-capabilities-interactions")
        .arg(inputs.session_path.as_deref().unwrap_or(empty_session));
    if let Some(settings) = &inputs.settings_path {
        command.arg("--settings-path").arg(settings);
    }
    command.arg(policy);
    let output = command
        .output()
        .with_context(|| format!("cannot run {}", kwctl.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        // kwctl refuses invalid settings before evaluating anything.
        return Ok(EngineAnswer::SettingsRefused(stderr.trim().to_string()));
    }
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or_else(|| anyhow!("kwctl printed no JSON answer; stderr: {}", stderr.trim()))?;
    let response: AdmissionResponse = serde_json::from_str(line)
        .with_context(|| format!("kwctl's answer is not an AdmissionResponse: {line}"))?;
    Ok(EngineAnswer::Response(response))
}

/// Differences between `ours` (revinject) and `theirs` (a Kubewarden engine) for a request
/// whose object is `object`; empty when they answer the same.
pub fn compare(object: &Value, ours: &EngineAnswer, theirs: &EngineAnswer) -> Vec<String> {
    let mut problems = Vec::new();
    match (ours, theirs) {
        (EngineAnswer::Response(a), EngineAnswer::Response(b)) => {
            if a.allowed != b.allowed {
                problems.push(format!(
                    "allowed: revinject {}, kwctl {}",
                    a.allowed, b.allowed
                ));
            }
            let message = |r: &AdmissionResponse| r.status.as_ref().and_then(|s| s.message.clone());
            let code = |r: &AdmissionResponse| r.status.as_ref().and_then(|s| s.code);
            if message(a) != message(b) {
                problems.push(format!(
                    "message: revinject {:?}, kwctl {:?}",
                    message(a),
                    message(b)
                ));
            }
            if code(a) != code(b) {
                problems.push(format!(
                    "code: revinject {:?}, kwctl {:?}",
                    code(a),
                    code(b)
                ));
            }
            let warnings = |r: &AdmissionResponse| r.warnings.clone().unwrap_or_default();
            if warnings(a) != warnings(b) {
                problems.push(format!(
                    "warnings: revinject {:?}, kwctl {:?}",
                    warnings(a),
                    warnings(b)
                ));
            }
            let annotations =
                |r: &AdmissionResponse| r.audit_annotations.clone().unwrap_or_default();
            if annotations(a) != annotations(b) {
                problems.push(format!(
                    "audit annotations: revinject {:?}, kwctl {:?}",
                    annotations(a),
                    annotations(b)
                ));
            }
            if a.patch.is_some() != b.patch.is_some() {
                problems.push(format!(
                    "patch: revinject {}, kwctl {}",
                    presence(a.patch.is_some()),
                    presence(b.patch.is_some())
                ));
            }
            match (a.patched_object(object), b.patched_object(object)) {
                (Ok(x), Ok(y)) if x == y => {}
                (Ok(x), Ok(y)) => problems.push(format!(
                    "the patched objects differ: {}",
                    first_difference(&x, &y, String::new()).unwrap_or_else(|| "(somewhere)".into())
                )),
                (Err(e), _) => problems.push(format!("revinject's patch: {e}")),
                (_, Err(e)) => problems.push(format!("kwctl's patch: {e}")),
            }
        }
        (EngineAnswer::SettingsRefused(a), EngineAnswer::SettingsRefused(b)) => {
            if !b.contains(a.as_str()) {
                problems.push(format!(
                    "both refuse the settings, but kwctl's error {b:?} lacks revinject's message {a:?}"
                ));
            }
        }
        (EngineAnswer::SettingsRefused(a), EngineAnswer::Response(_)) => {
            problems.push(format!(
                "revinject refuses the settings ({a}), kwctl accepts them"
            ));
        }
        (EngineAnswer::Response(_), EngineAnswer::SettingsRefused(b)) => {
            problems.push(format!("kwctl failed ({b}), revinject answered"));
        }
    }
    problems
}

fn presence(present: bool) -> &'static str {
    if present {
        "present"
    } else {
        "absent"
    }
}

/// The JSON pointer of the first place `a` and `b` differ, with both values.
pub fn first_difference(a: &Value, b: &Value, at: String) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for key in x.keys().chain(y.keys()) {
                let path = format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
                match (x.get(key), y.get(key)) {
                    (Some(u), Some(v)) => {
                        if let Some(d) = first_difference(u, v, path) {
                            return Some(d);
                        }
                    }
                    (u, v) => return Some(format!("{path}: {u:?} vs {v:?}")),
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (u, v))| first_difference(u, v, format!("{at}/{i}"))),
        _ if a == b => None,
        _ => Some(format!("{at}: {a} vs {b}")),
    }
}

/// kwctl's answer checked against the case's expectation (the replay checks).
fn check_expectation(case: &Case, request: &Value, answer: &EngineAnswer) -> Vec<String> {
    let expect = case.spec.expect.clone().unwrap_or_default();
    match answer {
        EngineAnswer::Response(response) => {
            if expect.settings_valid == Some(false) {
                return vec!["kwctl accepted settings the case expects refused".into()];
            }
            replay::check(&expect, request, response)
                .into_iter()
                .map(|p| format!("kwctl: {p}"))
                .collect()
        }
        EngineAnswer::SettingsRefused(error) => {
            let mut problems = Vec::new();
            if expect.settings_valid != Some(false) {
                problems.push(format!("kwctl: {error}"));
            }
            if let Some(want) = &expect.message {
                if !error.contains(want.as_str()) {
                    problems.push(format!("kwctl's error {error:?} lacks {want:?}"));
                }
            }
            problems
        }
    }
}

fn one_line(answer: &EngineAnswer) -> String {
    match answer {
        EngineAnswer::Response(r) => {
            let mut r = r.clone();
            r.patch = r.patch.map(|p| format!("<{} bytes>", p.len()));
            serde_json::to_string(&r).unwrap_or_default()
        }
        EngineAnswer::SettingsRefused(m) => format!("settings refused: {m}"),
    }
}

/// `revinject crosscheck`.
pub fn run(args: &CrosscheckArgs, options: &RuntimeOptions) -> anyhow::Result<ExitCode> {
    let kwctl = match KWCTL.locate(args.kwctl.as_deref())? {
        Located::Found(path, _) => path,
        Located::Missing(why) => {
            println!("crosscheck skipped: {why}");
            return Ok(ExitCode::SUCCESS);
        }
    };
    let cases = replay::discover(&args.dir)?;
    if cases.is_empty() {
        return Err(anyhow!("no case.yaml under {}", args.dir.display()));
    }
    let annotated = args.work_dir.join("annotated-policy.wasm");
    engines::annotate(&kwctl, &args.policy, &args.metadata, &annotated)?;
    let empty_session = args.work_dir.join("empty-session.yml");
    std::fs::write(&empty_session, "--- []\n")
        .with_context(|| format!("cannot write {}", empty_session.display()))?;

    // revinject's answers first (in process, one runtime), then kwctl's in parallel.
    let runtime = PolicyRuntime::load(&args.policy, options)?;
    let mut ours = Vec::new();
    for case in &cases {
        let inputs = inputs(case);
        let answer = (|| {
            let request = input::read_request(&inputs.request_path)?;
            let settings = input::read_settings(inputs.settings_path.as_deref())?;
            let session = match &inputs.session_path {
                Some(p) => Session::load(p)?,
                None => Session::parse("--- []\n")?,
            };
            let answer = revinject_answer(&runtime, &request, &settings, &session)?;
            anyhow::Ok((request, answer))
        })()
        .with_context(|| format!("case {}", case.name));
        ours.push(answer);
    }

    let theirs: Vec<Mutex<Option<anyhow::Result<EngineAnswer>>>> =
        cases.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..args.jobs {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(case) = cases.get(i) else { break };
                let answer = kwctl_answer(&kwctl, &annotated, &inputs(case), &empty_session);
                *theirs[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(answer);
            });
        }
    });

    let (mut passed, mut failed) = (0, 0);
    for ((case, ours), theirs) in cases.iter().zip(ours).zip(theirs) {
        let theirs = theirs
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .unwrap_or_else(|| Err(anyhow!("not run")));
        let (problems, detail) = match (ours, theirs) {
            (Err(e), _) => (vec![format!("revinject: {e:#}")], String::new()),
            (_, Err(e)) => (vec![format!("kwctl: {e:#}")], String::new()),
            (Ok((request, ours)), Ok(theirs)) => {
                let object = request.get("object").cloned().unwrap_or(Value::Null);
                let mut problems = compare(&object, &ours, &theirs);
                if case.spec.pending.is_none() {
                    problems.extend(check_expectation(case, &request, &theirs));
                }
                let detail = format!(
                    "\n     revinject: {}\n     kwctl:     {}",
                    one_line(&ours),
                    one_line(&theirs)
                );
                (problems, detail)
            }
        };
        let detail = if args.verbose || !problems.is_empty() {
            detail
        } else {
            String::new()
        };
        if problems.is_empty() {
            passed += 1;
            println!("same {}{detail}", case.name);
        } else {
            failed += 1;
            println!("DIFF {}: {}{detail}", case.name, problems.join("; "));
        }
    }
    println!(
        "{passed} cases answered the same by kwctl ({}) and revinject, {failed} differ",
        kwctl.display()
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::{encode_patch, Status};
    use serde_json::json;

    fn response(patch: Option<String>, warnings: Option<Vec<String>>) -> AdmissionResponse {
        AdmissionResponse {
            uid: "u".into(),
            allowed: true,
            patch_type: patch.as_ref().map(|_| "JSONPatch".into()),
            patch,
            status: None,
            audit_annotations: None,
            warnings,
        }
    }

    #[test]
    fn patches_are_compared_by_their_result_not_their_bytes() {
        let object = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"containers": []}});
        let mut mutated = object.clone();
        mutated["metadata"]["labels"]["b"] = json!("2");
        let diff = encode_patch(&object, &mutated).unwrap();
        // The same result written as one replace of the whole map.
        let replace =
            json!([{"op": "replace", "path": "/metadata/labels", "value": {"a": "1", "b": "2"}}]);
        use base64::Engine as _;
        let other = base64::engine::general_purpose::STANDARD.encode(replace.to_string());
        let a = EngineAnswer::Response(response(diff, None));
        let b = EngineAnswer::Response(response(Some(other), None));
        assert_eq!(compare(&object, &a, &b), Vec::<String>::new());

        let mut wrong = object.clone();
        wrong["metadata"]["labels"]["b"] = json!("3");
        let c = EngineAnswer::Response(response(encode_patch(&object, &wrong).unwrap(), None));
        let problems = compare(&object, &a, &c);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("/metadata/labels/b"), "{problems:?}");

        let none = EngineAnswer::Response(response(None, Some(vec!["w".into()])));
        let problems = compare(&object, &a, &none);
        // warnings, patch presence, patched object
        assert_eq!(problems.len(), 3, "{problems:?}");
    }

    #[test]
    fn settings_refusals_must_agree() {
        let refused = EngineAnswer::SettingsRefused("unknown field `revison`".into());
        let kwctl = EngineAnswer::SettingsRefused(
            "Error: Provided settings are not valid: unknown field `revison`".into(),
        );
        assert!(compare(&Value::Null, &refused, &kwctl).is_empty());
        let other = EngineAnswer::SettingsRefused("Error: cannot read the module".into());
        assert_eq!(compare(&Value::Null, &refused, &other).len(), 1);
        let mut rejected = response(None, None);
        rejected.allowed = false;
        rejected.status = Some(Status {
            message: Some("no".into()),
            code: Some(400),
        });
        let answered = EngineAnswer::Response(rejected);
        assert_eq!(compare(&Value::Null, &refused, &answered).len(), 1);
        assert_eq!(compare(&Value::Null, &answered, &refused).len(), 1);
    }
}
