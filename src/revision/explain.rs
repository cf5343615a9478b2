//! The words around a decision: why an instance did not select a pod, and the admission
//! warnings. Every installed revision evaluates every pod, so each warning is emitted by one
//! instance only (the one the labels point at), not once per installed revision.

use super::{explicit_inject, served_names, serves_default, Inputs};
use super::{INJECTION_LABEL, INJECT_LABEL, REV_LABEL};
use crate::settings::Settings;
use crate::versions::{Behaviour, Change};

/// "revision canary (tags prod)", for reasons.
fn describe(settings: &Settings) -> String {
    let names = served_names(settings);
    match names.split_first() {
        Some((rev, tags)) if !tags.is_empty() => {
            format!("revision {rev} (tags {})", tags.join(", "))
        }
        _ => format!("revision {}", settings.revision_name()),
    }
}

/// Why none of this instance's webhooks selects the pod, in the reference's rule order.
pub(super) fn unselected_reason(settings: &Settings, input: &Inputs) -> String {
    let me = describe(settings);
    let pod_inject = input.pod.get(INJECT_LABEL).map(String::as_str);
    if pod_inject == Some("false") {
        return format!("the pod label {INJECT_LABEL}=false opts out of every webhook");
    }
    match (
        input.ns.get(INJECTION_LABEL).map(String::as_str),
        input.ns.get(REV_LABEL),
    ) {
        (Some("enabled"), _) => format!(
            "namespace label {INJECTION_LABEL}=enabled selects the default revision, not {me}"
        ),
        (Some(v), _) => format!("namespace label {INJECTION_LABEL}={v} turns injection off"),
        (None, Some(r)) => {
            let mut s =
                format!("namespace label {REV_LABEL}={r} selects another revision than {me}");
            if input.pod.contains_key(REV_LABEL) {
                s.push_str("; a pod's istio.io/rev does not override its namespace's");
            }
            s
        }
        (None, None) => match (input.pod.get(REV_LABEL), pod_inject) {
            (Some(r), _) => format!("pod label {REV_LABEL}={r} selects another revision than {me}"),
            (None, Some("true")) => {
                format!("pod label {INJECT_LABEL}=true selects the default revision, not {me}")
            }
            (None, Some(v)) => format!(
                "pod label {INJECT_LABEL}={v:?} selects no webhook (only \"true\" selects the \
                 default revision)"
            ),
            (None, None) if !serves_default(settings) => format!(
                "neither the namespace nor the pod carries {INJECTION_LABEL} or {REV_LABEL}; \
                 only the default revision can inject such pods, not {me}"
            ),
            (None, None) if !settings.enable_namespaces_by_default => format!(
                "neither the namespace nor the pod is labelled for injection \
                 ({INJECTION_LABEL}=enabled, {REV_LABEL} or {INJECT_LABEL}=true) and \
                 enableNamespacesByDefault is off"
            ),
            (None, None) => format!(
                "namespace {:?} is excluded from automatic injection (ignoredNamespaces)",
                input.namespace
            ),
        },
    }
}

/// Admission warnings this instance owes the user (see the module doc for who warns).
pub(super) fn warnings(settings: &Settings, input: &Inputs, selected: bool) -> Vec<String> {
    let mut out = Vec::new();
    let injection = input.ns.get(INJECTION_LABEL);
    let rev = input.ns.get(REV_LABEL);
    if let (Some(inj), Some(rev)) = (injection, rev) {
        // The instance that wins (default) or, when nobody injects, the one that was named.
        let (mine, outcome) = if inj == "enabled" {
            (
                serves_default(settings),
                format!("the default revision injects its pods, not {rev}"),
            )
        } else {
            (
                served_names(settings).contains(rev),
                "no revision injects its pods".to_string(),
            )
        };
        if mine {
            out.push(format!(
                "namespace {:?} has both {INJECTION_LABEL}={inj} and {REV_LABEL}={rev}: \
                 {INJECTION_LABEL} wins, so {outcome}; remove one of the labels (IST0123)",
                input.namespace
            ));
        }
    }
    // A pod asking for a revision its namespace overrides (istio/istio#37088) is told so by
    // the revision that selected it instead.
    if let Some(wanted) = input.pod.get(REV_LABEL) {
        if selected && !served_names(settings).contains(wanted) {
            let by = match (injection, rev) {
                (Some(inj), _) => format!("{INJECTION_LABEL}={inj}"),
                (None, Some(r)) => format!("{REV_LABEL}={r}"),
                (None, None) => "its labels".to_string(),
            };
            out.push(format!(
                "the pod label {REV_LABEL}={wanted} is ignored: namespace {:?} selects revision \
                 {} by {by}, and a pod cannot override its namespace's revision",
                input.namespace,
                settings.revision_name()
            ));
        }
    }
    // Pod-level warnings come from the instance that evaluated the pod or, when no revision
    // label points anywhere, from the default revision (whose `object` webhook the label feeds).
    let claimed = injection.is_some() || rev.is_some() || input.pod.contains_key(REV_LABEL);
    if !(selected || (!claimed && serves_default(settings))) {
        return out;
    }
    let label = input.pod.get(INJECT_LABEL);
    let annotation = input.inject_annotation.as_ref();
    match (label, annotation) {
        (None, Some(a)) => {
            let note = reading(a, settings.behaviour())
                .map(|r| format!("; {a:?} {r}"))
                .unwrap_or_default();
            out.push(format!(
                "the annotation {INJECT_LABEL}={a:?} is deprecated: use the pod label of the same \
                 name, which webhooks also select on (IST0135){note}"
            ));
        }
        (Some(l), Some(a)) if l != a => out.push(format!(
            "the pod label {INJECT_LABEL}={l:?} overrides the annotation {INJECT_LABEL}={a:?}"
        )),
        _ => {}
    }
    if let Some((v, r)) = label.and_then(|v| Some((v, reading(v, settings.behaviour())?))) {
        out.push(format!("the pod label {INJECT_LABEL}={v:?} {r}"));
    }
    out
}

/// How the injector reads a `sidecar.istio.io/inject` value that is not exactly `true` or
/// `false` (R20), as the end of a warning; `None` when there is nothing to say.
fn reading(value: &str, behaviour: Behaviour) -> Option<String> {
    if value == "true" || value == "false" {
        return None;
    }
    if behaviour.has(Change::InjectExactBool) {
        return Some("is ignored: only \"true\" and \"false\" are accepted".to_string());
    }
    let meaning = match explicit_inject(value, behaviour)? {
        true => "true",
        false => "false (do not inject)",
    };
    Some(format!(
        "is read as {meaning}: this Istio version reads y, yes, true and on (in any case) as \
         true and any other non-empty value as false; write \"true\" or \"false\", the only \
         values Istio 1.27 and later accept"
    ))
}
