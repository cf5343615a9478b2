//! The conformance suite's `cases.yaml`: its cases and the policy settings each one means.

use anyhow::{anyhow, bail, Context as _};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

use revision_injector::versions::{Change, IstioVersion};

/// The settings keys a suite's `defaults` and a case may set; everything the runner adds
/// (`defaultRevision: true`) is fixed.
pub const SETTING_KEYS: [&str; 5] = [
    "istioVersion",
    "revision",
    "nativeSidecars",
    "values",
    "meshConfig",
];

/// Case keys that are not settings: what to run and what to expect.
const CASE_KEYS: [&str; 6] = [
    "name",
    "input",
    "expected",
    "expectError",
    "cni",
    "features",
];

/// A loaded suite: its directory, defaults and cases in file order.
#[derive(Debug, Clone)]
pub struct Suite {
    pub dir: PathBuf,
    pub defaults: Value,
    pub cases: Vec<Case>,
}

/// What a case expects.
#[derive(Debug, Clone, PartialEq)]
pub enum Expectation {
    /// The mutated pods must equal the golden's (path relative to the suite directory).
    Golden(String),
    /// The request must be rejected with a message containing this (case-insensitively).
    Error(String),
}

/// One case, as written in `cases.yaml`.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub input: String,
    pub expectation: Expectation,
    /// The case's raw entry (its setting overrides, `cni`, `features`).
    pub raw: Value,
}

impl Suite {
    /// Read `DIR/cases.yaml`. Keys this runner does not know are reported as warnings, so a
    /// setting it would silently ignore does not go unnoticed.
    pub fn load(dir: &Path) -> anyhow::Result<(Suite, Vec<String>)> {
        let path = dir.join("cases.yaml");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Suite::parse(dir, &text).with_context(|| format!("in {}", path.display()))
    }

    pub fn parse(dir: &Path, text: &str) -> anyhow::Result<(Suite, Vec<String>)> {
        let doc: Value = serde_norway::from_str(text).context("not valid YAML")?;
        let defaults = doc.get("defaults").cloned().unwrap_or_else(|| json!({}));
        if !defaults.is_object() {
            bail!("`defaults` must be a map");
        }
        let mut warnings = Vec::new();
        if let Some(map) = defaults.as_object() {
            for key in map.keys().filter(|k| !SETTING_KEYS.contains(&k.as_str())) {
                warnings.push(format!("defaults: unknown key `{key}` ignored"));
            }
        }
        let entries = doc
            .get("cases")
            .and_then(Value::as_array)
            .ok_or_else(|| anyhow!("`cases` must be a list"))?;
        let mut cases: Vec<Case> = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            let case = Case::parse(entry).with_context(|| format!("cases[{index}]"))?;
            if cases.iter().any(|c| c.name == case.name) {
                bail!("cases[{index}]: the name {:?} is used twice", case.name);
            }
            if let Some(map) = entry.as_object() {
                for key in map.keys() {
                    if !SETTING_KEYS.contains(&key.as_str()) && !CASE_KEYS.contains(&key.as_str()) {
                        warnings.push(format!("case {}: unknown key `{key}` ignored", case.name));
                    }
                }
            }
            cases.push(case);
        }
        let suite = Suite {
            dir: dir.to_path_buf(),
            defaults,
            cases,
        };
        Ok((suite, warnings))
    }
}

