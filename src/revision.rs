//! Which control plane revision injects a pod (reference sections 1 and 2).
//!
//! One policy instance is one revision's injector. Selection runs in two stages, as in Istio:
//! the API server's webhook selectors ([`WEBHOOKS`], evaluated as LabelSelectors over the
//! namespace's and the pod's labels, for the revision and each tag it serves), then the
//! injector's own `injectRequired` chain ([`crate::revision::decide`]'s second half).
//! The result is a [`Decision`] value shared by the policy, the tests and `revinject check`.

use crate::json::Path;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

use crate::json::labels_of;
use crate::selector::{validate_dns_label, LabelSelector, Operator, Requirement};
use crate::settings::{InjectPolicy, Settings};
use crate::versions::{Behaviour, Change};

mod explain;
#[cfg(test)]
mod tests;

pub const INJECTION_LABEL: &str = "istio-injection";
pub const REV_LABEL: &str = "istio.io/rev";
pub const INJECT_LABEL: &str = "sidecar.istio.io/inject";
/// Set on every Namespace by the API server; Istio's `auto` webhook selects on it.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The outcome of selection for one revision, as a value the policy, tests and CLI share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub inject: bool,
    /// What decided: the webhook when the pod is injected (`rev.namespace (tag prod)`,
    /// `namespace`, ...), the chain step that skipped it (`hostNetwork`, `ignoredNamespace`,
    /// `podLabel`, `podAnnotation`, `neverInjectSelector`, `policy`), or `none`.
    pub rule: String,
    /// Human-readable reason.
    pub reason: String,
    /// Admission warnings for the user (never rejections).
    pub warnings: Vec<String>,
    /// The revision this policy instance injects for.
    pub revision: String,
    /// The Istio version whose injector this instance reproduces (`istioVersion`).
    #[serde(rename = "istioVersion")]
    pub istio_version: String,
    /// The webhook of this instance that selected the pod, if any (even when the chain skipped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
}

/// A value in a webhook selector template.
#[derive(Debug, Clone, Copy)]
enum Val {
    Lit(&'static str),
    /// The revision or tag name the webhook is rendered for.
    Name,
    /// Every namespace of `ignoredNamespaces`.
    Ignored,
}

#[derive(Debug)]
struct Expr {
    key: &'static str,
    op: Operator,
    values: &'static [Val],
}

/// Which injectors render a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Rendered for the revision and for every tag.
    EveryName,
    /// Rendered by the default revision (or the `default` tag) only.
    Default,
    /// Default only, and only with `enableNamespacesByDefault`.
    DefaultAuto,
}

/// One row of Istio's webhook table (`mutatingwebhook.yaml`, `revision-tags-mwc.yaml`).
#[derive(Debug)]
pub struct WebhookTemplate {
    pub name: &'static str,
    scope: Scope,
    namespace: &'static [Expr],
    object: &'static [Expr],
}

const fn e(key: &'static str, op: Operator, values: &'static [Val]) -> Expr {
    Expr { key, op, values }
}

const ABSENT: &[Val] = &[];
const NOT_FALSE: Expr = e(INJECT_LABEL, Operator::NotIn, &[Val::Lit("false")]);

/// Reference section 1, row for row.
pub const WEBHOOKS: [WebhookTemplate; 5] = [
    WebhookTemplate {
        name: "rev.namespace",
        scope: Scope::EveryName,
        namespace: &[
            e(REV_LABEL, Operator::In, &[Val::Name]),
            e(INJECTION_LABEL, Operator::DoesNotExist, ABSENT),
        ],
        object: &[NOT_FALSE],
    },
    WebhookTemplate {
        name: "rev.object",
        scope: Scope::EveryName,
        namespace: &[
            e(REV_LABEL, Operator::DoesNotExist, ABSENT),
            e(INJECTION_LABEL, Operator::DoesNotExist, ABSENT),
        ],
        object: &[NOT_FALSE, e(REV_LABEL, Operator::In, &[Val::Name])],
    },
    WebhookTemplate {
        name: "namespace",
        scope: Scope::Default,
        namespace: &[e(INJECTION_LABEL, Operator::In, &[Val::Lit("enabled")])],
        object: &[NOT_FALSE],
    },
    WebhookTemplate {
        name: "object",
        scope: Scope::Default,
        namespace: &[
            e(INJECTION_LABEL, Operator::DoesNotExist, ABSENT),
            e(REV_LABEL, Operator::DoesNotExist, ABSENT),
        ],
        object: &[
            e(INJECT_LABEL, Operator::In, &[Val::Lit("true")]),
            e(REV_LABEL, Operator::DoesNotExist, ABSENT),
        ],
    },
    WebhookTemplate {
        name: "auto",
        scope: Scope::DefaultAuto,
        namespace: &[
            e(INJECTION_LABEL, Operator::DoesNotExist, ABSENT),
            e(REV_LABEL, Operator::DoesNotExist, ABSENT),
            e(NAMESPACE_NAME_LABEL, Operator::NotIn, &[Val::Ignored]),
        ],
        object: &[
            e(INJECT_LABEL, Operator::DoesNotExist, ABSENT),
            e(REV_LABEL, Operator::DoesNotExist, ABSENT),
        ],
    },
];

