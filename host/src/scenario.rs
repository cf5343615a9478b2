//! The scenario file `revinject upgrade` rehearses: namespaces, workloads, the revisions
//! installed at the start, and steps, each optionally followed by what to expect.
//!
//! ```yaml
//! name: canary upgrade
//! namespaces: {frontend: {istio.io/rev: asm-1233-2}}
//! revisions: {asm-1233-2: {defaultRevision: true}}     # name -> policy settings
//! workloads:
//!   - {name: web, namespace: frontend, template: {spec: {containers: [{name: web, image: nginx}]}}}
//! expect: {pods: {frontend/web: asm-1233-2}}           # after the initial creation
//! steps:
//!   - install: {name: asm-1240-1, settings: {}}
//!   - relabel: {namespace: frontend, set: {istio.io/rev: asm-1240-1}, remove: [istio-injection]}
//!     expect: {flags: [{kind: stale, subject: frontend/web}]}
//!   - restart: {namespace: frontend}                    # or {namespace: frontend, workload: web}
//!   - moveTag: {tag: prod, to: asm-1240-1}
//!   - rollback: {namespace: frontend}                   # initial labels back, then restart
//!   - remove: asm-1233-2
//! ```

use anyhow::{anyhow, bail, Context as _};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// A whole scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Namespace name -> labels.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// Revisions installed at the start: name -> policy settings (`revision` defaults to the name).
    pub revisions: BTreeMap<String, Value>,
    pub workloads: Vec<Workload>,
    /// What to expect after the initial pod creation.
    #[serde(default)]
    pub expect: Option<Expect>,
    pub steps: Vec<Step>,
}

/// A workload whose pods are created at the start and at restarts.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Workload {
    pub name: String,
    pub namespace: String,
    /// Deployment (default), StatefulSet, DaemonSet, ReplicaSet, Job, CronJob,
    /// ReplicationController or Pod.
    #[serde(default = "deployment")]
    pub kind: String,
    /// The pod template (`metadata` and `spec`).
    pub template: Value,
}

fn deployment() -> String {
    "Deployment".to_string()
}

/// One step: an action and what to expect after it.
#[derive(Debug, Clone)]
pub struct Step {
    pub action: Action,
    pub note: Option<String>,
    pub expect: Option<Expect>,
}

/// What a step does.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// Install a revision's injector (its policy instance).
    Install(Install),
    /// Uninstall a revision's injector.
    Remove(String),
    /// Point a tag at another installed revision.
    MoveTag(MoveTag),
    /// Change a namespace's labels (pods are not recreated).
    Relabel(Relabel),
    /// Recreate the pods of a namespace, or of one workload.
    Restart(Restart),
    /// Give a namespace back its initial labels and restart its workloads.
    Rollback(Rollback),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Install {
    pub name: String,
    #[serde(default = "empty_map")]
    pub settings: Value,
}

fn empty_map() -> Value {
    Value::Object(Default::default())
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MoveTag {
    pub tag: String,
    pub to: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Relabel {
    pub namespace: String,
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Restart {
    pub namespace: String,
    #[serde(default)]
    pub workload: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rollback {
    pub namespace: String,
}

/// What must hold after a step.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Expect {
    /// `namespace/workload` -> the revision its pod runs on, `none` (not injected) or
    /// `rejected` (its creation was refused).
    #[serde(default)]
    pub pods: BTreeMap<String, String>,
    /// `namespace/workload` -> its proxy as `<image> (native)` or `<image> (classic)`, or
    /// `none`: each revision injects its own Istio version's sidecar.
    #[serde(default)]
    pub sidecars: BTreeMap<String, String>,
    /// The flags raised after the step; any other flag fails the scenario.
    #[serde(default)]
    pub flags: Vec<ExpectedFlag>,
}

/// A flag the scenario expects; without `subject`, any flag of that kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExpectedFlag {
    pub kind: FlagKind,
    #[serde(default)]
    pub subject: Option<String>,
}

/// What the rehearsal warns about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FlagKind {
    /// A pod was (or a new pod would be) mutated by more than one revision.
    DoubleInjection,
    /// A pod still runs on a revision that is no longer installed.
    RemovedRevision,
    /// A namespace has both `istio-injection` and `istio.io/rev` (IST0123).
    ConflictingLabels,
    /// A pod runs on another revision than a new pod would: it needs a restart.
    Stale,
    /// A namespace names a revision (or the default one) that no installed revision serves.
    UnknownRevision,
    /// The policy refused to create a pod.
    Rejected,
}

impl FlagKind {
    pub fn name(self) -> &'static str {
        match self {
            FlagKind::DoubleInjection => "doubleInjection",
            FlagKind::RemovedRevision => "removedRevision",
            FlagKind::ConflictingLabels => "conflictingLabels",
            FlagKind::Stale => "stale",
            FlagKind::UnknownRevision => "unknownRevision",
            FlagKind::Rejected => "rejected",
        }
    }
}

