//! `revinject manifest`: what to apply to a cluster for one revision's injector — the
//! Kubewarden `ClusterAdmissionPolicy` and, for a local policy-server, its `policies.yml` entry.
//!
//! The webhook's selectors only narrow which pods reach the policy; the policy decides. They
//! must therefore match every namespace and pod the revision could inject (reference section
//! 1): a LabelSelector cannot express "label absent OR equal to X", so for the `rev.object`,
//! `object` and `auto` webhooks, which select unlabelled namespaces by pod label, the only safe
//! namespace narrowing is to exclude what no webhook of the revision matches:
//! - the ignored namespaces (the injector skips them whatever the labels say);
//! - for a revision that does not serve the default: any `istio-injection` label (all its
//!   webhooks require `istio-injection DoesNotExist`), as Istio's own webhooks do;
//! - for the default revision: `istio-injection=disabled` (the `namespace` webhook wants
//!   `enabled`, the others want the label absent; other values cannot be listed).
//!
//! and every webhook's object selector requires `sidecar.istio.io/inject` not to be `false`.

use anyhow::{anyhow, bail};
use serde_json::{json, Value};
use std::path::PathBuf;

use crate::input::read_settings;
use revision_injector::revision::{
    serves_default, INJECTION_LABEL, INJECT_LABEL, NAMESPACE_NAME_LABEL,
};
use revision_injector::selector::{LabelSelector, Operator, Requirement};
use revision_injector::settings::Settings;

/// Where the policy is published when `--module` is not given.
pub const DEFAULT_MODULE: &str = "registry://ghcr.io/example/revision-injector:v0.1.0";

/// Arguments of `revinject manifest`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ManifestArgs {
    /// Settings of the revision's policy instance (YAML or JSON); the flags below override it.
    #[arg(value_name = "SETTINGS")]
    pub settings: Option<PathBuf>,
    /// The control plane revision (`revision`).
    #[arg(long)]
    pub revision: Option<String>,
    /// A revision tag pointing at this revision (repeatable; replaces the settings' `tags`).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// This revision is the default one (`defaultRevision: true`).
    #[arg(long)]
    pub default: bool,
    /// The policy module URI (`registry://...`, `https://...` or `file://...`).
    #[arg(long, default_value = DEFAULT_MODULE)]
    pub module: String,
    /// Also print the `policies.yml` entry for a local policy-server.
    #[arg(long)]
    pub policy_server: bool,
}

/// The settings the arguments describe, checked with the policy's own validation.
pub fn settings_from(args: &ManifestArgs) -> anyhow::Result<Value> {
    let mut settings = read_settings(args.settings.as_deref())?;
    let map = settings
        .as_object_mut()
        .ok_or_else(|| anyhow!("the settings must be a map"))?;
    if let Some(revision) = &args.revision {
        map.insert("revision".into(), json!(revision));
    }
    if !args.tags.is_empty() {
        map.insert("tags".into(), json!(args.tags));
    }
    if args.default {
        map.insert("defaultRevision".into(), json!(true));
    }
    let parsed = Settings::from_value(&settings).map_err(|e| anyhow!(e))?;
    if let Err(e) = revision_injector::admission::validate_settings(&parsed) {
        bail!("invalid settings: {e}");
    }
    Ok(settings)
}

/// The webhook `namespaceSelector`: every namespace the revision could inject in (module doc).
pub fn namespace_selector(settings: &Settings) -> LabelSelector {
    let mut requirements = Vec::new();
    if !settings.ignored_namespaces.is_empty() {
        requirements.push(Requirement {
            key: NAMESPACE_NAME_LABEL.to_string(),
            operator: Operator::NotIn,
            values: settings.ignored_namespaces.clone(),
        });
    }
    requirements.push(if serves_default(settings) {
        Requirement::new(INJECTION_LABEL, Operator::NotIn, &["disabled"])
    } else {
        Requirement::new(INJECTION_LABEL, Operator::DoesNotExist, &[])
    });
    LabelSelector::from_requirements(requirements)
}

/// The webhook `objectSelector`: every webhook of Istio's table excludes pods labelled
/// `sidecar.istio.io/inject=false`.
pub fn object_selector() -> LabelSelector {
    LabelSelector::from_requirements(vec![Requirement::new(
        INJECT_LABEL,
        Operator::NotIn,
        &["false"],
    )])
}

