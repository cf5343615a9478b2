//! revision-injector: Istio control-plane revision selection and sidecar injection as a
//! Kubewarden mutating policy.
//!
//! The logic lives in plain Rust modules that compile natively and to `wasm32-wasip1`, in
//! layers that only use the layers below them (docs/architecture.md): `go`, `json`, `schema`,
//! `selector`, `payload`; `versions` and `settings`; `values` and `revision`; `sidecar`; `merge`;
//! `postprocess`; `admission`. [`glue`] is only the waPC glue.

pub mod admission;
pub mod allocator;
pub mod go;
pub mod json;
pub mod merge;
pub mod payload;
pub mod postprocess;
pub mod revision;
pub mod schema;
pub mod selector;
pub mod settings;
pub mod sidecar;
/// Random requests and invariants for fuzzing and tests: the `testgen` feature (host/,
/// tests/ and fuzz/ turn it on), never in policy.wasm.
#[cfg(feature = "testgen")]
pub mod testgen;
pub mod values;
pub mod versions;

/// The waPC entry points. Left out on wasm32-unknown-unknown, where the browser playground
/// (web/) links the logic without waPC's exports and host imports.
#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
pub mod glue {
    use kubewarden_policy_sdk::protocol_version_guest;
    use kubewarden_policy_sdk::settings::SettingsValidationResponse;
    use kubewarden_policy_sdk::wapc_guest as guest;
    use serde_json::Value;

    use crate::admission::{self, Cluster};
    use crate::payload::Payload;
    use crate::settings::Settings;

    #[unsafe(no_mangle)]
    pub extern "C" fn wapc_init() {
        guest::register_function("validate", validate);
        guest::register_function("validate_settings", validate_settings);
        guest::register_function("protocol_version", protocol_version_guest);
    }

    /// Namespaces come from the host's `kubewarden/kubernetes/get_resource` capability. The
    /// SDK's `get_resource` does the same steps (and words its errors the same way) but
    /// parses the answer with a second instance of serde_json's parser, over `&[u8]`, where
    /// [`crate::json::from_slice`] reuses the `&str` one the request is read with (~6 KB);
    /// the request is written by [`namespace_request`].
    struct HostCluster;

    impl Cluster for HostCluster {
        fn namespace(&self, name: &str) -> Result<Value, String> {
            let request = namespace_request(name);
            let raw = guest::host_call("kubewarden", "kubernetes", "get_resource", &request)
                .map_err(|e| {
                    format!("error invoking host capability kubernetes.get_resource: {e}")
                })?;
            crate::json::from_slice::<Value>(&raw)
                .map_err(|e| format!("error deserializing get resource response: {e}"))
        }
    }

    /// The SDK's `GetResourceRequest` for the Namespace `name`, as serde_json writes it
    /// (fields in declaration order, `None` as `null`), without linking its `Serialize`.
    pub fn namespace_request(name: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(112 + name.len());
        out.extend_from_slice(br#"{"api_version":"v1","kind":"Namespace","name":"#);
        crate::json::write_str(&mut out, name);
        out.extend_from_slice(br#","namespace":null,"disable_cache":false,"field_masks":null}"#);
        out
    }

    /// waPC `validate`: `{"request": AdmissionRequest, "settings": Settings}` in (read with
    /// only the fields the policy uses, see [`crate::payload`]), `ValidationResponse` out.
    /// Every failure becomes a rejection with a message, never a guest error (hosts report
    /// those as a bare 500).
    fn validate(payload: &[u8]) -> guest::CallResult {
        let outcome = match Payload::from_slice(payload) {
            Err(e) => {
                admission::Outcome::reject(format!("cannot parse the validation request: {e}"), 400)
            }
            Ok(p) => match Settings::from_value(&p.settings) {
                Err(e) => admission::Outcome::reject(e, 400),
                Ok(settings) => admission::evaluate_owned(p.request, &settings, &HostCluster),
            },
        };
        Ok(outcome.validation_response_json()?)
    }

    /// waPC `validate_settings`. Unlike the SDK's generic helper, a payload that does not
    /// deserialize (an unknown key, a wrong type) answers `valid: false` with serde's message
    /// naming the key, instead of failing the call.
    fn validate_settings(payload: &[u8]) -> guest::CallResult {
        let checked = crate::json::from_slice::<Value>(payload)
            .map_err(|e| format!("settings are not JSON: {e}"))
            .and_then(|v| Settings::from_value(&v))
            .and_then(|s| admission::validate_settings(&s));
        let response = SettingsValidationResponse {
            valid: checked.is_ok(),
            message: checked.err(),
        };
        Ok(serde_json::to_vec(&response)?)
    }

    #[cfg(test)]
    mod tests {
        use super::namespace_request;
        use kubewarden_policy_sdk::host_capabilities::kubernetes::GetResourceRequest;

        #[test]
        fn namespace_request_is_the_sdks_request() {
            for name in ["apps", "", "a\"b\\c", "tab\there", "ünï\u{1}"] {
                let sdk = GetResourceRequest {
                    api_version: "v1".to_string(),
                    kind: "Namespace".to_string(),
                    name: name.to_string(),
                    namespace: None,
                    disable_cache: false,
                    field_masks: None,
                };
                let expected = serde_json::to_vec(&sdk).expect("serializable");
                assert_eq!(namespace_request(name), expected, "{name:?}");
            }
        }
    }
}
