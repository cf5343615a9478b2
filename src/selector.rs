//! Kubernetes LabelSelector semantics (`matchLabels` + `matchExpressions`), as the API server
//! applies them to webhook `namespaceSelector`/`objectSelector` and as Istio applies them to
//! `neverInjectSelector`/`alwaysInjectSelector`.
//!
//! Written from the Kubernetes API reference: all requirements are ANDed, `NotIn` matches when
//! the key is absent, an empty selector matches everything.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LabelSelector {
    pub match_labels: BTreeMap<String, String>,
    pub match_expressions: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl Requirement {
    pub fn new(key: &str, operator: Operator, values: &[&str]) -> Requirement {
        Requirement {
            key: key.to_string(),
            operator,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let got = labels.get(&self.key);
        match self.operator {
            Operator::In => got.is_some_and(|v| self.values.contains(v)),
            Operator::NotIn => got.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => got.is_some(),
            Operator::DoesNotExist => got.is_none(),
        }
    }

    fn validate(&self) -> Result<(), String> {
        validate_key(&self.key).map_err(|e| format!("key {:?}: {e}", self.key))?;
        match self.operator {
            Operator::In | Operator::NotIn if self.values.is_empty() => {
                return Err(format!(
                    "key {:?}: operator {:?} needs at least one value",
                    self.key, self.operator
                ))
            }
            Operator::Exists | Operator::DoesNotExist if !self.values.is_empty() => {
                return Err(format!(
                    "key {:?}: operator {:?} takes no values, got {:?}",
                    self.key, self.operator, self.values
                ))
            }
            _ => {}
        }
        for v in &self.values {
            validate_value(v).map_err(|e| format!("key {:?}: value {v:?}: {e}", self.key))?;
        }
        Ok(())
    }
}

impl fmt::Display for Requirement {
    /// Kubernetes' selector string form (`k in (a,b)`, `!k`), used in decision reasons.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let values = self.values.join(",");
        match self.operator {
            Operator::In => write!(f, "{} in ({values})", self.key),
            Operator::NotIn => write!(f, "{} notin ({values})", self.key),
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
        }
    }
}

impl LabelSelector {
    /// A selector made of expressions only (how Istio's webhooks are written).
    pub fn from_requirements(match_expressions: Vec<Requirement>) -> LabelSelector {
        LabelSelector {
            match_labels: BTreeMap::new(),
            match_expressions,
        }
    }

    /// True when the selector has no requirement at all (it then matches every object).
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// Reject what the API server would reject, naming the offending key or value.
    pub fn validate(&self) -> Result<(), String> {
        for (k, v) in &self.match_labels {
            validate_key(k).map_err(|e| format!("matchLabels: key {k:?}: {e}"))?;
            validate_value(v).map_err(|e| format!("matchLabels: {k:?}: value {v:?}: {e}"))?;
        }
        for (i, r) in self.match_expressions.iter().enumerate() {
            r.validate()
                .map_err(|e| format!("matchExpressions[{i}]: {e}"))?;
        }
        Ok(())
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.first_mismatch(labels).is_none()
    }

    /// The first requirement `labels` fail, in selector string form; `None` when they match.
    pub fn first_mismatch(&self, labels: &BTreeMap<String, String>) -> Option<String> {
        if let Some((k, v)) = self
            .match_labels
            .iter()
            .find(|(k, v)| labels.get(*k) != Some(*v))
        {
            return Some(format!("{k}={v}"));
        }
        self.match_expressions
            .iter()
            .find(|r| !r.matches(labels))
            .map(Requirement::to_string)
    }
}

/// A label key: an optional DNS subdomain prefix and `/`, then a name of at most 63 characters.
pub fn validate_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        validate_dns_subdomain(p).map_err(|e| format!("prefix {p:?} {e}"))?;
    }
    if name.is_empty() {
        return Err("the name part must not be empty".into());
    }
    validate_name_chars(name)
}

/// A label value: empty, or at most 63 alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric.
pub fn validate_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    validate_name_chars(value)
}

fn validate_name_chars(s: &str) -> Result<(), String> {
    if s.len() > 63 {
        return Err(format!("must be at most 63 characters, has {}", s.len()));
    }
    let ends_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !ends_ok(s.chars().next()) || !ends_ok(s.chars().last()) {
        return Err("must start and end with a letter or digit".into());
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "contains {c:?}; only letters, digits, '-', '_' and '.' are allowed"
        ));
    }
    Ok(())
}

/// A DNS-1123 label: at most 63 lowercase letters, digits and `-`, alphanumeric at both ends
/// (what Kubernetes requires of a Service name such as `istiod-<revision>`).
pub fn validate_dns_label(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 63 {
        return Err("must be 1 to 63 characters".into());
    }
    let ends_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !ends_ok(s.chars().next()) || !ends_ok(s.chars().last()) {
        return Err("must start and end with a lowercase letter or digit".into());
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "contains {c:?}; only lowercase letters, digits and '-' are allowed"
        ));
    }
    Ok(())
}