/// A webhook as rendered for one name (revision or tag) of this instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    /// Display name: `rev.namespace`, `rev.object (tag prod)`, `namespace`, ...
    pub name: String,
    pub namespace_selector: LabelSelector,
    pub object_selector: LabelSelector,
}

/// True when this instance answers for the default revision: revision `""`/`default`,
/// `defaultRevision: true`, or a `default` tag (Istio renders the default-only webhooks then).
pub fn serves_default(settings: &Settings) -> bool {
    settings.default_revision
        || settings.revision_name() == "default"
        || settings.tags.iter().any(|t| t == "default")
}

/// The `istio.io/rev` values this instance answers: its revision, its tags, and `default`.
pub fn served_names(settings: &Settings) -> Vec<String> {
    let mut names = vec![settings.revision_name().to_string()];
    let default = serves_default(settings).then(|| "default".to_string());
    for n in settings.tags.iter().cloned().chain(default) {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names
}

/// Every webhook this instance renders, in evaluation order.
pub fn webhooks(settings: &Settings) -> Vec<Webhook> {
    let revision = settings.revision_name();
    let mut out = Vec::new();
    for name in served_names(settings) {
        for t in WEBHOOKS.iter().filter(|t| t.scope == Scope::EveryName) {
            let display = if name == revision {
                t.name.to_string()
            } else {
                format!("{} (tag {name})", t.name)
            };
            out.push(render(t, display, &name, settings));
        }
    }
    if serves_default(settings) {
        for t in &WEBHOOKS {
            let wanted = match t.scope {
                Scope::EveryName => false,
                Scope::Default => true,
                Scope::DefaultAuto => settings.enable_namespaces_by_default,
            };
            if wanted {
                out.push(render(t, t.name.to_string(), "default", settings));
            }
        }
    }
    out
}

fn render(t: &WebhookTemplate, display: String, name: &str, settings: &Settings) -> Webhook {
    let selector = |exprs: &[Expr]| {
        LabelSelector::from_requirements(
            exprs
                .iter()
                .map(|x| Requirement {
                    key: x.key.to_string(),
                    operator: x.op,
                    values: x
                        .values
                        .iter()
                        .flat_map(|v| match v {
                            Val::Lit(s) => vec![s.to_string()],
                            Val::Name => vec![name.to_string()],
                            Val::Ignored => settings.ignored_namespaces.clone(),
                        })
                        .collect(),
                })
                .collect(),
        )
    };
    Webhook {
        name: display,
        namespace_selector: selector(t.namespace),
        object_selector: selector(t.object),
    }
}

/// Settings checks selection needs: names that end up in labels and Service names.
pub fn validate_settings(settings: &Settings) -> Result<(), String> {
    if !settings.revision.is_empty() {
        validate_dns_label(&settings.revision)
            .map_err(|e| format!("revision {:?}: {e}", settings.revision))?;
    }
    for (i, tag) in settings.tags.iter().enumerate() {
        validate_dns_label(tag).map_err(|e| format!("tags[{i}] {tag:?}: {e}"))?;
        if tag == settings.revision_name() {
            return Err(format!("tags[{i}] {tag:?}: is the revision itself"));
        }
        if settings.tags.iter().take(i).any(|t| t == tag) {
            return Err(format!("tags[{i}] {tag:?}: listed twice"));
        }
    }
    for (i, ns) in settings.ignored_namespaces.iter().enumerate() {
        validate_dns_label(ns).map_err(|e| format!("ignoredNamespaces[{i}] {ns:?}: {e}"))?;
    }
    validate_dns_label(&settings.istio_namespace)
        .map_err(|e| format!("istioNamespace {:?}: {e}", settings.istio_namespace))
}

/// The labels and annotations selection reads.
struct Inputs<'a> {
    namespace: &'a str,
    /// Namespace labels, with `kubernetes.io/metadata.name` as the API server sets it.
    ns: BTreeMap<String, String>,
    pod: BTreeMap<String, String>,
    /// The deprecated `sidecar.istio.io/inject` annotation (the only one selection reads).
    inject_annotation: Option<String>,
    host_network: bool,
}

