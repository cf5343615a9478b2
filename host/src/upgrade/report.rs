//! What `revinject upgrade` prints after each step, and the step's `expect` block checked.

use serde::Serialize;

use super::{Pod, Rehearsal};
use crate::scenario::{Expect, ExpectedFlag, FlagKind};

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

impl Rehearsal<'_> {
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
        let matches = |e: &ExpectedFlag, f: &Flag| {
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
        for (key, want) in &expect.sidecars {
            let got = match self.pods.get(key) {
                Some(pod) => pod.sidecar.as_ref().map_or("none".into(), |s| s.describe()),
                None => {
                    failures.push(format!("pod {key} does not exist"));
                    continue;
                }
            };
            if &got != want {
                failures.push(format!("pod {key} runs {got}, expected {want}"));
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
            "   {:<width$}   {:<rev_width$}   INJECTED BY / CREATED / SIDECAR\n",
            "POD", "REVISION"
        ));
        for p in &step.pods {
            let by = if p.injected_by.is_empty() {
                "-".to_string()
            } else {
                p.injected_by.join("+")
            };
            let sidecar = p.sidecar.as_ref().map_or("-".into(), |s| s.describe());
            out.push_str(&format!(
                "   {:<width$}   {:<rev_width$}   {by} / {} / {sidecar}\n",
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
