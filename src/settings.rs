//! Policy settings: one struct for the whole policy.
//!
//! Unknown keys are rejected (`deny_unknown_fields`) so that a typo in an injector's
//! configuration fails `validate_settings` instead of silently changing behaviour.
//!
//! [`Settings::from_value`] reads them with the hand-written reader in `read`, on every
//! request; the derived `Deserialize` stays as the reference that reader is tested against.

use crate::json::Path;
use serde::{Deserialize, Serialize};

mod read;

use crate::selector::LabelSelector;

/// Istio's default list of namespaces the injector never touches.
pub const DEFAULT_IGNORED_NAMESPACES: [&str; 4] = [
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "local-path-storage",
];

/// `global.proxy.autoInject`: what happens to a selected pod that says nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum InjectPolicy {
    #[default]
    Enabled,
    Disabled,
}

/// What to do when the namespace of a pod cannot be read from the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LookupFailure {
    /// Fail closed, like Istio's `failurePolicy: Fail`.
    #[default]
    Reject,
    /// Accept the pod unchanged.
    Skip,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Settings {
    /// The control plane revision this policy instance injects for ("" or `default`: the default revision).
    pub revision: String,
    /// Revision tags that point at this revision.
    pub tags: Vec<String>,
    /// This revision also answers `istio-injection=enabled`, the `default` tag and the `object` webhook.
    pub default_revision: bool,
    /// Inject pods in unlabelled namespaces (Istio's `auto` webhook, default revision only).
    pub enable_namespaces_by_default: bool,
    pub policy: InjectPolicy,
    pub never_inject_selector: Vec<LabelSelector>,
    pub always_inject_selector: Vec<LabelSelector>,
    pub ignored_namespaces: Vec<String>,
    pub istio_namespace: String,
    pub namespace_lookup_failure: LookupFailure,
    /// Native sidecars (`initContainers` with `restartPolicy: Always`); Istio's default on Kubernetes >= 1.33.
    pub native_sidecars: bool,
    /// Istio helm values read by the sidecar template (same key paths as Istio's chart).
    pub values: serde_json::Value,
    /// Istio MeshConfig fields (camelCase, as in istio.io/api).
    pub mesh_config: serde_json::Value,
    /// Per-pod override annotations pods may use (absent: all of them, as in Istio); a pod
    /// using another one is rejected. See `injection::override_policy`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_override_annotations: Option<Vec<String>>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            revision: String::new(),
            tags: Vec::new(),
            default_revision: false,
            enable_namespaces_by_default: false,
            policy: InjectPolicy::Enabled,
            never_inject_selector: Vec::new(),
            always_inject_selector: Vec::new(),
            ignored_namespaces: DEFAULT_IGNORED_NAMESPACES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            istio_namespace: "istio-system".to_string(),
            namespace_lookup_failure: LookupFailure::Reject,
            native_sidecars: true,
            values: serde_json::Value::Object(Default::default()),
            mesh_config: serde_json::Value::Object(Default::default()),
            allowed_override_annotations: None,
        }
    }
}

impl Settings {
    /// Parse settings from JSON, as policy-server hands them over (`null` means all defaults).
    pub fn from_value(value: &serde_json::Value) -> Result<Settings, String> {
        if value.is_null() {
            return Ok(Settings::default());
        }
        let mut settings = read::settings(value).map_err(|e| format!("invalid settings: {e}"))?;
        settings.fold_injector_values()?;
        Ok(settings)
    }

    /// Istio's injector ConfigMap takes `policy` from `values.global.proxy.autoInject` and the
    /// selectors from `values.sidecarInjectorWebhook.{never,always}InjectSelector`; honour them
    /// too, so helm values copied from an Istio install mean the same here. The values-level
    /// selectors are appended after the top-level ones; `disabled` in either place wins.
    fn fold_injector_values(&mut self) -> Result<(), String> {
        let (policy, never, always) = injector_values(&self.values)?;
        if policy == Some(InjectPolicy::Disabled) {
            self.policy = InjectPolicy::Disabled;
        }
        self.never_inject_selector.extend(never);
        self.always_inject_selector.extend(always);
        Ok(())
    }

    /// The revision name as Istio writes it in annotations (`default` for the default revision).
    pub fn revision_name(&self) -> &str {
        if self.revision.is_empty() {
            "default"
        } else {
            &self.revision
        }
    }

