//! `revinject upgrade SCENARIO.yaml`: rehearse a canary upgrade (the seed's story) offline.
//!
//! The cluster is a set of namespaces (labels), installed revisions (one policy instance each:
//! its settings) and one pod per workload. Pods are created at the start and at restart steps
//! only — webhooks fire on CREATE, so relabelling a namespace or moving a tag changes no
//! running pod. A creation goes through every installed revision's webhook in name order, as
//! the API server calls mutating webhooks: the selectors `revinject manifest` renders, then
//! `policy.wasm` with that revision's settings, each seeing the previous one's output. The pod
//! runs on the revision its injected `istio.io/rev` annotation names.
//!
//! After every step the state is checked for flags ([`FlagKind`]) and against the step's
//! `expect` block; a flag the scenario does not expect, or a failed expectation, fails it.

use anyhow::{anyhow, bail, Context as _};
use clap::ValueEnum;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::manifest;
use crate::runtime::{PolicyRuntime, RuntimeOptions, StaticNamespaces};
use crate::scenario::{revision_settings, Action, Expect, FlagKind, Scenario, Workload};
use crate::workload;
use revision_injector::admission::labels_of;
use revision_injector::revision::{
    served_names, serves_default, INJECTION_LABEL, NAMESPACE_NAME_LABEL, REV_LABEL,
};
use revision_injector::settings::Settings;

/// The annotation injection writes with the revision that injected the pod.
const REV_ANNOTATION: &str = "istio.io/rev";
const STATUS_ANNOTATION: &str = "sidecar.istio.io/status";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

/// Arguments of `revinject upgrade`.
#[derive(Debug, Clone, clap::Args)]
pub struct UpgradeArgs {
    /// The scenario (YAML): namespaces, workloads, revisions, steps.
    pub scenario: PathBuf,
    #[arg(long, value_enum, default_value = "text")]
    pub output: OutputFormat,
    /// The policy module.
    #[arg(long, default_value = "policy.wasm")]
    pub policy: PathBuf,
}

/// The pod a workload currently runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    /// `namespace/workload`.
    pub pod: String,
    /// The revision it runs on; `None` when no revision injected it.
    pub revision: Option<String>,
    /// Every revision whose webhook mutated it, in call order.
    pub injected_by: Vec<String>,
    /// Why its creation was refused, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
    /// `start` or `step N`.
    pub created_at: String,
}

