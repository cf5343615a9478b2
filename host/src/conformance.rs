//! `revinject conformance DIR`: run Istio's sidecar-injection golden tests (the suite in DIR,
//! see its README.md) through the policy and compare the injected pods with Istio's.
//!
//! Every case goes through an [`Evaluator`]: `policy.wasm` on the same path as `revinject run`
//! (the default), or the policy's Rust code called natively (`--engine native`, a baseline for
//! development). Both hand back an AdmissionResponse whose JSONPatch is applied to the pod, so
//! the comparison is the same for both.

use anyhow::{anyhow, Context as _};
use clap::ValueEnum;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::cases::{Case, Expectation, Suite};
use crate::normalize::{differences, normalize_pod, Difference};
use crate::patch::{AdmissionResponse, ValidationResponse};
use crate::runtime::{PolicyRuntime, RuntimeOptions, StaticNamespaces};
use crate::workload;

/// Default location of the list of cases allowed to fail (run from the repository root).
pub const KNOWN_FAILURES_FILE: &str = "conformance-known-failures.txt";

/// How many differences a failing case shows in text output.
const SHOWN_DIFFERENCES: usize = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineKind {
    /// `policy.wasm` through the wasmtime host, as `revinject run` does.
    Wasm,
    /// The policy's Rust code called directly.
    Native,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

/// Arguments of `revinject conformance`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConformanceArgs {
    /// The suite directory: cases.yaml, inputs/, expected/.
    pub dir: PathBuf,
    /// What evaluates the requests.
    #[arg(long, value_enum, default_value = "wasm")]
    pub engine: EngineKind,
    /// The policy module (wasm engine).
    #[arg(long, default_value = "policy.wasm")]
    pub policy: PathBuf,
    /// Run only this case (repeatable).
    #[arg(long = "case", value_name = "NAME")]
    pub cases: Vec<String>,
    /// Text (one line per case) or one JSON document.
    #[arg(long, value_enum, default_value = "text")]
    pub output: OutputFormat,
    /// Cases allowed to fail: one name per line, then ` # reason`.
    #[arg(long, default_value = KNOWN_FAILURES_FILE)]
    pub known_failures: PathBuf,
    /// Write each compared pair, normalized, to `DIR/<case>[.<n>].{expected,actual}.json`.
    #[arg(long, value_name = "DIR")]
    pub dump: Option<PathBuf>,
}

/// The policy's answer to one request.
pub struct Evaluation {
    /// The AdmissionResponse as `kwctl run` prints it.
    pub response: Value,
    /// The full mutated object, when the engine exposes it (for the patch round-trip check).
    pub mutated_object: Option<Value>,
}

/// What runs the policy. `namespace` is the `v1/Namespace` the policy's lookup is answered with.
pub trait Evaluator {
    /// `Ok(Err(message))` when the policy rejects the settings.
    fn validate_settings(&mut self, settings: &Value) -> anyhow::Result<Result<(), String>>;
    fn evaluate(
        &mut self,
        request: &Value,
        settings: &Value,
        namespace: &Value,
    ) -> anyhow::Result<Evaluation>;
}

/// The policy's Rust code, answering the Namespace lookup from `namespace`.
pub struct NativeEvaluator;

struct OneNamespace<'a>(&'a Value);

impl revision_injector::admission::Cluster for OneNamespace<'_> {
    fn namespace(&self, name: &str) -> Result<Value, String> {
        let own = self.0.pointer("/metadata/name").and_then(Value::as_str);
        if own == Some(name) {
            Ok(self.0.clone())
        } else {
            Err(format!("namespaces \"{name}\" not found"))
        }
    }
}

impl Evaluator for NativeEvaluator {
    fn validate_settings(&mut self, settings: &Value) -> anyhow::Result<Result<(), String>> {
        Ok(revision_injector::settings::Settings::from_value(settings)
            .and_then(|s| revision_injector::admission::validate_settings(&s)))
    }

    fn evaluate(
        &mut self,
        request: &Value,
        settings: &Value,
        namespace: &Value,
    ) -> anyhow::Result<Evaluation> {
        let settings =
            revision_injector::settings::Settings::from_value(settings).map_err(|e| anyhow!(e))?;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            revision_injector::admission::evaluate(request, &settings, &OneNamespace(namespace))
        }))
        .map_err(|_| anyhow!("the policy panicked"))?;
        Evaluation::from_validation(
            request,
            serde_json::from_value(outcome.to_validation_response())?,
        )
    }
}

