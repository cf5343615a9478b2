//! `revinject check`: for operators, which installed revision injects a pod and why (like
//! `istioctl x check-inject`), and `--overlaps`: every label permutation two revisions would
//! both inject (like Istio's IST0139 analyzer).
//!
//! Each installed revision is one policy settings file. The pod goes through the policy itself
//! (`policy.wasm` by default, see [`Evaluator`]) once per revision, with the namespace lookup
//! answered from the given labels, and the answer is read from the decision the policy writes
//! in the audit annotation `revision-injector/decision`.

use anyhow::{anyhow, bail, Context as _};
use clap::ValueEnum;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::conformance::{EngineKind, Evaluator, NativeEvaluator, WasmEvaluator};
use crate::input::read_settings;
use crate::runtime::namespace_object;
use crate::workload;
use revision_injector::admission::DECISION_AUDIT_KEY;
use revision_injector::revision::{served_names, INJECTION_LABEL, INJECT_LABEL, REV_LABEL};
use revision_injector::settings::Settings;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// Arguments of `revinject check`.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// Settings of each installed revision's policy instance (YAML or JSON), one file each.
    #[arg(required = true, value_name = "SETTINGS")]
    pub settings: Vec<PathBuf>,
    /// Labels of the pod's namespace, `k=v,k=v`.
    #[arg(long, value_name = "K=V,...", conflicts_with = "namespace_file")]
    pub namespace_labels: Option<String>,
    /// A Namespace manifest (its name and labels are used).
    #[arg(long, value_name = "FILE")]
    pub namespace_file: Option<PathBuf>,
    /// The namespace name (default: the Namespace manifest's, else the pod's, else `default`).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Labels of the pod, `k=v,k=v`.
    #[arg(long, value_name = "K=V,...", conflicts_with = "pod_file")]
    pub pod_labels: Option<String>,
    /// Annotations of the pod, `k=v,k=v`.
    #[arg(long, value_name = "K=V,...", conflicts_with = "pod_file")]
    pub pod_annotations: Option<String>,
    /// A Pod manifest, or a workload (Deployment, Job, ...) whose pod template is checked.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub pod_file: Option<PathBuf>,
    /// Instead of one pod: report every label permutation two revisions would both inject.
    #[arg(long, conflicts_with_all = ["namespace_labels", "namespace_file", "pod_labels", "pod_annotations", "pod_file"])]
    pub overlaps: bool,
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Output,
    /// What evaluates the pod: `policy.wasm` (default) or the policy's Rust code.
    #[arg(long, value_enum, default_value = "wasm")]
    pub engine: EngineKind,
    /// The policy module.
    #[arg(long, default_value = "policy.wasm")]
    pub policy: PathBuf,
}

/// One installed revision: its settings file and the names it answers.
#[derive(Debug, Clone)]
pub struct Installed {
    pub source: String,
    pub settings: Value,
    /// `canary (prod)`: the revision, then its tags.
    pub name: String,
    pub served: Vec<String>,
    /// The Istio version whose injector the revision reproduces.
    pub istio_version: String,
}

impl Installed {
    /// Parse and validate one revision's settings (through the policy's `validate_settings`).
    pub fn new(source: &str, settings: Value, eval: &mut dyn Evaluator) -> anyhow::Result<Self> {
        if let Err(message) = eval.validate_settings(&settings)? {
            bail!("{source}: invalid settings: {message}");
        }
        let parsed = Settings::from_value(&settings).map_err(|e| anyhow!("{source}: {e}"))?;
        let served = served_names(&parsed);
        let name = match served.split_first() {
            Some((rev, tags)) if !tags.is_empty() => format!("{rev} ({})", tags.join(", ")),
            _ => parsed.revision_name().to_string(),
        };
        Ok(Installed {
            source: source.to_string(),
            settings,
            name,
            served,
            istio_version: parsed.istio_version.to_string(),
        })
    }
}

/// What one revision does with the pod.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub revision: String,
    /// The Istio version the revision's injector reproduces (as the policy's decision says).
    pub istio_version: String,
    pub settings: String,
    /// The decision's rule, or `-` when the policy answered before deciding.
    pub rule: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    pub injected: bool,
    /// False when the policy rejected the pod (e.g. an invalid annotation).
    pub allowed: bool,
    pub reason: String,
    pub warnings: Vec<String>,
}

