//! `revinject replay DIR`: every `case.yaml` under DIR (recursively) is a fixture case whose
//! request, settings and session files are the ones `kwctl run` takes; the manifest adds what
//! the answer must be. A manifest is one case, or `cases:` with several sharing the directory:
//!
//! ```yaml
//! description: a Deployment's pod in a namespace labelled istio.io/rev=asm-1233-2
//! request: request.json          # default; AdmissionReview or bare AdmissionRequest
//! settings: settings.yaml        # optional
//! session: session.yml           # optional kwctl host-capabilities session
//! pending: why it cannot pass yet # optional; reported apart, never counted as a failure
//! expect:
//!   allowed: true
//!   injected: true               # a patch is present
//!   code: 400                    # status.code
//!   message: substring           # of status.message
//!   warnings: [substring]        # each found in some warning; `[]` means no warnings
//!   decision: {inject: true}     # subset of the revision-injector/decision audit annotation
//!   patched: {/spec/containers/1/name: istio-proxy}  # JSON pointers into the patched object
//!   present: [/metadata/annotations]                  # pointers that must exist after patching
//!   absent: [/spec/initContainers]                    # pointers that must not exist
//!   preserved: [/spec/x-custom]  # pointers whose value the patch must not change
//!   settingsValid: false         # validate_settings must refuse; `message` applies to it
//! ```

use anyhow::{anyhow, Context as _};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::input;
use crate::patch::AdmissionResponse;
use crate::runtime::{PolicyRuntime, RuntimeOptions};
use crate::session::Session;

/// Audit annotation the policy writes with its selection decision (src/admission.rs).
pub const DECISION_KEY: &str = "revision-injector/decision";

/// A `case.yaml` manifest.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    #[serde(flatten)]
    case: CaseSpec,
    #[serde(default)]
    cases: Vec<NamedCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NamedCase {
    name: String,
    #[serde(flatten)]
    case: CaseSpec,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaseSpec {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub request: Option<PathBuf>,
    #[serde(default)]
    pub settings: Option<PathBuf>,
    #[serde(default)]
    pub session: Option<PathBuf>,
    #[serde(default)]
    pub pending: Option<String>,
    #[serde(default)]
    pub expect: Option<Expect>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Expect {
    pub allowed: Option<bool>,
    pub injected: Option<bool>,
    pub code: Option<u16>,
    pub message: Option<String>,
    pub warnings: Option<Vec<String>>,
    pub decision: Option<BTreeMap<String, Value>>,
    #[serde(default)]
    pub patched: BTreeMap<String, Value>,
    #[serde(default)]
    pub present: Vec<String>,
    #[serde(default)]
    pub absent: Vec<String>,
    #[serde(default)]
    pub preserved: Vec<String>,
    pub settings_valid: Option<bool>,
}

/// A case ready to run: paths resolved against its manifest's directory.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub dir: PathBuf,
    pub spec: CaseSpec,
}

impl Case {
    fn path(&self, p: &Option<PathBuf>) -> Option<PathBuf> {
        p.as_ref().map(|p| self.dir.join(p))
    }
}

/// Every case under `root`, in path order.
pub fn discover(root: &Path) -> anyhow::Result<Vec<Case>> {
    let mut manifests = Vec::new();
    collect_manifests(root, &mut manifests)?;
    manifests.sort();
    let mut cases = Vec::new();
    for manifest_path in manifests {
        let dir = manifest_path.parent().unwrap_or(root).to_path_buf();
        let base = dir
            .strip_prefix(root)
            .unwrap_or(&dir)
            .to_string_lossy()
            .into_owned();
        let base = if base.is_empty() {
            ".".to_string()
        } else {
            base
        };
        let text = std::fs::read_to_string(&manifest_path)
            .with_context(|| format!("cannot read {}", manifest_path.display()))?;
        let manifest: Manifest = serde_norway::from_str(&text)
            .with_context(|| format!("invalid case manifest {}", manifest_path.display()))?;
        if manifest.cases.is_empty() {
            cases.push(Case {
                name: base,
                dir,
                spec: manifest.case,
            });
        } else {
            for named in manifest.cases {
                cases.push(Case {
                    name: format!("{base}/{}", named.name),
                    dir: dir.clone(),
                    spec: merge(&manifest.case, named.case),
                });
            }
        }
    }
    Ok(cases)
}

/// A named case inherits the manifest's top-level fields it does not set.
fn merge(shared: &CaseSpec, own: CaseSpec) -> CaseSpec {
    CaseSpec {
        description: own.description.or_else(|| shared.description.clone()),
        request: own.request.or_else(|| shared.request.clone()),
        settings: own.settings.or_else(|| shared.settings.clone()),
        session: own.session.or_else(|| shared.session.clone()),
        pending: own.pending.or_else(|| shared.pending.clone()),
        expect: own.expect.or_else(|| shared.expect.clone()),
    }
}

fn collect_manifests(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            collect_manifests(&path, out)?;
        } else if path.file_name().is_some_and(|n| n == "case.yaml") {
            out.push(path);
        }
    }
    Ok(())
}