/// `istio-injector-<revision>`.
pub fn policy_name(settings: &Settings) -> String {
    format!("istio-injector-{}", settings.revision_name())
}

fn selector_json(selector: &LabelSelector) -> Value {
    let expressions: Vec<Value> = selector
        .match_expressions
        .iter()
        .map(|r| {
            let mut e = json!({"key": r.key, "operator": r.operator});
            if !r.values.is_empty() {
                e["values"] = json!(r.values);
            }
            e
        })
        .collect();
    let mut out = json!({});
    if !selector.match_labels.is_empty() {
        out["matchLabels"] = json!(selector.match_labels);
    }
    if !expressions.is_empty() {
        out["matchExpressions"] = json!(expressions);
    }
    out
}

fn context_aware_resources() -> Value {
    json!([{"apiVersion": "v1", "kind": "Namespace"}])
}

/// The `ClusterAdmissionPolicy` for `settings` (the embedded settings are `settings` as given).
pub fn cluster_admission_policy(settings: &Value, module: &str) -> anyhow::Result<Value> {
    let parsed = Settings::from_value(settings).map_err(|e| anyhow!(e))?;
    Ok(json!({
        "apiVersion": "policies.kubewarden.io/v1",
        "kind": "ClusterAdmissionPolicy",
        "metadata": {
            "name": policy_name(&parsed),
            "labels": {"istio.io/rev": parsed.revision_name()},
            "annotations": {
                "io.kubewarden.policy.title": "revision-injector",
                "io.kubewarden.policy.description": format!(
                    "Istio sidecar injection for control plane revision {}", parsed.revision_name()),
            },
        },
        "spec": {
            "module": module,
            "mode": "protect",
            "mutating": true,
            "backgroundAudit": false,
            "failurePolicy": "Fail",
            "rules": [{
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "operations": ["CREATE"],
                "resources": ["pods"],
            }],
            "contextAwareResources": context_aware_resources(),
            "namespaceSelector": selector_json(&namespace_selector(&parsed)),
            "objectSelector": selector_json(&object_selector()),
            "settings": settings,
        },
    }))
}

/// The `policies.yml` entry of a local policy-server: `{<name>: {module, ...}}`. The policy's
/// host capability (`kubernetes/get_resource` for Namespaces) is granted by
/// `contextAwareResources`.
pub fn policy_server_entry(settings: &Value, module: &str) -> anyhow::Result<Value> {
    let parsed = Settings::from_value(settings).map_err(|e| anyhow!(e))?;
    Ok(json!({
        policy_name(&parsed): {
            "module": module,
            "policyMode": "protect",
            "allowedToMutate": true,
            "contextAwareResources": context_aware_resources(),
            "settings": settings,
        }
    }))
}

/// Keys printed first, in this order, the way Kubernetes manifests are usually written; the
/// others follow alphabetically.
const KEY_ORDER: [&str; 12] = [
    "apiVersion",
    "kind",
    "name",
    "metadata",
    "module",
    "mode",
    "policyMode",
    "mutating",
    "allowedToMutate",
    "key",
    "operator",
    "values",
];

/// `value` as YAML with [`KEY_ORDER`] applied to every map (settings are left as given).
fn ordered(value: &Value) -> serde_norway::Value {
    match value {
        Value::Object(map) => {
            let rank = |k: &str| {
                KEY_ORDER
                    .iter()
                    .position(|o| *o == k)
                    .unwrap_or(KEY_ORDER.len())
            };
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|(a, _), (b, _)| (rank(a), *a).cmp(&(rank(b), *b)));
            let mut out = serde_norway::Mapping::new();
            for (k, v) in entries {
                let v = if k == "settings" {
                    serde_norway::to_value(v).unwrap_or(serde_norway::Value::Null)
                } else {
                    ordered(v)
                };
                out.insert(serde_norway::Value::String(k.clone()), v);
            }
            serde_norway::Value::Mapping(out)
        }
        Value::Array(items) => serde_norway::Value::Sequence(items.iter().map(ordered).collect()),
        other => serde_norway::to_value(other).unwrap_or(serde_norway::Value::Null),
    }
}

/// The `ClusterAdmissionPolicy` for `settings` as YAML, as `revinject manifest` prints it.
pub fn policy_yaml(settings: &Value, module: &str) -> anyhow::Result<String> {
    let policy = cluster_admission_policy(settings, module)?;
    Ok(serde_norway::to_string(&ordered(&policy))?)
}

