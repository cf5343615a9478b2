//! Reading the files `kwctl run` reads: the request (`--request-path`, an AdmissionReview or a
//! bare AdmissionRequest) and the settings (`--settings-path`, YAML or JSON).

use anyhow::{bail, Context as _};
use serde_json::Value;
use std::path::Path;

/// Parse JSON, or YAML when the text is not JSON.
fn parse_document(text: &str) -> anyhow::Result<Value> {
    match serde_json::from_str(text) {
        Ok(v) => Ok(v),
        Err(json_err) => serde_norway::from_str(text)
            .map_err(|_| anyhow::anyhow!("neither JSON ({json_err}) nor YAML")),
    }
}

/// The AdmissionRequest inside `document`: its `request` when it is an AdmissionReview,
/// otherwise the document itself (as kwctl accepts both).
pub fn admission_request(document: &Value) -> &Value {
    match document.get("request") {
        Some(request) if request.is_object() => request,
        _ => document,
    }
}

/// Read a request file and return the bare AdmissionRequest.
pub fn read_request(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read request {}", path.display()))?;
    let document =
        parse_document(&text).with_context(|| format!("invalid request {}", path.display()))?;
    if !document.is_object() {
        bail!("request {} is not a JSON object", path.display());
    }
    Ok(admission_request(&document).clone())
}

/// Read a settings file; no file, an empty file or `null` mean no settings (`{}`), as with kwctl.
pub fn read_settings(path: Option<&Path>) -> anyhow::Result<Value> {
    let Some(path) = path else {
        return Ok(Value::Object(Default::default()));
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read settings {}", path.display()))?;
    if text.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    let settings =
        parse_document(&text).with_context(|| format!("invalid settings {}", path.display()))?;
    match settings {
        Value::Null => Ok(Value::Object(Default::default())),
        Value::Object(_) => Ok(settings),
        _ => bail!("settings {} must be a map of settings", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn review_and_bare_request_give_the_same_request() {
        let request = json!({"uid": "1", "operation": "CREATE"});
        let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request});
        assert_eq!(admission_request(&review), &request);
        assert_eq!(admission_request(&request), &request);
    }

    #[test]
    fn settings_accept_yaml_and_json() {
        let dir = std::env::temp_dir().join(format!("revinject-input-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let yaml = dir.join("s.yaml");
        std::fs::write(&yaml, "revision: canary\ntags: [prod]\n").unwrap();
        assert_eq!(
            read_settings(Some(&yaml)).unwrap(),
            json!({"revision": "canary", "tags": ["prod"]})
        );
        let json_file = dir.join("s.json");
        std::fs::write(&json_file, r#"{"revision": "canary"}"#).unwrap();
        assert_eq!(
            read_settings(Some(&json_file)).unwrap(),
            json!({"revision": "canary"})
        );
        std::fs::write(&yaml, "- a\n").unwrap();
        assert!(read_settings(Some(&yaml)).is_err());
        assert_eq!(read_settings(None).unwrap(), json!({}));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