impl Evaluation {
    /// The AdmissionResponse the host sends for `validation`, keeping the mutated object for
    /// the patch round-trip check. Both engines answer through here.
    fn from_validation(
        request: &Value,
        validation: ValidationResponse,
    ) -> anyhow::Result<Evaluation> {
        let uid = request.get("uid").and_then(Value::as_str).unwrap_or("");
        let response = AdmissionResponse::from_validation(
            uid,
            request.get("object").filter(|o| !o.is_null()),
            &validation,
        )?;
        Ok(Evaluation {
            response: serde_json::to_value(response)?,
            mutated_object: validation.mutated_object,
        })
    }
}

/// `policy.wasm` through [`PolicyRuntime`], the path `revinject run` takes. It calls the
/// guest's `validate` itself (rather than `admission_response`) to keep the `mutated_object`
/// for the patch round-trip check; the response is built by the same code.
pub struct WasmEvaluator {
    runtime: PolicyRuntime,
}

impl WasmEvaluator {
    pub fn load(policy: &Path) -> anyhow::Result<WasmEvaluator> {
        let options = RuntimeOptions {
            guest_logs: false,
            ..RuntimeOptions::default()
        };
        Ok(WasmEvaluator {
            runtime: PolicyRuntime::load(policy, &options)?,
        })
    }
}

impl Evaluator for WasmEvaluator {
    fn validate_settings(&mut self, settings: &Value) -> anyhow::Result<Result<(), String>> {
        let (valid, message) = self.runtime.validate_settings(settings)?;
        Ok(if valid {
            Ok(())
        } else {
            Err(message.unwrap_or_else(|| "(no message)".to_string()))
        })
    }

    fn evaluate(
        &mut self,
        request: &Value,
        settings: &Value,
        namespace: &Value,
    ) -> anyhow::Result<Evaluation> {
        let name = namespace
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let host = StaticNamespaces(BTreeMap::from([(name, namespace.clone())]));
        let payload = serde_json::to_vec(&json!({"request": request, "settings": settings}))?;
        let bytes = match self.runtime.call("validate", &payload, &host) {
            Ok(bytes) => bytes,
            Err(failure) => anyhow::bail!("the policy failed: {failure}"),
        };
        let validation: ValidationResponse = serde_json::from_slice(&bytes)
            .context("the policy's answer is not a ValidationResponse")?;
        Evaluation::from_validation(request, validation)
    }
}

/// One problem found in a case.
#[derive(Debug, Clone)]
pub struct Problem {
    pub message: String,
    pub differences: Vec<Difference>,
}

impl Problem {
    fn new(message: impl Into<String>) -> Problem {
        Problem {
            message: message.into(),
            differences: Vec::new(),
        }
    }
}

/// The result of one case.
#[derive(Debug, Clone)]
pub struct CaseReport {
    pub name: String,
    pub problems: Vec<Problem>,
    /// The reason given in the known-failures list, if the case is listed.
    pub known: Option<String>,
}

impl CaseReport {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Run one case; every problem is collected, none aborts the run.
pub fn run_case(
    suite: &Suite,
    case: &Case,
    evaluator: &mut dyn Evaluator,
    dump: Option<&Path>,
) -> Vec<Problem> {
    match check_case(suite, case, evaluator, dump) {
        Ok(problems) => problems,
        Err(e) => vec![Problem::new(format!("{e:#}"))],
    }
}

fn read_documents(dir: &Path, file: &str) -> anyhow::Result<Vec<Value>> {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    workload::workload_documents(&text).with_context(|| format!("in {}", path.display()))
}

fn check_case(
    suite: &Suite,
    case: &Case,
    evaluator: &mut dyn Evaluator,
    dump: Option<&Path>,
) -> anyhow::Result<Vec<Problem>> {
    let settings = case.settings(&suite.defaults)?;
    if let Err(message) = evaluator.validate_settings(&settings)? {
        return Ok(vec![Problem::new(format!(
            "the policy rejects the case's settings: {message}"
        ))]);
    }
    let revision = Case::revision(&settings);
    let inputs = read_documents(&suite.dir, &case.input)?;
    if inputs.is_empty() {
        return Ok(vec![Problem::new(format!(
            "{} holds no workload document",
            case.input
        ))]);
    }
    let goldens = match &case.expectation {
        Expectation::Golden(file) => {
            let goldens = read_documents(&suite.dir, file)?;
            if goldens.len() != inputs.len() {
                return Ok(vec![Problem::new(format!(
                    "{} has {} workload documents but {file} has {}",
                    case.input,
                    inputs.len(),
                    goldens.len()
                ))]);
            }
            goldens
        }
        Expectation::Error(_) => Vec::new(),
    };

    let mut problems = Vec::new();
    for (index, input) in inputs.iter().enumerate() {
        let prefix = if inputs.len() > 1 {
            format!("document {}: ", index + 1)
        } else {
            String::new()
        };
        let document = DocumentRun {
            uid: format!("{}-{}", case.name, index + 1),
            pod: workload::to_pod(input)?,
            namespace: workload::request_namespace(input),
            settings: &settings,
            revision: &revision,
            dump: dump.map(|dir| {
                let n = if inputs.len() > 1 {
                    format!(".{}", index + 1)
                } else {
                    String::new()
                };
                dir.join(format!("{}{n}", case.name))
            }),
        };
        let found = match &case.expectation {
            Expectation::Error(needle) => document.expect_rejection(evaluator, needle)?,
            Expectation::Golden(_) => {
                let golden = goldens
                    .get(index)
                    .ok_or_else(|| anyhow!("no golden document {}", index + 1))?;
                document.expect_golden(evaluator, &workload::to_pod(golden)?)?
            }
        };
        problems.extend(found.into_iter().map(|p| Problem {
            message: format!("{prefix}{}", p.message),
            ..p
        }));
    }
    Ok(problems)
}

/// One request of a case: the pod built from one document.
struct DocumentRun<'a> {
    uid: String,
    pod: Value,
    namespace: String,
    settings: &'a Value,
    revision: &'a str,
    /// Path prefix for `--dump`.
    dump: Option<PathBuf>,
}

