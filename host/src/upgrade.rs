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
//! After every step the state is checked for flags ([`FlagKind`](crate::scenario::FlagKind)) and against the step's
//! `expect` block; a flag the scenario does not expect, or a failed expectation, fails it.

use anyhow::{anyhow, bail, Context as _};
use clap::ValueEnum;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::manifest;
use crate::runtime::{PolicyRuntime, RuntimeOptions, StaticNamespaces};
use crate::scenario::{revision_settings, Action, Scenario, Workload};
use crate::workload;
use revision_injector::json::labels_of;
use revision_injector::revision::NAMESPACE_NAME_LABEL;
use revision_injector::settings::Settings;

mod flags;
mod report;

pub use report::{render_text, Flag, Report, StepReport};

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
    /// Its `istio-proxy`: the image and whether it is a native sidecar (each revision injects
    /// its own Istio version's sidecar).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sidecar: Option<Sidecar>,
    /// `start` or `step N`.
    pub created_at: String,
}

/// The proxy a pod runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sidecar {
    pub image: String,
    pub native: bool,
}

impl Sidecar {
    /// The `istio-proxy` container of an injected pod, if it has one.
    fn of(pod: &Value) -> Option<Sidecar> {
        let find = |list: &str| {
            pod.pointer(&format!("/spec/{list}"))
                .and_then(Value::as_array)?
                .iter()
                .find(|c| c.get("name").and_then(Value::as_str) == Some("istio-proxy"))
                .cloned()
        };
        let (proxy, native) = match find("initContainers") {
            Some(c) => (c, true),
            None => (find("containers")?, false),
        };
        let image = proxy.get("image").and_then(Value::as_str).unwrap_or("");
        Some(Sidecar {
            image: image.to_string(),
            native,
        })
    }

    /// `<image> (native)` or `<image> (classic)`: what `expect.sidecars` compares with.
    pub fn describe(&self) -> String {
        let mode = if self.native { "native" } else { "classic" };
        format!("{} ({mode})", self.image)
    }
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
                    sidecar: None,
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
            sidecar: if injected_by.is_empty() {
                None
            } else {
                Sidecar::of(&pod)
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
