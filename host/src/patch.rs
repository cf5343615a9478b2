//! The AdmissionResponse the host builds from the policy's `ValidationResponse`, the way
//! Kubewarden's policy-evaluator does it (and `kwctl run` prints it): a mutation becomes an
//! RFC 6902 JSONPatch (`json_patch::diff` of the request's object against `mutated_object`),
//! base64-encoded, with `patchType: JSONPatch`; an empty diff means no patch at all.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// What the guest's `validate` returns (kubewarden-policy-sdk's `ValidationResponse`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ValidationResponse {
    pub accepted: bool,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub code: Option<u16>,
    #[serde(default)]
    pub mutated_object: Option<Value>,
    #[serde(default)]
    pub audit_annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub warnings: Option<Vec<String>>,
}

/// `status` of a rejected AdmissionResponse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub code: Option<u16>,
}

/// admission/v1 AdmissionResponse with the field order and null handling of policy-evaluator:
/// `patchType`, `patch` and `status` are omitted when absent, `auditAnnotations` and
/// `warnings` are always printed (`null` when absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionResponse {
    pub uid: String,
    pub allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub patch_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status: Option<Status>,
    #[serde(default)]
    pub audit_annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub warnings: Option<Vec<String>>,
}

/// The only patch type admission webhooks support.
pub const JSON_PATCH: &str = "JSONPatch";

impl AdmissionResponse {
    pub fn reject(uid: &str, message: String, code: Option<u16>) -> AdmissionResponse {
        AdmissionResponse {
            uid: uid.to_string(),
            allowed: false,
            patch_type: None,
            patch: None,
            status: Some(Status {
                message: Some(message),
                code,
            }),
            audit_annotations: None,
            warnings: None,
        }
    }

    /// A failure of the host or the guest (not a decision of the policy): HTTP 500.
    pub fn internal_error(uid: &str, message: &str) -> AdmissionResponse {
        AdmissionResponse::reject(uid, format!("internal server error: {message}"), Some(500))
    }

    /// Build the response for `request_object` (the AdmissionRequest's `object`; `None` when
    /// absent or null, as for DELETE).
    pub fn from_validation(
        uid: &str,
        request_object: Option<&Value>,
        response: &ValidationResponse,
    ) -> anyhow::Result<AdmissionResponse> {
        let patch = match (&response.mutated_object, request_object) {
            (None, _) => None,
            (Some(_), None) => {
                // Same refusal as policy-evaluator: there is nothing to patch.
                return Ok(AdmissionResponse::reject(
                    uid,
                    "Incoming object is null, which happens only with DELETE operations, but the \
                     policy is attempting a mutation. This is not allowed"
                        .to_string(),
                    None,
                ));
            }
            (Some(mutated), Some(original)) => encode_patch(original, mutated)?,
        };
        let status = (response.message.is_some() || response.code.is_some()).then(|| Status {
            message: response.message.clone(),
            code: response.code,
        });
        Ok(AdmissionResponse {
            uid: uid.to_string(),
            allowed: response.accepted,
            patch_type: patch.as_ref().map(|_| JSON_PATCH.to_string()),
            patch,
            status,
            audit_annotations: response.audit_annotations.clone(),
            warnings: response.warnings.clone(),
        })
    }

    /// The decoded JSONPatch operations, if the response carries a patch.
    pub fn patch_operations(&self) -> anyhow::Result<Option<json_patch::Patch>> {
        let Some(encoded) = &self.patch else {
            return Ok(None);
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| anyhow::anyhow!("the patch is not valid base64: {e}"))?;
        let patch = serde_json::from_slice(&bytes)
            .map_err(|e| anyhow::anyhow!("the patch is not a JSONPatch: {e}"))?;
        Ok(Some(patch))
    }

    /// `object` with this response's patch applied (`object` itself when there is no patch).
    pub fn patched_object(&self, object: &Value) -> anyhow::Result<Value> {
        let mut patched = object.clone();
        if let Some(patch) = self.patch_operations()? {
            json_patch::patch(&mut patched, &patch)
                .map_err(|e| anyhow::anyhow!("the patch does not apply to the object: {e}"))?;
        }
        Ok(patched)
    }
}

/// `json_patch::diff(original, mutated)`, serialized and base64-encoded; `None` when empty.
pub fn encode_patch(original: &Value, mutated: &Value) -> anyhow::Result<Option<String>> {
    let diff = json_patch::diff(original, mutated);
    if diff.0.is_empty() {
        return Ok(None);
    }
    let json = serde_json::to_string(&diff)?;
    Ok(Some(base64::engine::general_purpose::STANDARD.encode(json)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn accepted_with(mutated: Option<Value>) -> ValidationResponse {
        ValidationResponse {
            accepted: true,
            mutated_object: mutated,
            ..Default::default()
        }
    }

    #[test]
    fn identical_mutation_gives_no_patch() {
        let pod = json!({"metadata": {"name": "p"}});
        let r =
            AdmissionResponse::from_validation("u", Some(&pod), &accepted_with(Some(pod.clone())))
                .unwrap();
        assert!(r.patch.is_none() && r.patch_type.is_none());
        assert!(r.allowed);
    }

    #[test]
    fn mutation_round_trips_through_the_patch() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app"}]}});
        let mut mutated = pod.clone();
        mutated["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "istio-proxy"}));
        mutated["metadata"]["annotations"] = json!({"sidecar.istio.io/status": "{}"});
        let r = AdmissionResponse::from_validation(
            "u",
            Some(&pod),
            &accepted_with(Some(mutated.clone())),
        )
        .unwrap();
        assert_eq!(r.patch_type.as_deref(), Some(JSON_PATCH));
        assert_eq!(r.patched_object(&pod).unwrap(), mutated);
        let ops = serde_json::to_value(r.patch_operations().unwrap().unwrap()).unwrap();
        assert!(
            ops.as_array().unwrap().iter().all(|op| op["op"] == "add"),
            "{ops}"
        );
    }

    #[test]
    fn mutation_without_object_is_refused() {
        let r =
            AdmissionResponse::from_validation("u", None, &accepted_with(Some(json!({})))).unwrap();
        assert!(!r.allowed);
        let msg = r.status.unwrap().message.unwrap();
        assert!(msg.contains("attempting a mutation"), "{msg}");
    }

    #[test]
    fn serialized_shape_matches_kwctl() {
        let r = AdmissionResponse::from_validation("abc", None, &accepted_with(None)).unwrap();
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"uid":"abc","allowed":true,"auditAnnotations":null,"warnings":null}"#
        );
        let rejected = ValidationResponse {
            accepted: false,
            message: Some("no".into()),
            code: Some(400),
            ..Default::default()
        };
        let r = AdmissionResponse::from_validation("abc", None, &rejected).unwrap();
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"uid":"abc","allowed":false,"status":{"message":"no","code":400},"auditAnnotations":null,"warnings":null}"#
        );
    }
}