/// What running one case produced.
#[derive(Debug)]
pub struct Outcome {
    /// Expectation failures; empty means the case passed.
    pub problems: Vec<String>,
    /// One-line summary of the answer (for `--verbose`).
    pub summary: String,
}

/// Run one case with `runtime`.
pub fn run_case(runtime: &PolicyRuntime, case: &Case) -> anyhow::Result<Outcome> {
    let spec = &case.spec;
    let request_path = case
        .path(&spec.request)
        .unwrap_or_else(|| case.dir.join("request.json"));
    let request = input::read_request(&request_path)?;
    let settings = input::read_settings(case.path(&spec.settings).as_deref())?;
    let session = match case.path(&spec.session) {
        Some(p) => Session::load(&p)?,
        None => Session::default(),
    };
    let expect = spec.expect.clone().unwrap_or_default();

    let (valid, settings_message) = runtime.validate_settings(&settings)?;
    if expect.settings_valid == Some(false) || !valid {
        let mut problems = Vec::new();
        let message = settings_message.unwrap_or_default();
        match (expect.settings_valid, valid) {
            (Some(false), true) => problems.push("settings were accepted, expected refused".into()),
            (_, false) if expect.settings_valid != Some(false) => {
                problems.push(format!("settings refused: {message}"))
            }
            _ => {}
        }
        if let Some(want) = &expect.message {
            if !message.contains(want.as_str()) {
                problems.push(format!("settings message {message:?} lacks {want:?}"));
            }
        }
        let summary = format!("settings valid={valid} message={message:?}");
        return Ok(Outcome { problems, summary });
    }

    let response = runtime.admission_response(&request, &settings, &session)?;
    let problems = check(&expect, &request, &response);
    let mut summary = summarize(&response);
    if session.remaining() > 0 {
        // kwctl only warns about exchanges left unused; so do we, in the summary.
        summary.push_str(&format!(
            " ({} session exchanges unused)",
            session.remaining()
        ));
    }
    Ok(Outcome { problems, summary })
}

fn decision_of(response: &AdmissionResponse) -> Option<Value> {
    let raw = response.audit_annotations.as_ref()?.get(DECISION_KEY)?;
    serde_json::from_str(raw).ok()
}

fn summarize(response: &AdmissionResponse) -> String {
    let mut s = format!(
        "allowed={} injected={}",
        response.allowed,
        response.patch.is_some()
    );
    if let Some(status) = &response.status {
        s.push_str(&format!(
            " code={} message={:?}",
            status.code.map_or("-".to_string(), |c| c.to_string()),
            status.message.clone().unwrap_or_default()
        ));
    }
    if let Some(d) = decision_of(response) {
        let field = |k: &str| match d.get(k) {
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => "-".into(),
        };
        s.push_str(&format!(
            " rule={} reason={:?}",
            field("rule"),
            field("reason")
        ));
    }
    for w in response.warnings.iter().flatten() {
        s.push_str(&format!(" warning={w:?}"));
    }
    s
}