/// A decoded response and the object it yields.
struct Answer {
    response: AdmissionResponse,
    patched: Option<Value>,
    round_trip: Option<Problem>,
}

impl DocumentRun<'_> {
    /// Send `pod`, apply the patch, and check the patch against the engine's mutated object.
    fn send(
        &self,
        evaluator: &mut dyn Evaluator,
        uid: &str,
        pod: &Value,
    ) -> anyhow::Result<Answer> {
        let request = workload::admission_request(uid, &self.namespace, pod);
        let namespace = workload::namespace_object(&self.namespace, self.revision);
        let evaluation = evaluator.evaluate(&request, self.settings, &namespace)?;
        let response: AdmissionResponse = serde_json::from_value(evaluation.response)
            .context("the engine's answer is not an AdmissionResponse")?;
        if !response.allowed {
            return Ok(Answer {
                response,
                patched: None,
                round_trip: None,
            });
        }
        let patched = response.patched_object(pod)?;
        let round_trip = evaluation
            .mutated_object
            .filter(|mutated| mutated != &patched)
            .map(|mutated| Problem {
                message: "patch round-trip: the pod plus the patch is not the mutated object"
                    .to_string(),
                differences: differences(&mutated, &patched),
            });
        Ok(Answer {
            response,
            patched: Some(patched),
            round_trip,
        })
    }

    fn expect_rejection(
        &self,
        evaluator: &mut dyn Evaluator,
        needle: &str,
    ) -> anyhow::Result<Vec<Problem>> {
        let answer = self.send(evaluator, &self.uid, &self.pod)?;
        if answer.response.allowed {
            let how = if answer.response.patch.is_some() {
                "injected"
            } else {
                "admitted unchanged"
            };
            return Ok(vec![Problem::new(format!(
                "expected a rejection mentioning {needle:?}, but the pod was {how}"
            ))]);
        }
        let message = rejection_message(&answer.response);
        if message.to_lowercase().contains(&needle.to_lowercase()) {
            Ok(Vec::new())
        } else {
            Ok(vec![Problem::new(format!(
                "rejected, but the message does not mention {needle:?}: {message:?}"
            ))])
        }
    }

    fn expect_golden(
        &self,
        evaluator: &mut dyn Evaluator,
        golden: &Value,
    ) -> anyhow::Result<Vec<Problem>> {
        let answer = self.send(evaluator, &self.uid, &self.pod)?;
        let Some(injected) = answer.patched else {
            return Ok(vec![Problem::new(format!(
                "rejected: {}",
                rejection_message(&answer.response)
            ))]);
        };
        let mut problems: Vec<Problem> = answer.round_trip.into_iter().collect();

        let had_namespace = self.pod.pointer("/metadata/namespace").is_some();
        let mut expected = golden.clone();
        let mut actual = injected.clone();
        normalize_pod(&mut expected, &self.namespace, had_namespace);
        normalize_pod(&mut actual, &self.namespace, had_namespace);
        if let Some(prefix) = &self.dump {
            for (suffix, pod) in [("expected", &expected), ("actual", &actual)] {
                let path = prefix.with_file_name(format!(
                    "{}.{suffix}.json",
                    prefix
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or("case")
                ));
                std::fs::write(&path, serde_json::to_string_pretty(pod)?)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
        }
        // A pod Istio leaves alone (host network, opt-out) must get no patch at all; the
        // normalization would hide e.g. a status annotation added to it.
        let mut untouched = self.pod.clone();
        normalize_pod(&mut untouched, &self.namespace, had_namespace);
        if untouched == expected && injected != self.pod {
            problems.push(Problem {
                message: "Istio does not inject this pod, but the policy patched it".to_string(),
                differences: differences(&self.pod, &injected),
            });
        }
        let diff = differences(&expected, &actual);
        if !diff.is_empty() {
            problems.push(Problem {
                message: format!(
                    "the injected pod differs from the golden ({} difference{})",
                    diff.len(),
                    if diff.len() == 1 { "" } else { "s" }
                ),
                differences: diff,
            });
        }

        let again = self.send(evaluator, &format!("{}-again", self.uid), &injected)?;
        match again.patched {
            None => problems.push(Problem::new(format!(
                "idempotency: re-sending the injected pod is rejected: {}",
                rejection_message(&again.response)
            ))),
            Some(reinjected) => {
                problems.extend(again.round_trip.map(|p| Problem {
                    message: format!("idempotency: {}", p.message),
                    ..p
                }));
                if reinjected != injected {
                    problems.push(Problem {
                        message: "idempotency: re-sending the injected pod changes it".to_string(),
                        differences: differences(&injected, &reinjected),
                    });
                }
            }
        }
        Ok(problems)
    }
}