fn validate_dns_subdomain(s: &str) -> Result<(), String> {
    if s.len() > 253 {
        return Err("must be at most 253 characters".into());
    }
    s.split('.')
        .try_for_each(validate_dns_label)
        .map_err(|e| format!("is not a DNS subdomain: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sel(v: serde_json::Value) -> LabelSelector {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn empty_selector_matches_everything() {
        let s = LabelSelector::default();
        assert!(s.is_empty());
        assert!(s.matches(&labels(&[])));
        assert!(s.matches(&labels(&[("a", "b")])));
    }

    #[test]
    fn match_labels_need_every_pair() {
        let s = sel(json!({"matchLabels": {"app": "web", "tier": "front"}}));
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "front"), ("x", "y")])));
        assert!(!s.matches(&labels(&[("app", "web")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "back")])));
        assert_eq!(
            s.first_mismatch(&labels(&[("app", "web")])).as_deref(),
            Some("tier=front")
        );
    }

    #[test]
    fn in_needs_the_key_with_a_listed_value() {
        let r = Requirement::new("env", Operator::In, &["prod", "stage"]);
        assert!(r.matches(&labels(&[("env", "stage")])));
        assert!(!r.matches(&labels(&[("env", "dev")])));
        assert!(!r.matches(&labels(&[])));
    }

    #[test]
    fn not_in_matches_when_the_key_is_absent() {
        let r = Requirement::new("sidecar.istio.io/inject", Operator::NotIn, &["false"]);
        assert!(r.matches(&labels(&[])));
        assert!(r.matches(&labels(&[("sidecar.istio.io/inject", "true")])));
        assert!(!r.matches(&labels(&[("sidecar.istio.io/inject", "false")])));
    }

    #[test]
    fn exists_and_does_not_exist_ignore_the_value() {
        let e = Requirement::new("istio.io/rev", Operator::Exists, &[]);
        let d = Requirement::new("istio.io/rev", Operator::DoesNotExist, &[]);
        let with_empty = labels(&[("istio.io/rev", "")]);
        assert!(e.matches(&with_empty));
        assert!(!d.matches(&with_empty));
        assert!(!e.matches(&labels(&[])));
        assert!(d.matches(&labels(&[])));
    }

    #[test]
    fn labels_and_expressions_are_anded() {
        let s = sel(json!({
            "matchLabels": {"app": "db"},
            "matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["dev"]}]
        }));
        assert!(s.matches(&labels(&[("app", "db")])));
        assert!(!s.matches(&labels(&[("app", "db"), ("env", "dev")])));
        assert!(!s.matches(&labels(&[("env", "prod")])));
        assert_eq!(
            s.first_mismatch(&labels(&[("app", "db"), ("env", "dev")]))
                .as_deref(),
            Some("env notin (dev)")
        );
    }

    #[test]
    fn operators_need_the_right_number_of_values() {
        let err = sel(json!({"matchExpressions": [{"key": "a", "operator": "In"}]}))
            .validate()
            .unwrap_err();
        assert!(
            err.contains("matchExpressions[0]") && err.contains("at least one"),
            "{err}"
        );
        let err =
            sel(json!({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": []}]}))
                .validate()
                .unwrap_err();
        assert!(err.contains("NotIn"), "{err}");
        let err =
            sel(json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}))
                .validate()
                .unwrap_err();
        assert!(err.contains("Exists") && err.contains("no values"), "{err}");
        assert!(
            sel(json!({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}))
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn unknown_operator_is_a_parse_error() {
        let err = serde_json::from_value::<LabelSelector>(
            json!({"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("Equals"), "{err}");
    }

    #[test]
    fn key_and_value_syntax() {
        assert!(validate_key("app").is_ok());
        assert!(validate_key("sidecar.istio.io/inject").is_ok());
        assert!(validate_key("kubernetes.io/metadata.name").is_ok());
        assert!(validate_key("").is_err());
        assert!(validate_key("a/").is_err());
        assert!(validate_key("Bad_Prefix/x").is_err());
        assert!(validate_key("-x").is_err());
        assert!(validate_key(&"k".repeat(64)).is_err());
        assert!(validate_value("").is_ok());
        assert!(validate_value("v1.2_x-y").is_ok());
        assert!(validate_value("has space").is_err());
        let err = sel(json!({"matchLabels": {"app": "we b"}}))
            .validate()
            .unwrap_err();
        assert!(err.contains("\"app\"") && err.contains("we b"), "{err}");
    }

    #[test]
    fn dns_labels() {
        assert!(validate_dns_label("asm-1233-2").is_ok());
        assert!(validate_dns_label("Canary").is_err());
        assert!(validate_dns_label("1-2.3").is_err());
        assert!(validate_dns_label("x-").is_err());
        assert!(validate_dns_label("").is_err());
    }
}