/// The text `revinject manifest` prints: the policy, then (`--policy-server`) the entry.
pub fn render(args: &ManifestArgs) -> anyhow::Result<String> {
    let settings = settings_from(args)?;
    let mut out = policy_yaml(&settings, &args.module)?;
    if args.policy_server {
        out.push_str("---\n");
        let entry = policy_server_entry(&settings, &args.module)?;
        out.push_str(&serde_norway::to_string(&ordered(&entry))?);
    }
    Ok(out)
}

/// `revinject manifest`.
pub fn run(args: &ManifestArgs) -> anyhow::Result<()> {
    print!("{}", render(args)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use revision_injector::revision::{decide, REV_LABEL};
    use std::collections::BTreeMap;

    fn labels(pairs: &[(&str, Option<&str>)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_string(), v.to_string())))
            .collect()
    }

    /// Every namespace and pod label combination the policy's selection injects is matched
    /// by the selectors (checked natively here; `tests/operator.rs` checks through policy.wasm).
    #[test]
    fn selectors_never_exclude_an_injected_pod() {
        let variants = [
            json!({"revision": "canary", "tags": ["prod"]}),
            json!({}),
            json!({"revision": "asm-1240-1", "defaultRevision": true, "enableNamespacesByDefault": true}),
            json!({"revision": "canary", "ignoredNamespaces": ["tools"]}),
            json!({"revision": "canary", "tags": ["default"], "ignoredNamespaces": []}),
        ];
        let names = [
            None,
            Some("default"),
            Some("canary"),
            Some("prod"),
            Some("asm-1240-1"),
            Some("other"),
        ];
        for v in variants {
            let s = Settings::from_value(&v).unwrap();
            let (ns_sel, obj_sel) = (namespace_selector(&s), object_selector());
            let mut injected = 0;
            let mut excluded = 0;
            for ns_name in ["apps", "kube-system", "tools", "istio-system"] {
                for injection in [None, Some("enabled"), Some("disabled"), Some("x")] {
                    for ns_rev in names {
                        let mut ns = labels(&[(INJECTION_LABEL, injection), (REV_LABEL, ns_rev)]);
                        ns.insert(NAMESPACE_NAME_LABEL.into(), ns_name.into());
                        for inject in [None, Some("true"), Some("false"), Some("yes")] {
                            for pod_rev in names {
                                let pod_labels =
                                    labels(&[(INJECT_LABEL, inject), (REV_LABEL, pod_rev)]);
                                let pod = json!({"metadata": {"labels": pod_labels}, "spec": {"containers": []}});
                                let d = decide(&s, ns_name, &ns, &pod);
                                let passes = ns_sel.matches(&ns) && obj_sel.matches(&pod_labels);
                                if d.inject {
                                    injected += 1;
                                    assert!(
                                        passes,
                                        "{v}: {ns:?} {pod_labels:?} is injected but filtered out"
                                    );
                                } else if !passes {
                                    excluded += 1;
                                }
                            }
                        }
                    }
                }
            }
            assert!(
                injected > 0 && excluded > 0,
                "{v}: {injected} injected, {excluded} excluded"
            );
        }
    }

    #[test]
    fn flags_override_the_settings_file() {
        let args = ManifestArgs {
            revision: Some("asm-1240-1".into()),
            tags: vec!["prod".into()],
            default: true,
            module: DEFAULT_MODULE.into(),
            ..Default::default()
        };
        let s = settings_from(&args).unwrap();
        assert_eq!(
            s,
            json!({"revision": "asm-1240-1", "tags": ["prod"], "defaultRevision": true})
        );
        let bad = ManifestArgs {
            revision: Some("Not_A_Label".into()),
            ..args
        };
        assert!(settings_from(&bad)
            .unwrap_err()
            .to_string()
            .contains("revision"));
    }

    #[test]
    fn non_default_revision_excludes_istio_injection_namespaces() {
        let s = Settings::from_value(&json!({"revision": "canary"})).unwrap();
        let sel = selector_json(&namespace_selector(&s));
        assert_eq!(
            sel["matchExpressions"][1],
            json!({"key": "istio-injection", "operator": "DoesNotExist"})
        );
        let policy =
            cluster_admission_policy(&json!({"revision": "canary"}), DEFAULT_MODULE).unwrap();
        assert_eq!(policy["metadata"]["name"], "istio-injector-canary");
        assert_eq!(policy["spec"]["settings"], json!({"revision": "canary"}));
    }
}