fn rejection_message(response: &AdmissionResponse) -> String {
    response
        .status
        .as_ref()
        .and_then(|s| s.message.clone())
        .unwrap_or_else(|| "(no message)".to_string())
}

/// The known-failures entries of one suite: case name → reason. Each line of the list is
/// `<suite>/<case> # reason`, the suite named by its directory (`istio`, `istio-1.23.3`), so
/// one list serves every suite; lines of other suites are skipped. A line that names no suite
/// is an error, so an entry cannot silently apply to the wrong suite.
pub fn parse_known_failures(text: &str, suite: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut known = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let (entry, reason) = line.split_once('#').unwrap_or((line, ""));
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let Some((entry_suite, case)) = entry.split_once('/') else {
            anyhow::bail!(
                "line {}: {entry:?} names no suite; write `<suite>/<case> # reason`, e.g. `istio/{entry}`",
                number + 1
            );
        };
        if entry_suite == suite {
            known.insert(case.to_string(), reason.trim().to_string());
        }
    }
    Ok(known)
}

/// The name a suite goes by in the known-failures list: its directory's name.
pub fn suite_name(dir: &Path) -> String {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The whole run's outcome.
pub struct RunReport {
    pub cases: Vec<CaseReport>,
    /// Listed as known failures but passing now: the list must shrink.
    pub fixed: Vec<String>,
    /// Failing and not listed.
    pub unexpected: Vec<String>,
}

impl RunReport {
    pub fn ok(&self) -> bool {
        self.fixed.is_empty() && self.unexpected.is_empty()
    }

    fn counts(&self) -> (usize, usize) {
        let passed = self.cases.iter().filter(|c| c.passed()).count();
        (passed, self.cases.len() - passed)
    }
}

/// Run the cases selected by `args` through `evaluator`, printing each case as it finishes
/// in text mode.
pub fn run_suite(
    suite: &Suite,
    args: &ConformanceArgs,
    known: &BTreeMap<String, String>,
    evaluator: &mut dyn Evaluator,
) -> anyhow::Result<RunReport> {
    for wanted in &args.cases {
        if !suite.cases.iter().any(|c| &c.name == wanted) {
            anyhow::bail!("no case named {wanted:?} in {}", suite.dir.display());
        }
    }
    let mut report = RunReport {
        cases: Vec::new(),
        fixed: Vec::new(),
        unexpected: Vec::new(),
    };
    for case in &suite.cases {
        if !args.cases.is_empty() && !args.cases.contains(&case.name) {
            continue;
        }
        let result = CaseReport {
            name: case.name.clone(),
            problems: run_case(suite, case, evaluator, args.dump.as_deref()),
            known: known.get(&case.name).cloned(),
        };
        match (result.passed(), result.known.is_some()) {
            (true, true) => report.fixed.push(case.name.clone()),
            (false, false) => report.unexpected.push(case.name.clone()),
            _ => {}
        }
        if args.output == OutputFormat::Text {
            print!("{}", text_line(&result));
        }
        report.cases.push(result);
    }
    Ok(report)
}

/// `PASS name` or `FAIL name: …` followed by the first differences, indented.
pub fn text_line(case: &CaseReport) -> String {
    if case.passed() {
        return match case.known {
            Some(_) => format!(
                "PASS {} (listed in {KNOWN_FAILURES_FILE}: remove it)\n",
                case.name
            ),
            None => format!("PASS {}\n", case.name),
        };
    }
    let known = if case.known.is_some() { " (known)" } else { "" };
    let headline: Vec<&str> = case.problems.iter().map(|p| p.message.as_str()).collect();
    let mut out = format!("FAIL {}{known}: {}\n", case.name, headline.join("; "));
    for problem in case.problems.iter().filter(|p| !p.differences.is_empty()) {
        if case.problems.len() > 1 {
            out.push_str(&format!("    {}:\n", problem.message));
        }
        for d in problem.differences.iter().take(SHOWN_DIFFERENCES) {
            out.push_str(&format!("      {d}\n"));
        }
        if problem.differences.len() > SHOWN_DIFFERENCES {
            out.push_str(&format!(
                "      … and {} more\n",
                problem.differences.len() - SHOWN_DIFFERENCES
            ));
        }
    }
    out
}

/// The closing lines: what must change, then `N passed, M failed` alone on the last line.
pub fn text_summary(report: &RunReport) -> String {
    let mut out = String::new();
    if !report.unexpected.is_empty() {
        out.push_str(&format!(
            "failing and not in {KNOWN_FAILURES_FILE}: {}\n",
            report.unexpected.join(", ")
        ));
    }
    if !report.fixed.is_empty() {
        out.push_str(&format!(
            "passing but listed in {KNOWN_FAILURES_FILE} (remove them): {}\n",
            report.fixed.join(", ")
        ));
    }
    let (passed, failed) = report.counts();
    out.push_str(&format!("{passed} passed, {failed} failed\n"));
    out
}

/// The report as one JSON document (`--output json`).
pub fn json_report(report: &RunReport, engine: EngineKind) -> Value {
    let (passed, failed) = report.counts();
    let cases: Vec<Value> = report
        .cases
        .iter()
        .map(|c| {
            let problems: Vec<Value> = c
                .problems
                .iter()
                .map(|p| {
                    let diffs: Vec<Value> = p
                        .differences
                        .iter()
                        .map(
                            |d| json!({"path": d.path, "expected": d.expected, "actual": d.actual}),
                        )
                        .collect();
                    json!({"message": p.message, "differences": diffs})
                })
                .collect();
            json!({
                "name": c.name,
                "result": if c.passed() { "pass" } else { "fail" },
                "known": c.known.is_some(),
                "knownReason": c.known,
                "problems": problems,
            })
        })
        .collect();
    json!({
        "engine": format!("{engine:?}").to_lowercase(),
        "passed": passed,
        "failed": failed,
        "ok": report.ok(),
        "unexpectedFailures": report.unexpected,
        "knownFailuresNowPassing": report.fixed,
        "cases": cases,
    })
}

fn make_evaluator(args: &ConformanceArgs) -> anyhow::Result<Box<dyn Evaluator>> {
    match args.engine {
        EngineKind::Native => Ok(Box::new(NativeEvaluator)),
        EngineKind::Wasm => Ok(Box::new(WasmEvaluator::load(&args.policy)?)),
    }
}

/// `revinject conformance`: `Ok(true)` when every failing case is a listed known failure and
/// no listed case passes.
pub fn run(args: &ConformanceArgs) -> anyhow::Result<bool> {
    let (suite, warnings) = Suite::load(&args.dir)?;
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    let name = suite_name(&args.dir);
    let known = match std::fs::read_to_string(&args.known_failures) {
        Ok(text) => parse_known_failures(&text, &name)
            .with_context(|| format!("in {}", args.known_failures.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "note: no {} here, so every failing case counts as unexpected",
                args.known_failures.display()
            );
            BTreeMap::new()
        }
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read {}", args.known_failures.display()))
        }
    };
    for case in known.keys() {
        if !suite.cases.iter().any(|c| &c.name == case) {
            eprintln!(
                "note: {} lists {name}/{case:?}, which is not a case of {}",
                args.known_failures.display(),
                suite.dir.display()
            );
        }
    }
    if let Some(dir) = &args.dump {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut evaluator = make_evaluator(args)?;
    let report = run_suite(&suite, args, &known, evaluator.as_mut())?;
    match args.output {
        OutputFormat::Text => print!("{}", text_summary(&report)),
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json_report(&report, args.engine))?
        ),
    }
    Ok(report.ok())
}