/// Run `pod` through every installed revision with `namespace` answering the lookup.
pub fn check_pod(
    eval: &mut dyn Evaluator,
    installed: &[Installed],
    namespace: &Value,
    pod: &Value,
) -> anyhow::Result<Vec<Verdict>> {
    let ns_name = namespace
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or(workload::DEFAULT_NAMESPACE);
    let request = workload::admission_request("revinject-check", ns_name, pod);
    installed
        .iter()
        .map(|rev| {
            let eval = eval.evaluate(&request, &rev.settings, namespace)?;
            verdict(rev, &eval.response).with_context(|| format!("revision {}", rev.name))
        })
        .collect()
}

fn verdict(rev: &Installed, response: &Value) -> anyhow::Result<Verdict> {
    let allowed = response
        .get("allowed")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let status = response
        .pointer("/status/message")
        .and_then(Value::as_str)
        .unwrap_or("");
    let decision = match response
        .pointer("/auditAnnotations")
        .and_then(|a| a.get(DECISION_AUDIT_KEY))
        .and_then(Value::as_str)
    {
        Some(text) => serde_json::from_str::<Value>(text)
            .with_context(|| format!("the {DECISION_AUDIT_KEY} annotation is not JSON"))?,
        None => json!({}),
    };
    let text = |k: &str| decision.get(k).and_then(Value::as_str).map(str::to_string);
    let inject = decision
        .get("inject")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let reason = match (allowed, text("reason")) {
        (false, _) => format!("rejected: {status}"),
        (true, Some(r)) => r,
        (true, None) => "the policy admitted the pod without a decision".to_string(),
    };
    let mut warnings: Vec<String> = response
        .get("warnings")
        .and_then(Value::as_array)
        .map(|w| {
            w.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    warnings.dedup();
    Ok(Verdict {
        revision: rev.name.clone(),
        istio_version: text("istioVersion").unwrap_or_else(|| rev.istio_version.clone()),
        settings: rev.source.clone(),
        rule: text("rule").unwrap_or_else(|| "-".to_string()),
        webhook: text("webhook"),
        injected: allowed && inject,
        allowed,
        reason,
        warnings,
    })
}

/// One label permutation more than one revision injects.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Overlap {
    pub namespace_labels: BTreeMap<String, String>,
    pub pod_labels: BTreeMap<String, String>,
    /// `revision: rule` of each injecting revision.
    pub injected_by: Vec<String>,
}

/// Namespace used for the permutations (not an ignored one, so `auto` can apply).
const OVERLAP_NAMESPACE: &str = "revinject-overlaps";

/// Every permutation of namespace `istio-injection` × `istio.io/rev` and pod
/// `sidecar.istio.io/inject` × `istio.io/rev` over the installed names (and `default`).
pub fn overlaps(
    eval: &mut dyn Evaluator,
    installed: &[Installed],
) -> anyhow::Result<(usize, Vec<Overlap>)> {
    let mut names: Vec<&str> = installed
        .iter()
        .flat_map(|i| i.served.iter().map(String::as_str))
        .chain(["default"])
        .collect();
    names.sort_unstable();
    names.dedup();
    let revs: Vec<Option<&str>> = std::iter::once(None)
        .chain(names.iter().copied().map(Some))
        .collect();
    let mut total = 0;
    let mut found = Vec::new();
    for injection in [None, Some("enabled"), Some("disabled")] {
        for ns_rev in &revs {
            for inject in [None, Some("true"), Some("false")] {
                for pod_rev in &revs {
                    total += 1;
                    let ns_labels = labels(&[(INJECTION_LABEL, injection), (REV_LABEL, *ns_rev)]);
                    let pod_labels = labels(&[(INJECT_LABEL, inject), (REV_LABEL, *pod_rev)]);
                    let namespace = namespace_object(OVERLAP_NAMESPACE, &ns_labels);
                    let pod = pod_object(OVERLAP_NAMESPACE, &pod_labels, &BTreeMap::new());
                    let injected_by: Vec<String> = check_pod(eval, installed, &namespace, &pod)?
                        .into_iter()
                        .filter(|v| v.injected)
                        .map(|v| format!("{}: {}", v.revision, v.rule))
                        .collect();
                    if injected_by.len() > 1 {
                        found.push(Overlap {
                            namespace_labels: ns_labels,
                            pod_labels,
                            injected_by,
                        });
                    }
                }
            }
        }
    }
    Ok((total, found))
}

fn labels(pairs: &[(&str, Option<&str>)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_string(), v.to_string())))
        .collect()
}