    /// The settings' own checks beyond the shape serde enforces (selectors, the shapes of
    /// `values` and `meshConfig`); `admission::validate_settings` runs them with the other
    /// layers' checks.
    pub fn validate(&self) -> Result<(), String> {
        let (_, never, always) = injector_values(&self.values)?;
        for (i, s) in never.iter().enumerate() {
            s.validate().map_err(|e| {
                format!("values.sidecarInjectorWebhook.neverInjectSelector[{i}]: {e}")
            })?;
        }
        for (i, s) in always.iter().enumerate() {
            s.validate().map_err(|e| {
                format!("values.sidecarInjectorWebhook.alwaysInjectSelector[{i}]: {e}")
            })?;
        }
        for (i, s) in self.never_inject_selector.iter().enumerate() {
            s.validate()
                .map_err(|e| format!("neverInjectSelector[{i}]: {e}"))?;
        }
        for (i, s) in self.always_inject_selector.iter().enumerate() {
            s.validate()
                .map_err(|e| format!("alwaysInjectSelector[{i}]: {e}"))?;
        }
        if !self.values.is_object() {
            return Err("values: must be a map of Istio helm values".into());
        }
        if !self.mesh_config.is_object() {
            return Err("meshConfig: must be a map of MeshConfig fields".into());
        }
        Ok(())
    }
}

/// The injector settings Istio keeps in helm values: (autoInject policy, never, always selectors).
type InjectorValues = (Option<InjectPolicy>, Vec<LabelSelector>, Vec<LabelSelector>);

fn injector_values(values: &serde_json::Value) -> Result<InjectorValues, String> {
    let policy = match values.at(&["global", "proxy", "autoInject"]) {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => Some(read::inject_policy(v).map_err(|e| {
            format!("values.global.proxy.autoInject: {e} (expected enabled or disabled)")
        })?),
    };
    let selectors = |key: &str| -> Result<Vec<LabelSelector>, String> {
        match values.at(&["sidecarInjectorWebhook", key]) {
            None | Some(serde_json::Value::Null) => Ok(Vec::new()),
            Some(v) => {
                read::selectors(v).map_err(|e| format!("values.sidecarInjectorWebhook.{key}: {e}"))
            }
        }
    };
    Ok((
        policy,
        selectors("neverInjectSelector")?,
        selectors("alwaysInjectSelector")?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_when_null() {
        let s = Settings::from_value(&serde_json::Value::Null).unwrap();
        assert_eq!(s.istio_namespace, "istio-system");
        assert_eq!(s.ignored_namespaces.len(), 4);
        assert_eq!(s.revision_name(), "default");
    }

    #[test]
    fn injector_config_in_values_is_honoured() {
        let s = Settings::from_value(&json!({
            "neverInjectSelector": [{"matchLabels": {"a": "b"}}],
            "values": {
                "global": {"proxy": {"autoInject": "disabled"}},
                "sidecarInjectorWebhook": {
                    "neverInjectSelector": [{"matchExpressions": [{"key": "job", "operator": "Exists"}]}],
                    "alwaysInjectSelector": [{"matchLabels": {"mesh": "always"}}]
                }
            }
        }))
        .unwrap();
        assert_eq!(s.policy, InjectPolicy::Disabled);
        assert_eq!(s.never_inject_selector.len(), 2);
        assert_eq!(s.always_inject_selector.len(), 1);
        let err = Settings::from_value(
            &json!({"values": {"global": {"proxy": {"autoInject": "maybe"}}}}),
        )
        .unwrap_err();
        assert!(err.contains("values.global.proxy.autoInject"), "{err}");
        let bad: Settings = serde_json::from_value(json!({
            "values": {"sidecarInjectorWebhook": {"neverInjectSelector": [{"matchExpressions": [{"key": "k", "operator": "In"}]}]}}
        }))
        .unwrap();
        let err = bad.validate().unwrap_err();
        assert!(
            err.contains("values.sidecarInjectorWebhook.neverInjectSelector[0]"),
            "{err}"
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Settings::from_value(&json!({"revison": "canary"})).unwrap_err();
        assert!(err.contains("revison"), "{err}");
    }

    #[test]
    fn bad_policy_value_is_rejected() {
        let err = Settings::from_value(&json!({"policy": "sometimes"})).unwrap_err();
        assert!(err.contains("sometimes"), "{err}");
    }
}