impl Case {
    fn parse(entry: &Value) -> anyhow::Result<Case> {
        let text = |key: &str| -> anyhow::Result<Option<String>> {
            match entry.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => bail!("`{key}` must be a string, not {other}"),
            }
        };
        let name = text("name")?.ok_or_else(|| anyhow!("a case needs a `name`"))?;
        let input = text("input")?.ok_or_else(|| anyhow!("case {name}: no `input`"))?;
        let expectation = match (text("expected")?, text("expectError")?) {
            (Some(golden), None) => Expectation::Golden(golden),
            (None, Some(error)) => Expectation::Error(error),
            _ => bail!("case {name}: needs exactly one of `expected` and `expectError`"),
        };
        match entry.get("cni") {
            None | Some(Value::Null) | Some(Value::Bool(_)) => {}
            Some(other) => bail!("case {name}: `cni` must be true or false, not {other}"),
        }
        Ok(Case {
            name,
            input,
            expectation,
            raw: entry.clone(),
        })
    }

    /// The policy settings this case means: `defaults` deep-merged with the case's own
    /// settings keys, then `defaultRevision: true`, and for `cni: true` the values key the
    /// installer of that Istio version writes (see [`cni_values`]).
    pub fn settings(&self, defaults: &Value) -> anyhow::Result<Value> {
        case_settings(defaults, &self.raw)
    }

    /// The revision the settings name (`default` when unset).
    pub fn revision(settings: &Value) -> String {
        settings
            .get("revision")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
            .to_string()
    }
}

/// See [`Case::settings`]. A `null` for a top-level setting deletes it (the policy's default
/// applies). Inside `values` and `meshConfig` a `null` replaces the value and is passed on:
/// the policy merges `values` onto Istio's chart defaults the way Helm does, where `null`
/// deletes the chart's key (`proxy-resources-null` relies on that), so dropping it here
/// would bring the chart default back.
pub fn case_settings(defaults: &Value, case: &Value) -> anyhow::Result<Value> {
    let mut settings = Map::new();
    for key in SETTING_KEYS {
        let base = defaults.get(key).cloned();
        let overlay = case.get(key);
        let merged = match (base, overlay) {
            (_, Some(Value::Null)) | (None, None) => continue,
            (Some(base), None) => base,
            (None, Some(overlay)) => overlay.clone(),
            (Some(base), Some(overlay)) => deep_merge(base, overlay),
        };
        settings.insert(key.to_string(), merged);
    }
    settings.insert("defaultRevision".into(), Value::Bool(true));
    if case.get("cni").and_then(Value::as_bool) == Some(true) {
        let version = match settings.get("istioVersion") {
            None => IstioVersion::NEWEST,
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| anyhow!("{e}"))?,
        };
        let values = settings
            .entry("values")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .ok_or_else(|| anyhow!("`values` must be a map"))?;
        cni_values(values, version)?;
    }
    Ok(Value::Object(settings))
}

/// `components.cni.enabled=true` as Istio's installer writes it into the injector's values.
/// Up to 1.23 the operator wrote `istio_cni.enabled`; from 1.24 the chart's `cni` values reach
/// the template as `pilot.cni`, so `{enabled: true} ⊕ values.cni` goes there.
fn cni_values(values: &mut Map<String, Value>, version: IstioVersion) -> anyhow::Result<()> {
    if !version.behaviour().has(Change::CniFromPilotOnly) {
        let existing = values.remove("istio_cni").unwrap_or_else(|| json!({}));
        values.insert(
            "istio_cni".into(),
            deep_merge(existing, &json!({"enabled": true})),
        );
        return Ok(());
    }
    let mut cni = json!({"enabled": true});
    if let Some(case_cni) = values.get("cni") {
        cni = deep_merge(cni, case_cni);
    }
    let pilot = values.entry("pilot").or_insert_with(|| json!({}));
    let existing = pilot.get("cni").cloned().unwrap_or_else(|| json!({}));
    match pilot.as_object_mut() {
        Some(pilot) => pilot.insert("cni".into(), deep_merge(existing, &cni)),
        None => bail!("`values.pilot` must be a map"),
    };
    Ok(())
}

/// Helm-style merge of `overlay` onto `base`: maps merge key by key, anything else
/// (scalars, lists, `null`) replaces.
pub fn deep_merge(base: Value, overlay: &Value) -> Value {
    match (base, overlay) {
        (Value::Object(mut base), Value::Object(overlay)) => {
            for (key, value) in overlay {
                let merged = match base.remove(key) {
                    Some(existing) => deep_merge(existing, value),
                    None => value.clone(),
                };
                base.insert(key.clone(), merged);
            }
            Value::Object(base)
        }
        (_, overlay) => overlay.clone(),
    }
}
