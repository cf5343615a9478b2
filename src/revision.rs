//! Which control plane revision injects a pod: Istio's webhook selectors, then its
//! `injectRequired` chain. Owned by the selection work (issue 3); this stub only
//! answers the plain cases so the rest of the pipeline can be exercised.

use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

use crate::settings::Settings;

/// The outcome of selection for one revision, as a value the policy, tests and CLI share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub inject: bool,
    /// The webhook rule or chain step that decided (`rev.namespace`, `namespace`, `hostNetwork`, ...).
    pub rule: String,
    /// Human-readable reason.
    pub reason: String,
    /// Admission warnings for the user (never rejections).
    pub warnings: Vec<String>,
}

/// Decide whether the revision configured in `settings` injects `pod` (a Pod object)
/// created in `namespace`, whose labels are `namespace_labels`.
pub fn decide(
    settings: &Settings,
    namespace: &str,
    namespace_labels: &BTreeMap<String, String>,
    pod: &Value,
) -> Decision {
    let _ = (namespace, pod);
    let rev = settings.revision_name();
    let inject = (settings.default_revision
        && namespace_labels.get("istio-injection").map(String::as_str) == Some("enabled"))
        || namespace_labels.get("istio.io/rev").map(String::as_str) == Some(rev);
    Decision {
        inject,
        rule: if inject {
            "namespace".into()
        } else {
            "none".into()
        },
        reason: String::new(),
        warnings: Vec::new(),
    }
}