/// A minimal valid Pod.
pub fn pod_object(
    namespace: &str,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "revinject-check", "namespace": namespace, "labels": labels, "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "app"}]},
    })
}

/// Parse `k=v,k=v` (an empty string is no labels); `what` names the option in errors.
pub fn parse_pairs(text: &str, what: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| anyhow!("{what}: {item:?} is not key=value"))?;
        revision_injector::selector::validate_key(k.trim())
            .map_err(|e| anyhow!("{what}: key {:?}: {e}", k.trim()))?;
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

fn read_yaml(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The namespace object and the pod described by the arguments.
fn subject(args: &CheckArgs) -> anyhow::Result<(Value, Value)> {
    let (mut pod, pod_ns) = match &args.pod_file {
        Some(path) => {
            let docs = workload::workload_documents(&read_yaml(path)?)
                .with_context(|| format!("in {}", path.display()))?;
            let doc = match docs.as_slice() {
                [doc] => doc,
                [] => bail!("{}: no Pod or workload document", path.display()),
                _ => bail!(
                    "{}: {} workload documents, check takes one",
                    path.display(),
                    docs.len()
                ),
            };
            let ns = doc
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(str::to_string);
            (
                workload::to_pod(doc).with_context(|| format!("in {}", path.display()))?,
                ns,
            )
        }
        None => {
            let pod_labels = parse_pairs(args.pod_labels.as_deref().unwrap_or(""), "--pod-labels")?;
            let annotations = parse_pairs(
                args.pod_annotations.as_deref().unwrap_or(""),
                "--pod-annotations",
            )?;
            (pod_object("", &pod_labels, &annotations), None)
        }
    };
    let (ns_name, ns_labels) = match &args.namespace_file {
        Some(path) => {
            let doc: Value = serde_norway::from_str(&read_yaml(path)?)
                .with_context(|| format!("{} is not valid YAML", path.display()))?;
            if doc.get("kind").and_then(Value::as_str) != Some("Namespace") {
                bail!("{} is not a Namespace manifest", path.display());
            }
            let name = doc
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .map(str::to_string);
            (name, revision_injector::json::labels_of(&doc))
        }
        None => (
            None,
            parse_pairs(
                args.namespace_labels.as_deref().unwrap_or(""),
                "--namespace-labels",
            )?,
        ),
    };
    let name = args
        .namespace
        .clone()
        .or(ns_name)
        .or(pod_ns)
        .unwrap_or_else(|| workload::DEFAULT_NAMESPACE.to_string());
    if let Some(meta) = pod.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("namespace".into(), json!(name));
    }
    Ok((namespace_object(&name, &ns_labels), pod))
}

/// When no revision injects: the `istio.io/rev` values no installed revision serves (Istio
/// silently ignores them; reference section 1, rule 6).
pub fn unserved_notes(installed: &[Installed], namespace: &Value, pod: &Value) -> Vec<String> {
    let served = |name: &str| installed.iter().any(|i| i.served.iter().any(|s| s == name));
    let mut notes = Vec::new();
    for (what, object) in [("namespace", namespace), ("pod", pod)] {
        let labels = revision_injector::json::labels_of(object);
        if let Some(rev) = labels.get(REV_LABEL).filter(|r| !served(r)) {
            notes.push(format!(
                "no installed revision serves the {what} label {REV_LABEL}={rev}"
            ));
        }
    }
    notes
}

/// Rows as aligned columns; the last column is not padded.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}   "));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = vec![line(header.iter().map(|h| h.to_string()).collect())];
    out.extend(rows.iter().cloned().map(line));
    out.join("\n") + "\n"
}

