//! `validate_settings`: each layer checks the settings it reads, in pipeline order (the
//! first error wins), so no lower layer has to call into a higher one.

use crate::settings::Settings;

/// Every check of the settings: the revision's names, the settings' own shapes, the
/// allowed override annotations, then the effective values the template relies on.
pub fn validate_settings(settings: &Settings) -> Result<(), String> {
    crate::revision::validate_settings(settings)?;
    settings.validate()?;
    if let Some(allowed) = &settings.allowed_override_annotations {
        crate::values::override_policy::validate_setting(allowed)?;
    }
    crate::values::validate(settings)
}

#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
impl kubewarden_policy_sdk::settings::Validatable for Settings {
    fn validate(&self) -> Result<(), String> {
        validate_settings(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn allowed_override_annotations_must_be_known() {
        let ok = json!({"allowedOverrideAnnotations": ["sidecar.istio.io/proxyCPU"]});
        let s = Settings::from_value(&ok).unwrap();
        assert!(validate_settings(&s).is_ok());
        assert_eq!(s.allowed_override_annotations.unwrap().len(), 1);
        let bad = json!({"allowedOverrideAnnotations": ["sidecar.istio.io/proxyImag"]});
        let err = validate_settings(&Settings::from_value(&bad).unwrap()).unwrap_err();
        assert!(err.contains("sidecar.istio.io/proxyImag"), "{err}");
    }

    #[test]
    fn revision_names_are_checked_before_the_settings_own_shapes() {
        let s = Settings::from_value(&json!({"revision": "Bad_Name", "values": []})).unwrap();
        let err = validate_settings(&s).unwrap_err();
        assert!(err.starts_with("revision \"Bad_Name\""), "{err}");
    }
}