/// Compare `response` with `expect`; one message per mismatch.
pub fn check(expect: &Expect, request: &Value, response: &AdmissionResponse) -> Vec<String> {
    let mut problems = Vec::new();
    let status_message = response
        .status
        .as_ref()
        .and_then(|s| s.message.clone())
        .unwrap_or_default();
    if let Some(allowed) = expect.allowed {
        if response.allowed != allowed {
            problems.push(format!(
                "allowed={}, expected {allowed} (message: {status_message:?})",
                response.allowed
            ));
        }
    }
    if let Some(injected) = expect.injected {
        if response.patch.is_some() != injected {
            problems.push(format!(
                "injected={}, expected {injected}",
                response.patch.is_some()
            ));
        }
    }
    if let Some(code) = expect.code {
        let got = response.status.as_ref().and_then(|s| s.code);
        if got != Some(code) {
            problems.push(format!("code={got:?}, expected {code}"));
        }
    }
    if let Some(want) = &expect.message {
        if !status_message.contains(want.as_str()) {
            problems.push(format!("message {status_message:?} lacks {want:?}"));
        }
    }
    if let Some(wanted) = &expect.warnings {
        let got = response.warnings.clone().unwrap_or_default();
        if wanted.is_empty() && !got.is_empty() {
            problems.push(format!("unexpected warnings {got:?}"));
        }
        for want in wanted {
            if !got.iter().any(|w| w.contains(want.as_str())) {
                problems.push(format!("no warning contains {want:?} (warnings: {got:?})"));
            }
        }
    }
    if let Some(wanted) = &expect.decision {
        match decision_of(response) {
            None => problems.push(format!("no {DECISION_KEY} audit annotation")),
            Some(d) => {
                for (k, v) in wanted {
                    if d.get(k) != Some(v) {
                        problems.push(format!("decision.{k}={:?}, expected {v}", d.get(k)));
                    }
                }
            }
        }
    }
    let needs_object = !expect.patched.is_empty()
        || !expect.present.is_empty()
        || !expect.absent.is_empty()
        || !expect.preserved.is_empty();
    if needs_object {
        let original = request.get("object").cloned().unwrap_or(Value::Null);
        match response.patched_object(&original) {
            Err(e) => problems.push(e.to_string()),
            Ok(patched) => problems.extend(check_object(expect, &original, &patched)),
        }
    }
    problems
}

fn check_object(expect: &Expect, original: &Value, patched: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for (pointer, want) in &expect.patched {
        match patched.pointer(pointer) {
            Some(got) if got == want => {}
            got => problems.push(format!("{pointer} = {got:?}, expected {want}")),
        }
    }
    for pointer in &expect.present {
        if patched.pointer(pointer).is_none() {
            problems.push(format!("{pointer} is missing from the patched object"));
        }
    }
    for pointer in &expect.absent {
        if let Some(got) = patched.pointer(pointer) {
            problems.push(format!("{pointer} = {got}, expected absent"));
        }
    }
    for pointer in &expect.preserved {
        match (original.pointer(pointer), patched.pointer(pointer)) {
            (None, _) => problems.push(format!("{pointer} is not in the request's object")),
            (Some(a), Some(b)) if a == b => {}
            (Some(a), b) => problems.push(format!("{pointer} changed from {a} to {b:?}")),
        }
    }
    problems
}

