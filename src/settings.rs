//! Policy settings: one struct for the whole policy.
//!
//! Unknown keys are rejected (`deny_unknown_fields`) so that a typo in an injector's
//! configuration fails `validate_settings` instead of silently changing behaviour. A new
//! setting is one field of [`Settings`]: its doc comment, its `#[default(..)]` when that is
//! not the type's default, and a line in the README's table.

use crate::json::Path;
use serde::{Deserialize, Serialize};
use smart_default::SmartDefault;

use crate::selector::LabelSelector;
use crate::versions::{Behaviour, Change, IstioVersion};

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SmartDefault)]
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
    /// `global.proxy.autoInject`: whether selected pods that say nothing are injected.
    pub policy: InjectPolicy,
    /// Pods matching one of these are not injected (unless they opt in explicitly).
    pub never_inject_selector: Vec<LabelSelector>,
    /// Pods matching one of these are injected (unless they opt out explicitly).
    pub always_inject_selector: Vec<LabelSelector>,
    /// Namespaces never injected.
    #[default(DEFAULT_IGNORED_NAMESPACES.map(String::from).to_vec())]
    pub ignored_namespaces: Vec<String>,
    /// Where istiod runs (`CA_ADDR`, `discoveryAddress`).
    #[default("istio-system")]
    pub istio_namespace: String,
    /// What to do when the pod's Namespace cannot be read.
    pub namespace_lookup_failure: LookupFailure,
    /// The Istio version whose injector this revision reproduces (`"1.23"` or `"1.23.3"`);
    /// absent: the newest supported, Istio's main branch.
    pub istio_version: IstioVersion,
    /// Native sidecars (`initContainers` with `restartPolicy: Always`). Absent: that version's
    /// istiod default (off up to 1.26; from 1.27 on, as istiod decides for Kubernetes >= 1.33).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub native_sidecars: Option<bool>,
    /// Istio helm values read by the sidecar template (same key paths as Istio's chart).
    #[default(serde_json::Value::Object(Default::default()))]
    pub values: serde_json::Value,
    /// Istio MeshConfig fields (camelCase, as in istio.io/api).
    #[default(serde_json::Value::Object(Default::default()))]
    pub mesh_config: serde_json::Value,
    /// Per-pod override annotations pods may use (absent: all of them, as in Istio); a pod
    /// using another one is rejected. See `values::override_policy`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_override_annotations: Option<Vec<String>>,
}

impl Settings {
    /// Parse settings from JSON, as policy-server hands them over (`null` means all defaults).
    /// Errors name the key: ``invalid settings: tags[1]: invalid type: integer `2`, expected
    /// a string``, ``invalid settings: revison: unknown field `revison`, expected one of ..``.
    pub fn from_value(value: &serde_json::Value) -> Result<Settings, String> {
        if value.is_null() {
            return Ok(Settings::default());
        }
        // serde would also take a struct written as a list, its fields by position.
        if !value.is_object() {
            return Err("invalid settings: expected a map of settings".into());
        }
        let mut settings: Settings = serde_path_to_error::deserialize(value)
            .map_err(|e| format!("invalid settings: {e}"))?;
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

    /// What the injector of [`Settings::istio_version`] does.
    pub fn behaviour(&self) -> Behaviour {
        self.istio_version.behaviour()
    }

    /// Native sidecar mode when the pod says nothing: the setting, else the version's default.
    pub fn native_sidecars(&self) -> bool {
        self.native_sidecars
            .unwrap_or_else(|| self.behaviour().has(Change::NativeSidecarDefault))
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
        Some(v) => Some(InjectPolicy::deserialize(v).map_err(|e| {
            format!("values.global.proxy.autoInject: {e} (expected enabled or disabled)")
        })?),
    };
    let selectors = |key: &str| -> Result<Vec<LabelSelector>, String> {
        match values.at(&["sidecarInjectorWebhook", key]) {
            None | Some(serde_json::Value::Null) => Ok(Vec::new()),
            Some(v) => serde_path_to_error::deserialize(v)
                .map_err(|e| format!("values.sidecarInjectorWebhook.{key}: {e}")),
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
    fn messages_name_the_key_and_what_was_expected() {
        let cases = [
            (
                json!({"revison": "canary"}),
                "invalid settings: revison: unknown field `revison`, expected one of `revision`, `tags`",
            ),
            (
                json!({"revision": 5}),
                "invalid settings: revision: invalid type: integer `5`, expected a string",
            ),
            (
                json!({"tags": ["a", 2]}),
                "invalid settings: tags[1]: invalid type: integer `2`, expected a string",
            ),
            (
                json!({"nativeSidecars": "yes"}),
                "invalid settings: nativeSidecars: invalid type: string \"yes\", expected a boolean",
            ),
            (
                json!({"namespaceLookupFailure": "fail"}),
                "invalid settings: namespaceLookupFailure: unknown variant `fail`, expected `reject` or `skip`",
            ),
            (
                json!({"neverInjectSelector": [{"matchExpressions": [{"key": "k", "operator": "in"}]}]}),
                "invalid settings: neverInjectSelector[0].matchExpressions[0].operator: unknown variant `in`",
            ),
            (
                json!({"alwaysInjectSelector": [{"matchLabel": {}}]}),
                "invalid settings: alwaysInjectSelector[0].matchLabel: unknown field `matchLabel`, expected `matchLabels` or `matchExpressions`",
            ),
            (
                json!({"neverInjectSelector": [{"matchExpressions": [{"operator": "Exists"}]}]}),
                "invalid settings: neverInjectSelector[0].matchExpressions[0]: missing field `key`",
            ),
            (
                json!({"values": {"sidecarInjectorWebhook": {"alwaysInjectSelector": [{"matchLabels": {"a": 1}}]}}}),
                "values.sidecarInjectorWebhook.alwaysInjectSelector: [0].matchLabels.a: invalid type: integer `1`, expected a string",
            ),
            (json!(["canary"]), "invalid settings: expected a map of settings"),
        ];
        for (v, message) in cases {
            let err = Settings::from_value(&v).unwrap_err();
            assert!(err.starts_with(message), "{v}: {err}");
        }
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = Settings::from_value(&json!({})).unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(s.ignored_namespaces, DEFAULT_IGNORED_NAMESPACES);
        assert_eq!(
            (s.native_sidecars(), s.policy, s.namespace_lookup_failure),
            (true, InjectPolicy::Enabled, LookupFailure::Reject)
        );
        assert_eq!((s.values, s.mesh_config), (json!({}), json!({})));
        assert_eq!(s.allowed_override_annotations, None);
        // `null` is not an absent key.
        assert!(Settings::from_value(&json!({"revision": null})).is_err());
        let s = Settings::from_value(&json!({"allowedOverrideAnnotations": null})).unwrap();
        assert_eq!(s.allowed_override_annotations, None);
    }

    #[test]
    fn bad_policy_value_is_rejected() {
        let err = Settings::from_value(&json!({"policy": "sometimes"})).unwrap_err();
        assert!(err.contains("sometimes"), "{err}");
    }
}