impl Step {
    /// A step is a map with exactly one action key, plus optional `expect` and `note`.
    fn from_value(value: &Value) -> Result<Step, String> {
        let map = value.as_object().ok_or("a step must be a map")?;
        let mut action = serde_json::Map::new();
        let mut expect = None;
        let mut note = None;
        for (k, v) in map {
            match k.as_str() {
                "expect" => {
                    expect = Some(
                        serde_json::from_value(v.clone()).map_err(|e| format!("expect: {e}"))?,
                    )
                }
                "note" => note = Some(v.as_str().ok_or("note: must be a string")?.to_string()),
                _ => {
                    action.insert(k.clone(), v.clone());
                }
            }
        }
        if action.len() != 1 {
            let keys: Vec<&String> = action.keys().collect();
            return Err(format!(
                "a step needs exactly one action (install, remove, moveTag, relabel, restart, \
                 rollback), got {keys:?}"
            ));
        }
        let action = serde_json::from_value(Value::Object(action)).map_err(|e| e.to_string())?;
        Ok(Step {
            action,
            note,
            expect,
        })
    }
}

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Step, D::Error> {
        let value = Value::deserialize(d)?;
        Step::from_value(&value).map_err(serde::de::Error::custom)
    }
}

impl Action {
    /// One line for the report.
    pub fn describe(&self) -> String {
        match self {
            Action::Install(i) => format!("install revision {}", i.name),
            Action::Remove(r) => format!("remove revision {r}"),
            Action::MoveTag(m) => format!("move tag {} to revision {}", m.tag, m.to),
            Action::Relabel(r) => {
                let mut parts: Vec<String> =
                    r.set.iter().map(|(k, v)| format!("{k}={v}")).collect();
                parts.extend(r.remove.iter().map(|k| format!("{k}-")));
                format!(
                    "kubectl label namespace {} {} --overwrite",
                    r.namespace,
                    parts.join(" ")
                )
            }
            Action::Restart(r) => match &r.workload {
                Some(w) => format!("restart {}/{w}", r.namespace),
                None => format!("restart the workloads of namespace {}", r.namespace),
            },
            Action::Rollback(r) => format!(
                "roll back namespace {}: initial labels, then restart",
                r.namespace
            ),
        }
    }
}