/// The `replay` subcommand: one line per case, then `N passed, M failed`.
pub fn run(
    dir: &Path,
    policy: &Path,
    options: &RuntimeOptions,
    verbose: bool,
) -> anyhow::Result<ExitCode> {
    let cases = discover(dir)?;
    if cases.is_empty() {
        return Err(anyhow!("no case.yaml under {}", dir.display()));
    }
    let runtime = PolicyRuntime::load(policy, options)?;
    let (mut passed, mut failed, mut pending) = (0, 0, 0);
    for case in &cases {
        let result = run_case(&runtime, case);
        let (problems, summary) = match result {
            Ok(o) => (o.problems, o.summary),
            Err(e) => (vec![format!("{e:#}")], String::new()),
        };
        let detail = if verbose && !summary.is_empty() {
            format!("  [{summary}]")
        } else {
            String::new()
        };
        if let Some(reason) = &case.spec.pending {
            pending += 1;
            let note = if problems.is_empty() {
                " (passes now: drop `pending`)"
            } else {
                ""
            };
            println!("PEND {}: {reason}{note}{detail}", case.name);
        } else if problems.is_empty() {
            passed += 1;
            println!("ok   {}{detail}", case.name);
        } else {
            failed += 1;
            println!("FAIL {}: {}{detail}", case.name, problems.join("; "));
        }
    }
    let pending_note = if pending > 0 {
        format!(" ({pending} pending)")
    } else {
        String::new()
    };
    println!("{passed} passed, {failed} failed{pending_note}");
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

    fn response(allowed: bool, patch: Option<String>) -> AdmissionResponse {
        AdmissionResponse {
            uid: "u".into(),
            allowed,
            patch_type: patch.as_ref().map(|_| "JSONPatch".into()),
            patch,
            status: (!allowed).then(|| Status {
                message: Some("the Pod does not match".into()),
                code: Some(400),
            }),
            audit_annotations: Some(BTreeMap::from([(
                DECISION_KEY.to_string(),
                r#"{"inject":true,"rule":"namespace-revision"}"#.to_string(),
            )])),
            warnings: Some(vec!["namespace has both labels".into()]),
        }
    }

    #[test]
    fn expectations_catch_each_mismatch() {
        let object = json!({"spec": {"containers": [{"name": "app"}], "x-custom": 1}});
        let mut mutated = object.clone();
        mutated["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "istio-proxy"}));
        let patch = encode_patch(&object, &mutated).unwrap();
        let request = json!({"object": object});
        let good = Expect {
            allowed: Some(true),
            injected: Some(true),
            warnings: Some(vec!["both labels".into()]),
            decision: Some(BTreeMap::from([("inject".into(), json!(true))])),
            patched: BTreeMap::from([("/spec/containers/1/name".into(), json!("istio-proxy"))]),
            present: vec!["/spec/containers/1".into()],
            absent: vec!["/spec/initContainers".into()],
            preserved: vec!["/spec/x-custom".into()],
            ..Default::default()
        };
        assert_eq!(
            check(&good, &request, &response(true, patch.clone())),
            Vec::<String>::new()
        );
        // Without the patch, every object expectation and `injected` fail.
        let problems = check(&good, &request, &response(true, None));
        assert_eq!(problems.len(), 3, "{problems:?}");
        let rejected = Expect {
            allowed: Some(false),
            code: Some(400),
            message: Some("does not match".into()),
            warnings: Some(vec![]),
            ..Default::default()
        };
        let problems = check(&rejected, &request, &response(false, None));
        // Only the unexpected warning differs.
        assert_eq!(problems.len(), 1, "{problems:?}");
        // allowed, code, message and the unexpected warning.
        assert_eq!(check(&rejected, &request, &response(true, patch)).len(), 4);
    }

    #[test]
    fn discovers_single_and_multi_case_manifests() {
        let root = std::env::temp_dir().join(format!("revinject-replay-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("a/nested")).unwrap();
        std::fs::create_dir_all(root.join("b")).unwrap();
        std::fs::write(root.join("a/nested/case.yaml"), "expect: {allowed: true}\n").unwrap();
        std::fs::write(
            root.join("b/case.yaml"),
            "settings: s.yaml\ncases:\n- name: one\n- name: two\n  settings: t.yaml\n  pending: later\n",
        )
        .unwrap();
        let cases = discover(&root).unwrap();
        let names: Vec<_> = cases.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a/nested", "b/one", "b/two"]);
        assert_eq!(cases[1].spec.settings.as_deref(), Some(Path::new("s.yaml")));
        assert_eq!(cases[2].spec.settings.as_deref(), Some(Path::new("t.yaml")));
        assert_eq!(cases[2].spec.pending.as_deref(), Some("later"));
        std::fs::write(root.join("b/case.yaml"), "expectt: {}\n").unwrap();
        assert!(discover(&root).is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