/// Decide whether the revision configured in `settings` injects `pod` (a Pod object)
/// created in `namespace`, whose labels are `namespace_labels`.
pub fn decide(
    settings: &Settings,
    namespace: &str,
    namespace_labels: &BTreeMap<String, String>,
    pod: &Value,
) -> Decision {
    let mut ns = namespace_labels.clone();
    ns.entry(NAMESPACE_NAME_LABEL.to_string())
        .or_insert_with(|| namespace.to_string());
    let inject_annotation = pod
        .at(&["metadata", "annotations"])
        .and_then(|a| a.get(INJECT_LABEL))
        .and_then(Value::as_str)
        .map(str::to_string);
    let input = Inputs {
        namespace,
        ns,
        pod: labels_of(pod),
        inject_annotation,
        host_network: pod.at(&["spec", "hostNetwork"]) == Some(&Value::Bool(true)),
    };
    let matched = webhooks(settings)
        .into_iter()
        .find(|w| w.namespace_selector.matches(&input.ns) && w.object_selector.matches(&input.pod));
    let warnings = explain::warnings(settings, &input, matched.is_some());
    let revision = settings.revision_name().to_string();
    let Some(webhook) = matched else {
        return Decision {
            inject: false,
            rule: "none".into(),
            reason: explain::unselected_reason(settings, &input),
            warnings,
            revision,
            istio_version: settings.istio_version.to_string(),
            webhook: None,
        };
    };
    let (inject, step, why) = inject_required(settings, &input);
    let selected = [
        "selected by webhook ",
        &webhook.name,
        " of revision ",
        &revision,
    ]
    .concat();
    Decision {
        inject,
        rule: step.map_or_else(|| webhook.name.clone(), str::to_string),
        reason: [selected.as_str(), "; ", &why].concat(),
        warnings,
        revision,
        istio_version: settings.istio_version.to_string(),
        webhook: Some(webhook.name),
    }
}

/// How this version's `injectRequired` reads a `sidecar.istio.io/inject` value (R20):
/// `Some(inject)` decides, `None` leaves it to the selectors and the policy. Up to 1.26 the
/// value is lower-cased and `y`/`yes`/`true`/`on` inject, `""` is undecided and anything else
/// skips; from 1.27 only exact `true`/`false` decide.
pub fn explicit_inject(value: &str, behaviour: Behaviour) -> Option<bool> {
    if behaviour.has(Change::InjectExactBool) {
        return match value {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        };
    }
    match value.to_lowercase().as_str() {
        "y" | "yes" | "true" | "on" => Some(true),
        "" => None,
        _ => Some(false),
    }
}

/// Istio's `injectRequired`, in order: (inject, the skipping step if any, why).
fn inject_required(settings: &Settings, input: &Inputs) -> (bool, Option<&'static str>, String) {
    if input.host_network {
        return (
            false,
            Some("hostNetwork"),
            "the pod uses the host network".into(),
        );
    }
    if settings
        .ignored_namespaces
        .iter()
        .any(|n| n == input.namespace)
    {
        return (
            false,
            Some("ignoredNamespace"),
            format!("namespace {:?} is in ignoredNamespaces", input.namespace),
        );
    }
    let explicit = match input.pod.get(INJECT_LABEL) {
        Some(v) => Some(("podLabel", "label", v)),
        None => input
            .inject_annotation
            .as_ref()
            .map(|v| ("podAnnotation", "annotation", v)),
    };
    if let Some((step, what, v)) = explicit {
        let shown = if v == "true" || v == "false" {
            format!("pod {what} {INJECT_LABEL}={v}")
        } else {
            format!("pod {what} {INJECT_LABEL}={v:?}")
        };
        match explicit_inject(v, settings.behaviour()) {
            Some(true) => return (true, None, shown),
            Some(false) => return (false, Some(step), shown),
            None => {} // undecided (warned about when not ""): falls through to the defaults
        }
    }
    let active = |list: &[LabelSelector]| {
        // Istio skips empty selectors here rather than letting them match everything.
        list.iter()
            .position(|s| !s.is_empty() && s.matches(&input.pod))
    };
    if let Some(i) = active(&settings.never_inject_selector) {
        return (
            false,
            Some("neverInjectSelector"),
            format!("the pod's labels match neverInjectSelector[{i}]"),
        );
    }
    if let Some(i) = active(&settings.always_inject_selector) {
        return (
            true,
            None,
            format!("the pod's labels match alwaysInjectSelector[{i}]"),
        );
    }
    match settings.policy {
        InjectPolicy::Enabled => (true, None, "policy is enabled".into()),
        InjectPolicy::Disabled => (
            false,
            Some("policy"),
            format!("policy is disabled and the pod does not set {INJECT_LABEL}=true"),
        ),
    }
}