impl Pod {
    /// What `expect.pods` compares with: the revision, `none` or `rejected`.
    pub fn state(&self) -> &str {
        match (&self.rejected, &self.revision) {
            (Some(_), _) => "rejected",
            (None, Some(r)) => r,
            (None, None) => "none",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flag {
    pub kind: FlagKind,
    /// A pod (`namespace/workload`) or a namespace.
    pub subject: String,
    pub message: String,
    /// Listed in the step's `expect.flags`.
    pub expected: bool,
}

/// The state after one step.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// 0 for the initial creation.
    pub index: usize,
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub pods: Vec<Pod>,
    pub flags: Vec<Flag>,
    /// Failed expectations (unexpected flags are marked on the flags themselves).
    pub failures: Vec<String>,
}

impl StepReport {
    pub fn ok(&self) -> bool {
        self.failures.is_empty() && self.flags.iter().all(|f| f.expected)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub ok: bool,
    pub steps: Vec<StepReport>,
}

/// The simulated cluster.
pub struct Rehearsal<'a> {
    runtime: &'a PolicyRuntime,
    scenario: &'a Scenario,
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// Installed revisions: name -> settings.
    revisions: BTreeMap<String, Value>,
    pods: BTreeMap<String, Pod>,
}

fn pod_key(w: &Workload) -> String {
    format!("{}/{}", w.namespace, w.name)
}

/// The Pod the API server would receive for a workload's pod template.
pub fn pod_for(w: &Workload) -> anyhow::Result<Value> {
    let api_version = match w.kind.as_str() {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => "apps/v1",
        "Job" | "CronJob" => "batch/v1",
        "ReplicationController" | "Pod" => "v1",
        other => bail!("workload {}: unsupported kind {other:?}", pod_key(w)),
    };
    let mut pod = if w.kind == "Pod" {
        let mut pod = w.template.clone();
        pod["apiVersion"] = json!("v1");
        pod["kind"] = json!("Pod");
        if !pod.get("metadata").is_some_and(Value::is_object) {
            pod["metadata"] = json!({});
        }
        pod["metadata"]["name"] = json!(w.name);
        pod
    } else {
        let spec = if w.kind == "CronJob" {
            json!({"jobTemplate": {"spec": {"template": w.template}}})
        } else {
            json!({"template": w.template})
        };
        let doc = json!({"apiVersion": api_version, "kind": w.kind,
            "metadata": {"name": w.name, "namespace": w.namespace}, "spec": spec});
        workload::to_pod(&doc).with_context(|| format!("workload {}", pod_key(w)))?
    };
    pod["metadata"]["namespace"] = json!(w.namespace);
    Ok(pod)
}

fn revision_of(pod: &Value, injected_by: &[String]) -> Option<String> {
    let annotation = |key: &str| {
        pod.pointer("/metadata/annotations")
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
    };
    if let Some(rev) = annotation(REV_ANNOTATION) {
        return Some(rev.to_string());
    }
    let from_status = annotation(STATUS_ANNOTATION)
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .and_then(|s| {
            s.get("revision")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
    from_status.or_else(|| injected_by.last().cloned())
}

fn show_labels(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

impl<'a> Rehearsal<'a> {
    /// Install the initial revisions and create every workload's pod.
    pub fn start(
        runtime: &'a PolicyRuntime,
        scenario: &'a Scenario,
    ) -> anyhow::Result<Rehearsal<'a>> {
        let mut r = Rehearsal {
            runtime,
            scenario,
            namespaces: scenario.namespaces.clone(),
            revisions: BTreeMap::new(),
            pods: BTreeMap::new(),
        };
        for (name, settings) in &scenario.revisions {
            r.install(name, settings)?;
        }
        for w in &scenario.workloads {
            let pod = r.create(w, "start")?;
            r.pods.insert(pod_key(w), pod);
        }
        Ok(r)
    }

    fn install(&mut self, name: &str, settings: &Value) -> anyhow::Result<()> {
        if self.revisions.contains_key(name) {
            bail!("revision {name} is already installed");
        }
        let settings = revision_settings(name, settings)?;
        self.check_settings(name, &settings)?;
        self.revisions.insert(name.to_string(), settings);
        Ok(())
    }

    fn check_settings(&self, name: &str, settings: &Value) -> anyhow::Result<()> {
        let (valid, message) = self.runtime.validate_settings(settings)?;
        if !valid {
            bail!(
                "revision {name}: invalid settings: {}",
                message.unwrap_or_default()
            );
        }
        Ok(())
    }

    /// Create the workload's pod now: every installed revision's webhook, in name order.
    fn create(&self, w: &Workload, when: &str) -> anyhow::Result<Pod> {
        let mut pod = pod_for(w)?;
        let host =
            StaticNamespaces::from_labels(self.namespaces.iter().map(|(k, v)| (k.as_str(), v)));
        let mut ns_labels = self
            .namespaces
            .get(&w.namespace)
            .cloned()
            .ok_or_else(|| anyhow!("namespace {} does not exist", w.namespace))?;
        ns_labels
            .entry(NAMESPACE_NAME_LABEL.to_string())
            .or_insert_with(|| w.namespace.clone());
        let key = pod_key(w);
        let mut injected_by = Vec::new();
        for (name, settings) in &self.revisions {
            let parsed =
                Settings::from_value(settings).map_err(|e| anyhow!("revision {name}: {e}"))?;
            let called = manifest::namespace_selector(&parsed).matches(&ns_labels)
                && manifest::object_selector().matches(&labels_of(&pod));
            if !called {
                continue;
            }
            let request =
                workload::admission_request(&format!("upgrade-{key}"), &w.namespace, &pod);
            let response = self
                .runtime
                .admission_response(&request, settings, &host)
                .with_context(|| format!("creating pod {key} through revision {name}"))?;
            if !response.allowed {
                let message = response.status.and_then(|s| s.message).unwrap_or_default();
                return Ok(Pod {
                    pod: key,
                    revision: None,
                    injected_by,
                    rejected: Some(format!("revision {name}: {message}")),
                    created_at: when.to_string(),
                });
            }
            if response.patch.is_some() {
                pod = response.patched_object(&pod)?;
                injected_by.push(name.clone());
            }
        }
        Ok(Pod {
            pod: key,
            revision: if injected_by.is_empty() {
                None
            } else {
                revision_of(&pod, &injected_by)
            },
            injected_by,
            rejected: None,
            created_at: when.to_string(),
        })
    }

    fn restart(
        &mut self,
        namespace: &str,
        workload: Option<&str>,
        when: &str,
    ) -> anyhow::Result<()> {
        let scenario = self.scenario;
        for w in &scenario.workloads {
            if w.namespace == namespace && workload.is_none_or(|n| n == w.name) {
                let pod = self.create(w, when)?;
                self.pods.insert(pod_key(w), pod);
            }
        }
        Ok(())
    }

    /// Apply one step's action.
    pub fn apply(&mut self, action: &Action, when: &str) -> anyhow::Result<()> {
        match action {
            Action::Install(i) => self.install(&i.name, &i.settings)?,
            Action::Remove(name) => {
                if self.revisions.remove(name).is_none() {
                    bail!("revision {name} is not installed");
                }
            }
            Action::MoveTag(m) => {
                if !self.revisions.contains_key(&m.to) {
                    bail!(
                        "cannot move tag {} to {}: that revision is not installed",
                        m.tag,
                        m.to
                    );
                }
                for (name, settings) in self.revisions.iter_mut() {
                    let mut tags: Vec<String> = settings
                        .get("tags")
                        .and_then(Value::as_array)
                        .map(|t| {
                            t.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_string)
                                .collect()
                        })
                        .unwrap_or_default();
                    tags.retain(|t| t != &m.tag);
                    if name == &m.to {
                        tags.push(m.tag.clone());
                    }
                    settings["tags"] = json!(tags);
                }
                let settings = self.revisions.get(&m.to).cloned().unwrap_or_default();
                self.check_settings(&m.to, &settings)?;
            }
            Action::Relabel(r) => {
                let labels = self
                    .namespaces
                    .get_mut(&r.namespace)
                    .ok_or_else(|| anyhow!("namespace {} does not exist", r.namespace))?;
                for k in &r.remove {
                    labels.remove(k);
                }
                labels.extend(r.set.clone());
            }
            Action::Restart(r) => self.restart(&r.namespace, r.workload.as_deref(), when)?,
            Action::Rollback(r) => {
                let initial = self
                    .scenario
                    .namespaces
                    .get(&r.namespace)
                    .cloned()
                    .ok_or_else(|| anyhow!("namespace {} does not exist", r.namespace))?;
                self.namespaces.insert(r.namespace.clone(), initial);
                self.restart(&r.namespace, None, when)?;
            }
        }
        Ok(())
    }

    /// Everything worth a warning in the current state.
    pub fn flags(&self) -> anyhow::Result<Vec<Flag>> {
        let mut flags = Vec::new();
        let mut raise = |kind, subject: &str, message: String| {
            flags.push(Flag {
                kind,
                subject: subject.to_string(),
                message,
                expected: false,
            })
        };
        let parsed: Vec<Settings> = self
            .revisions
            .values()
            .map(Settings::from_value)
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow!(e))?;
        let served: BTreeSet<String> = parsed.iter().flat_map(served_names).collect();
        let has_default = parsed.iter().any(serves_default);
        for (ns, labels) in &self.namespaces {
            let injection = labels.get(INJECTION_LABEL);
            let rev = labels.get(REV_LABEL);
            if let (Some(i), Some(r)) = (injection, rev) {
                raise(
                    FlagKind::ConflictingLabels,
                    ns,
                    format!(
                        "namespace {ns} has both {INJECTION_LABEL}={i} and {REV_LABEL}={r}: \
                         {INJECTION_LABEL} wins (IST0123); `kubectl label namespace {ns} {INJECTION_LABEL}-`"
                    ),
                );
            }
            match (injection.map(String::as_str), rev) {
                (None, Some(r)) if !served.contains(r) => raise(
                    FlagKind::UnknownRevision,
                    ns,
                    format!("namespace {ns} is labelled {REV_LABEL}={r}, which no installed revision serves: its new pods are not injected"),
                ),
                (Some("enabled"), _) if !has_default => raise(
                    FlagKind::UnknownRevision,
                    ns,
                    format!("namespace {ns} is labelled {INJECTION_LABEL}=enabled but no installed revision is the default: its new pods are not injected"),
                ),
                _ => {}
            }
        }
        for w in &self.scenario.workloads {
            let Some(pod) = self.pods.get(&pod_key(w)) else {
                continue;
            };
            let key = &pod.pod;
            if let Some(why) = &pod.rejected {
                raise(
                    FlagKind::Rejected,
                    key,
                    format!("pod {key} could not be created: {why}"),
                );
                continue;
            }
            if pod.injected_by.len() > 1 {
                raise(
                    FlagKind::DoubleInjection,
                    key,
                    format!(
                        "pod {key} was injected by {}",
                        pod.injected_by.join(" and ")
                    ),
                );
            }
            let removed = pod
                .revision
                .as_ref()
                .filter(|r| !self.revisions.contains_key(*r));
            if let Some(r) = removed {
                raise(
                    FlagKind::RemovedRevision,
                    key,
                    format!("pod {key} still runs on revision {r}, which is no longer installed: restart it"),
                );
            }
            let fresh = self.create(w, "now")?;
            if let Some(why) = &fresh.rejected {
                raise(
                    FlagKind::Rejected,
                    key,
                    format!("a new pod {key} would be refused: {why}"),
                );
                continue;
            }
            let doubled = fresh.injected_by.len() > 1;
            if doubled && pod.injected_by.len() <= 1 {
                raise(
                    FlagKind::DoubleInjection,
                    key,
                    format!(
                        "a new pod {key} would be injected by {}",
                        fresh.injected_by.join(" and ")
                    ),
                );
            }
            // A removed revision or a looming double injection already says why to act.
            if removed.is_none() && !doubled && fresh.revision != pod.revision {
                let show =
                    |r: &Option<String>| r.clone().unwrap_or_else(|| "no revision".to_string());
                let labels = self
                    .namespaces
                    .get(&w.namespace)
                    .map(show_labels)
                    .unwrap_or_default();
                raise(
                    FlagKind::Stale,
                    key,
                    format!(
                        "pod {key} runs on {} but a new pod would run on {} (namespace labels: {}): \
                         webhooks act on CREATE only, restart it",
                        show(&pod.revision),
                        show(&fresh.revision),
                        if labels.is_empty() { "none".to_string() } else { labels }
                    ),
                );
            }
        }
        Ok(flags)
    }

    /// The report of the current state against `expect`.
    pub fn report(
        &self,
        index: usize,
        action: String,
        note: Option<String>,
        expect: Option<&Expect>,
    ) -> anyhow::Result<StepReport> {
        let mut flags = self.flags()?;
        let empty = Expect::default();
        let expect = expect.unwrap_or(&empty);
        let matches = |e: &crate::scenario::ExpectedFlag, f: &Flag| {
            e.kind == f.kind && e.subject.as_ref().is_none_or(|s| s == &f.subject)
        };
        for f in &mut flags {
            f.expected = expect.flags.iter().any(|e| matches(e, f));
        }
        let mut failures = Vec::new();
        for e in &expect.flags {
            if !flags.iter().any(|f| matches(e, f)) {
                let subject = e.subject.as_deref().unwrap_or("(any)");
                failures.push(format!(
                    "expected flag {} {subject} was not raised",
                    e.kind.name()
                ));
            }
        }
        for (key, want) in &expect.pods {
            match self.pods.get(key) {
                Some(pod) if pod.state() == want => {}
                Some(pod) => failures.push(format!(
                    "pod {key} runs on {}, expected {want}",
                    pod.state()
                )),
                None => failures.push(format!("pod {key} does not exist")),
            }
        }
        Ok(StepReport {
            index,
            action,
            note,
            pods: self.pods.values().cloned().collect(),
            flags,
            failures,
        })
    }
}

/// Play the whole scenario.
pub fn rehearse(runtime: &PolicyRuntime, scenario: &Scenario) -> anyhow::Result<Report> {
    let mut r = Rehearsal::start(runtime, scenario).context("at the start")?;
    let mut steps = vec![r.report(
        0,
        "create the pods".to_string(),
        None,
        scenario.expect.as_ref(),
    )?];
    for (i, step) in scenario.steps.iter().enumerate() {
        let index = i + 1;
        let when = format!("step {index}");
        r.apply(&step.action, &when)
            .with_context(|| format!("step {index} ({})", step.action.describe()))?;
        steps.push(r.report(
            index,
            step.action.describe(),
            step.note.clone(),
            step.expect.as_ref(),
        )?);
    }
    Ok(Report {
        scenario: scenario.name.clone(),
        ok: steps.iter().all(StepReport::ok),
        steps,
    })
}

/// The text report.
pub fn render_text(report: &Report) -> String {
    let mut out = format!("Scenario: {}\n", report.scenario);
    for step in &report.steps {
        let title = if step.index == 0 {
            "start".to_string()
        } else {
            format!("step {}", step.index)
        };
        out.push_str(&format!("\n== {title}: {}\n", step.action));
        if let Some(note) = &step.note {
            out.push_str(&format!("   {}\n", note.trim()));
        }
        let width = step
            .pods
            .iter()
            .map(|p| p.pod.len())
            .max()
            .unwrap_or(3)
            .max(3);
        let rev_width = step
            .pods
            .iter()
            .map(|p| p.state().len())
            .max()
            .unwrap_or(8)
            .max(8);
        out.push_str(&format!(
            "   {:<width$}   {:<rev_width$}   INJECTED BY / CREATED\n",
            "POD", "REVISION"
        ));
        for p in &step.pods {
            let by = if p.injected_by.is_empty() {
                "-".to_string()
            } else {
                p.injected_by.join("+")
            };
            out.push_str(&format!(
                "   {:<width$}   {:<rev_width$}   {by} / {}\n",
                p.pod,
                p.state(),
                p.created_at
            ));
        }
        for f in &step.flags {
            let tag = if f.expected { "expected" } else { "UNEXPECTED" };
            out.push_str(&format!(
                "   flag {} {} ({tag}): {}\n",
                f.kind.name(),
                f.subject,
                f.message
            ));
        }
        for failure in &step.failures {
            out.push_str(&format!("   FAILED: {failure}\n"));
        }
    }
    let failed: Vec<String> = report
        .steps
        .iter()
        .filter(|s| !s.ok())
        .map(|s| {
            if s.index == 0 {
                "start".to_string()
            } else {
                format!("step {}", s.index)
            }
        })
        .collect();
    if failed.is_empty() {
        out.push_str(&format!(
            "\nOK: {} steps, every flag expected.\n",
            report.steps.len().saturating_sub(1)
        ));
    } else {
        out.push_str(&format!("\nFAILED at {}\n", failed.join(", ")));
    }
    out
}

/// `revinject upgrade`: exit code 1 when a step fails.
pub fn run(args: &UpgradeArgs) -> anyhow::Result<ExitCode> {
    let scenario = Scenario::load(&args.scenario)?;
    let options = RuntimeOptions {
        guest_logs: false,
        ..RuntimeOptions::default()
    };
    let runtime = PolicyRuntime::load(&args.policy, &options)?;
    let report = rehearse(&runtime, &scenario)?;
    match args.output {
        OutputFormat::Text => print!("{}", render_text(&report)),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