impl Scenario {
    /// Read and check a scenario file.
    pub fn load(path: &Path) -> anyhow::Result<Scenario> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Scenario::parse(&text).with_context(|| format!("invalid scenario {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Scenario> {
        let scenario: Scenario = serde_norway::from_str(text)?;
        scenario.check()?;
        Ok(scenario)
    }

    /// References between the parts: workloads in declared namespaces, unique names.
    fn check(&self) -> anyhow::Result<()> {
        let mut seen = std::collections::BTreeSet::new();
        for w in &self.workloads {
            if !self.namespaces.contains_key(&w.namespace) {
                bail!(
                    "workload {}: namespace {:?} is not declared",
                    w.name,
                    w.namespace
                );
            }
            if !seen.insert(format!("{}/{}", w.namespace, w.name)) {
                bail!("workload {}/{} is declared twice", w.namespace, w.name);
            }
            if !w.template.is_object() {
                bail!(
                    "workload {}/{}: template must be a map",
                    w.namespace,
                    w.name
                );
            }
        }
        for (i, step) in self.steps.iter().enumerate() {
            let ns = match &step.action {
                Action::Relabel(r) => Some(&r.namespace),
                Action::Restart(r) => Some(&r.namespace),
                Action::Rollback(r) => Some(&r.namespace),
                _ => None,
            };
            if let Some(ns) = ns.filter(|ns| !self.namespaces.contains_key(*ns)) {
                bail!("step {}: namespace {ns:?} is not declared", i + 1);
            }
            if let Action::Restart(Restart {
                namespace,
                workload: Some(w),
            }) = &step.action
            {
                if !seen.contains(&format!("{namespace}/{w}")) {
                    bail!("step {}: no workload {namespace}/{w}", i + 1);
                }
            }
        }
        let expects = self
            .expect
            .iter()
            .chain(self.steps.iter().filter_map(|s| s.expect.as_ref()));
        for expect in expects {
            if let Some(pod) = expect.pods.keys().find(|p| !seen.contains(*p)) {
                bail!("expect: no workload {pod} (pods are named namespace/workload)");
            }
        }
        Ok(())
    }
}

/// The settings of revision `name`: `revision` defaults to the name and must agree with it.
pub fn revision_settings(name: &str, settings: &Value) -> anyhow::Result<Value> {
    let mut settings = settings.clone();
    let map = settings
        .as_object_mut()
        .ok_or_else(|| anyhow!("revision {name}: settings must be a map"))?;
    let own = map.get("revision").and_then(Value::as_str).unwrap_or("");
    let own = if own.is_empty() { "default" } else { own };
    if map.contains_key("revision") && own != name {
        bail!("revision {name}: its settings say revision {own:?}");
    }
    if !map.contains_key("revision") && name != "default" {
        map.insert("revision".into(), Value::String(name.to_string()));
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "name: t\nnamespaces: {a: {}}\nrevisions: {r1: {}}\n\
        workloads: [{name: w, namespace: a, template: {spec: {containers: [{name: c, image: i}]}}}]\n";

    #[test]
    fn steps_take_one_action_and_an_expectation() {
        let s = Scenario::parse(&format!(
            "{BASE}steps:\n- relabel: {{namespace: a, set: {{istio.io/rev: r1}}}}\n  expect: {{pods: {{a/w: none}}, flags: [{{kind: stale, subject: a/w}}]}}\n- remove: r1\n"
        ))
        .unwrap();
        assert_eq!(s.steps.len(), 2);
        assert!(matches!(s.steps[0].action, Action::Relabel(_)));
        assert_eq!(
            s.steps[0].expect.as_ref().unwrap().flags[0].kind,
            FlagKind::Stale
        );
        assert_eq!(s.steps[1].action.describe(), "remove revision r1");
    }

    #[test]
    fn mistakes_are_named() {
        let two = Scenario::parse(&format!(
            "{BASE}steps:\n- remove: r1\n  restart: {{namespace: a}}\n"
        ));
        assert!(format!("{:#}", two.unwrap_err()).contains("exactly one action"));
        let ns = Scenario::parse(&format!("{BASE}steps:\n- restart: {{namespace: b}}\n"));
        assert!(format!("{:#}", ns.unwrap_err()).contains("\"b\""));
        let pod = Scenario::parse(&format!("{BASE}expect: {{pods: {{a/x: r1}}}}\nsteps: []\n"));
        assert!(format!("{:#}", pod.unwrap_err()).contains("a/x"));
        let typo = Scenario::parse(&format!(
            "{BASE}steps:\n- restart: {{namespace: a, workloads: w}}\n"
        ));
        assert!(format!("{:#}", typo.unwrap_err()).contains("workloads"));
    }

    #[test]
    fn revision_name_fills_and_must_match_settings() {
        assert_eq!(
            revision_settings("r1", &serde_json::json!({})).unwrap(),
            serde_json::json!({"revision": "r1"})
        );
        assert!(revision_settings("r1", &serde_json::json!({"revision": "r2"})).is_err());
        assert!(revision_settings("default", &serde_json::json!({"revision": ""})).is_ok());
    }
}
