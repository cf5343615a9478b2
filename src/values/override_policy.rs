//! `allowedOverrideAnnotations`: which per-pod override annotations a pod may use.
//!
//! Istio lets any pod author reshape its sidecar through annotations (proxy image, resources,
//! extra volumes, interception mode, captured ports ...). A cluster that does not trust its
//! tenants that far lists the overrides it allows; any other override on a pod to inject
//! rejects the pod, naming the annotation. Without the setting every override is allowed, as
//! in Istio.
//!
//! Injection writes some of these annotations itself (interception mode, captured ports), so
//! an injected pod carries them. A denied annotation is therefore only an override when its
//! value differs from what injection would write without it; [`denied_overrides`] reports the
//! candidates and `inject` settles them by rendering the pod without them.

use crate::json::Path;
use serde_json::{Map, Value};

/// The per-pod annotations through which a pod overrides its sidecar (Istio's pod annotations
/// read by the injector). Selection (`sidecar.istio.io/inject`, `istio.io/rev`) and the
/// bookkeeping injection writes (`sidecar.istio.io/status`, `proxy.istio.io/overrides`) are
/// not overrides.
pub const OVERRIDE_ANNOTATIONS: &[&str] = &[
    "sidecar.istio.io/agentLogLevel",
    "sidecar.istio.io/bootstrapOverride",
    "sidecar.istio.io/capNetBindService",
    "sidecar.istio.io/componentLogLevel",
    "sidecar.istio.io/controlPlaneAuthPolicy",
    "sidecar.istio.io/discoveryAddress",
    "sidecar.istio.io/enableCoreDump",
    "sidecar.istio.io/extraStatTags",
    "sidecar.istio.io/init-containers-before-proxy",
    "sidecar.istio.io/interceptionMode",
    "sidecar.istio.io/logLevel",
    "sidecar.istio.io/nativeSidecar",
    "sidecar.istio.io/proxyCPU",
    "sidecar.istio.io/proxyCPULimit",
    "sidecar.istio.io/proxyImage",
    "sidecar.istio.io/proxyImageType",
    "sidecar.istio.io/proxyMemory",
    "sidecar.istio.io/proxyMemoryLimit",
    "sidecar.istio.io/rewriteAppHTTPProbers",
    "sidecar.istio.io/statsHistogramBuckets",
    "sidecar.istio.io/statsInclusionPrefixes",
    "sidecar.istio.io/statsInclusionRegexps",
    "sidecar.istio.io/statsInclusionSuffixes",
    "sidecar.istio.io/userVolume",
    "sidecar.istio.io/userVolumeMount",
    "traffic.sidecar.istio.io/excludeInboundPorts",
    "traffic.sidecar.istio.io/excludeInterfaces",
    "traffic.sidecar.istio.io/excludeOutboundIPRanges",
    "traffic.sidecar.istio.io/excludeOutboundPorts",
    "traffic.sidecar.istio.io/includeInboundPorts",
    "traffic.sidecar.istio.io/includeOutboundIPRanges",
    "traffic.sidecar.istio.io/includeOutboundPorts",
    "traffic.sidecar.istio.io/kubevirtInterfaces",
    "istio.io/reroute-virtual-interfaces",
    "status.sidecar.istio.io/port",
    "readiness.status.sidecar.istio.io/applicationPorts",
    "readiness.status.sidecar.istio.io/failureThreshold",
    "readiness.status.sidecar.istio.io/initialDelaySeconds",
    "readiness.status.sidecar.istio.io/periodSeconds",
    "proxy.istio.io/config",
    "prometheus.istio.io/merge-metrics",
];

/// Settings check: every listed name must be a known override annotation.
pub fn validate_setting(allowed: &[String]) -> Result<(), String> {
    for (i, name) in allowed.iter().enumerate() {
        if !OVERRIDE_ANNOTATIONS.contains(&name.as_str()) {
            return Err(format!(
                "allowedOverrideAnnotations[{i}]: {name:?} is not a per-pod override annotation \
                 this injector knows (e.g. sidecar.istio.io/proxyCPU, proxy.istio.io/config)"
            ));
        }
    }
    Ok(())
}

/// Override annotations present on the pod that `allowed` does not list (none when the setting
/// is absent), in the pod's annotation order.
pub fn denied_overrides<'a>(
    annotations: &'a Map<String, Value>,
    allowed: Option<&[String]>,
) -> Vec<&'a str> {
    let Some(allowed) = allowed else {
        return Vec::new();
    };
    annotations
        .keys()
        .map(String::as_str)
        .filter(|k| OVERRIDE_ANNOTATIONS.contains(k) && !allowed.iter().any(|a| a == k))
        .collect()
}

/// The rejection message for the first denied annotation whose value `reference` (the pod
/// injected without the denied annotations) does not reproduce.
pub fn check_against(
    denied: &[&str],
    annotations: &Map<String, Value>,
    reference: &Value,
) -> Result<(), String> {
    for name in denied {
        let written = reference
            .at(&["metadata", "annotations"])
            .and_then(|a| a.get(*name));
        if written != annotations.get(*name) {
            return Err(format!(
                "the pod annotation {name} overrides the sidecar, and this injector's \
                 allowedOverrideAnnotations does not allow it"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn unknown_names_are_rejected_with_their_index() {
        assert!(validate_setting(&["sidecar.istio.io/proxyCPU".into()]).is_ok());
        let err = validate_setting(&[
            "proxy.istio.io/config".into(),
            "sidecar.istio.io/proxyCpu".into(),
        ])
        .unwrap_err();
        assert!(err.starts_with("allowedOverrideAnnotations[1]"), "{err}");
        assert!(err.contains("proxyCpu"), "{err}");
        // Selection is not an override.
        assert!(validate_setting(&["sidecar.istio.io/inject".into()]).is_err());
    }

    #[test]
    fn only_overrides_missing_from_the_list_are_denied() {
        let ann = map(json!({
            "sidecar.istio.io/proxyImage": "evil/proxy",
            "sidecar.istio.io/proxyCPU": "1",
            "sidecar.istio.io/inject": "true",
            "example.com/owner": "team-a",
        }));
        assert!(denied_overrides(&ann, None).is_empty());
        let allowed = vec!["sidecar.istio.io/proxyCPU".to_string()];
        assert_eq!(
            denied_overrides(&ann, Some(&allowed)),
            ["sidecar.istio.io/proxyImage"]
        );
        assert_eq!(denied_overrides(&ann, Some(&[])).len(), 2);
    }

    #[test]
    fn a_value_injection_would_write_anyway_is_not_an_override() {
        let ann = map(json!({"sidecar.istio.io/interceptionMode": "REDIRECT"}));
        let denied = ["sidecar.istio.io/interceptionMode"];
        let same =
            json!({"metadata": {"annotations": {"sidecar.istio.io/interceptionMode": "REDIRECT"}}});
        assert!(check_against(&denied, &ann, &same).is_ok());
        let other =
            json!({"metadata": {"annotations": {"sidecar.istio.io/interceptionMode": "TPROXY"}}});
        let err = check_against(&denied, &ann, &other).unwrap_err();
        assert!(err.contains("sidecar.istio.io/interceptionMode"), "{err}");
        assert!(check_against(&denied, &ann, &json!({})).is_err());
    }
}