fn show(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "-".to_string();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The text `check` prints for one pod.
pub fn render_verdicts(verdicts: &[Verdict]) -> String {
    let rows: Vec<Vec<String>> = verdicts
        .iter()
        .map(|v| {
            let injected = match (v.allowed, v.injected) {
                (false, _) => "REJECTED",
                (true, true) => "yes",
                (true, false) => "no",
            };
            vec![
                v.revision.clone(),
                v.istio_version.clone(),
                v.rule.clone(),
                injected.into(),
                v.reason.clone(),
            ]
        })
        .collect();
    let mut out = table(
        &["REVISION", "ISTIO", "WEBHOOK", "INJECTED", "REASON"],
        &rows,
    );
    for v in verdicts {
        for w in &v.warnings {
            out.push_str(&format!("Warning ({}): {w}\n", v.revision));
        }
    }
    let injectors: Vec<&str> = verdicts
        .iter()
        .filter(|v| v.injected)
        .map(|v| v.revision.as_str())
        .collect();
    out.push_str(&match injectors.as_slice() {
        [] => "No installed revision injects this pod.\n".to_string(),
        [one] => format!("Revision {one} injects this pod.\n"),
        many => format!(
            "DOUBLE INJECTION: revisions {} all inject this pod.\n",
            many.join(", ")
        ),
    });
    out
}

/// The text `check --overlaps` prints.
pub fn render_overlaps(total: usize, found: &[Overlap]) -> String {
    if found.is_empty() {
        return format!(
            "No overlap: each of the {total} label permutations is injected at most once.\n"
        );
    }
    let rows: Vec<Vec<String>> = found
        .iter()
        .map(|o| {
            vec![
                show(&o.namespace_labels),
                show(&o.pod_labels),
                o.injected_by.join("; "),
            ]
        })
        .collect();
    let mut out = table(&["NAMESPACE LABELS", "POD LABELS", "INJECTED BY"], &rows);
    out.push_str(&format!(
        "{} of {total} label permutations would be injected by more than one revision (IST0139).\n",
        found.len()
    ));
    out
}

/// `revinject check`. Exit code 1 when a pod (or, with `--overlaps`, any permutation) would be
/// injected by more than one revision.
pub fn run(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let mut eval: Box<dyn Evaluator> = match args.engine {
        EngineKind::Native => Box::new(NativeEvaluator),
        EngineKind::Wasm => Box::new(WasmEvaluator::load(&args.policy)?),
    };
    let installed = args
        .settings
        .iter()
        .map(|path| {
            let settings = read_settings(Some(path))?;
            Installed::new(&path.display().to_string(), settings, eval.as_mut())
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (doubled, text, json) = if args.overlaps {
        let (total, found) = overlaps(eval.as_mut(), &installed)?;
        let json = json!({"permutations": total, "overlaps": found});
        (!found.is_empty(), render_overlaps(total, &found), json)
    } else {
        let (namespace, pod) = subject(args)?;
        let verdicts = check_pod(eval.as_mut(), &installed, &namespace, &pod)?;
        let injected_by: Vec<&str> = verdicts
            .iter()
            .filter(|v| v.injected)
            .map(|v| v.revision.as_str())
            .collect();
        let notes = if injected_by.is_empty() {
            unserved_notes(&installed, &namespace, &pod)
        } else {
            Vec::new()
        };
        let mut text = render_verdicts(&verdicts);
        for note in &notes {
            text.push_str(&format!("Note: {note}\n"));
        }
        let json = json!({
            "namespace": namespace.pointer("/metadata/name"),
            "namespaceLabels": namespace.pointer("/metadata/labels"),
            "revisions": verdicts,
            "injectedBy": injected_by,
            "notes": notes,
        });
        (injected_by.len() > 1, text, json)
    };
    match args.output {
        Output::Table => print!("{text}"),
        Output::Json => println!("{}", serde_json::to_string_pretty(&json)?),
    }
    Ok(if doubled {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn install(settings: &[Value]) -> Vec<Installed> {
        settings
            .iter()
            .enumerate()
            .map(|(i, s)| {
                Installed::new(&format!("s{i}"), s.clone(), &mut NativeEvaluator).unwrap()
            })
            .collect()
    }

    fn canary_setup() -> Vec<Installed> {
        install(&[
            json!({"revision": "default", "defaultRevision": true}),
            json!({"revision": "canary", "tags": ["prod"]}),
        ])
    }

    fn check(ns: &str, pod_labels: &str) -> Vec<Verdict> {
        let ns_labels = parse_pairs(ns, "ns").unwrap();
        let namespace = namespace_object("apps", &ns_labels);
        let pod = pod_object(
            "apps",
            &parse_pairs(pod_labels, "pod").unwrap(),
            &BTreeMap::new(),
        );
        check_pod(&mut NativeEvaluator, &canary_setup(), &namespace, &pod).unwrap()
    }

    #[test]
    fn names_show_revision_and_tags() {
        let names: Vec<String> = canary_setup().into_iter().map(|i| i.name).collect();
        assert_eq!(names, ["default", "canary (prod)"]);
    }

    #[test]
    fn tag_label_selects_canary_only() {
        let v = check("istio.io/rev=prod", "");
        assert_eq!((v[0].injected, v[1].injected), (false, true));
        assert_eq!(v[1].rule, "rev.namespace (tag prod)");
        assert!(v[0].reason.contains("istio.io/rev=prod"), "{}", v[0].reason);
        let text = render_verdicts(&v);
        assert!(text.starts_with("REVISION"), "{text}");
        assert!(
            text.contains("Revision canary (prod) injects this pod."),
            "{text}"
        );
    }

    #[test]
    fn istio_injection_wins_with_one_warning() {
        let v = check("istio-injection=enabled,istio.io/rev=canary", "");
        assert_eq!((v[0].injected, v[1].injected), (true, false));
        assert_eq!(v[0].rule, "namespace");
        assert_eq!(v[0].warnings.len(), 1);
        assert!(v[1].warnings.is_empty());
        assert!(render_verdicts(&v).contains("Warning (default): namespace \"apps\""));
    }

    #[test]
    fn opt_out_and_unlabelled_are_not_injected() {
        let v = check("istio.io/rev=canary", "sidecar.istio.io/inject=false");
        assert!(v.iter().all(|v| !v.injected && v.rule == "none"));
        assert!(render_verdicts(&v).contains("No installed revision injects"));
        assert!(check("", "").iter().all(|v| !v.injected));
    }

    #[test]
    fn unknown_revisions_are_noted() {
        let ns = namespace_object("apps", &parse_pairs("istio.io/rev=stable", "ns").unwrap());
        let pod = pod_object(
            "apps",
            &parse_pairs("istio.io/rev=prod", "pod").unwrap(),
            &BTreeMap::new(),
        );
        let notes = unserved_notes(&canary_setup(), &ns, &pod);
        assert_eq!(
            notes,
            ["no installed revision serves the namespace label istio.io/rev=stable"]
        );
    }

    #[test]
    fn canary_setup_has_no_overlap() {
        let (total, found) = overlaps(&mut NativeEvaluator, &canary_setup()).unwrap();
        assert_eq!(total, 3 * 4 * 3 * 4);
        assert!(found.is_empty(), "{found:?}");
        assert!(render_overlaps(total, &found).starts_with("No overlap"));
    }

    #[test]
    fn two_default_revisions_overlap() {
        let installed = install(&[
            json!({"revision": ""}),
            json!({"revision": "asm-1240-1", "defaultRevision": true}),
        ]);
        let (_, found) = overlaps(&mut NativeEvaluator, &installed).unwrap();
        let enabled = found
            .iter()
            .find(|o| {
                o.namespace_labels
                    .get("istio-injection")
                    .map(String::as_str)
                    == Some("enabled")
                    && o.pod_labels.is_empty()
            })
            .expect("istio-injection=enabled is injected twice");
        assert_eq!(
            enabled.injected_by,
            ["default: namespace", "asm-1240-1 (default): namespace"]
        );
        // A pod naming one revision explicitly is not doubled.
        assert!(!found
            .iter()
            .any(
                |o| o.pod_labels.get("istio.io/rev").map(String::as_str) == Some("asm-1240-1")
                    && o.namespace_labels.is_empty()
            ));
        assert!(render_overlaps(9, &found).contains("IST0139"));
    }

    #[test]
    fn invalid_settings_name_the_file() {
        let err = Installed::new("bad.yaml", json!({"revision": "Bad"}), &mut NativeEvaluator)
            .unwrap_err();
        assert!(
            err.to_string().contains("bad.yaml") && err.to_string().contains("revision"),
            "{err}"
        );
    }

    #[test]
    fn pairs_are_parsed_and_checked() {
        let p = parse_pairs("a=1, istio.io/rev=canary,,", "--x").unwrap();
        assert_eq!(p.get("istio.io/rev").map(String::as_str), Some("canary"));
        assert_eq!(p.len(), 2);
        assert!(parse_pairs("novalue", "--x")
            .unwrap_err()
            .to_string()
            .contains("--x"));
        assert!(parse_pairs("bad key=1", "--x").is_err());
    }
}
