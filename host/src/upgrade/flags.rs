//! The flags of a rehearsal's state: what an operator must act on before the next step.

use anyhow::anyhow;
use std::collections::BTreeSet;

use super::report::Flag;
use super::{pod_key, show_labels, Rehearsal};
use crate::scenario::FlagKind;
use revision_injector::revision::{served_names, serves_default, INJECTION_LABEL, REV_LABEL};
use revision_injector::settings::Settings;

impl Rehearsal<'_> {
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
}
