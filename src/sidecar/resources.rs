//! The proxy containers' `resources`: Istio's template takes `values.global.proxy.resources`
//! as is, unless one of the `sidecar.istio.io/proxy{CPU,Memory,CPULimit,MemoryLimit}`
//! annotations is set: then only the annotations count.

use serde_json::{Map, Value};

use super::Render;
use crate::go::quantity::{canonical_quantity, canonical_resources, scalar_text};
use crate::values::annotations::{PROXY_CPU, PROXY_CPU_LIMIT, PROXY_MEMORY, PROXY_MEMORY_LIMIT};
use crate::values::helm::Key;
use crate::values::InjectError;

/// Whether the pod sets any of the proxy resource annotations (otherwise the proxy gets the
/// canonical `values.global.proxy.resources`, computed once per settings).
pub fn has_resource_annotations(annotations: &Map<String, Value>) -> bool {
    [PROXY_CPU, PROXY_MEMORY, PROXY_CPU_LIMIT, PROXY_MEMORY_LIMIT]
        .iter()
        .any(|a| annotations.contains_key(*a))
}

/// The `resources` of the injected proxy containers: from the annotations when any is set,
/// else the canonical helm value.
pub fn proxy_resources(
    values_resources: &Value,
    annotations: &Map<String, Value>,
) -> Result<Value, InjectError> {
    let get = |name: &'static str| annotations.get(name).map(|v| (name, v));
    let requests = [("cpu", get(PROXY_CPU)), ("memory", get(PROXY_MEMORY))];
    let limits = [
        ("cpu", get(PROXY_CPU_LIMIT)),
        ("memory", get(PROXY_MEMORY_LIMIT)),
    ];
    if requests
        .iter()
        .chain(limits.iter())
        .all(|(_, a)| a.is_none())
    {
        return canonical_resources(values_resources)
            .map_err(|e| InjectError(format!("invalid values.global.proxy.resources: {e}")));
    }
    let mut out = Map::new();
    for (section, entries) in [("requests", requests), ("limits", limits)] {
        let mut m = Map::new();
        for (resource, annotation) in entries {
            let Some((name, value)) = annotation else {
                continue;
            };
            let text = scalar_text(value).unwrap_or_default();
            // The rendered YAML is decoded into a resource.Quantity, whose UnmarshalJSON
            // trims whitespace: `" 100m "` renders (the 1.27+ annotation check, which does
            // not trim, refuses it before rendering).
            let q = canonical_quantity(text.trim()).map_err(|e| {
                InjectError(format!(
                    "invalid value '{text}' for annotation '{name}': {e}"
                ))
            })?;
            m.insert(resource.to_string(), Value::String(q));
        }
        if !m.is_empty() {
            out.insert(section.to_string(), Value::Object(m));
        }
    }
    Ok(Value::Object(out))
}

/// The `resources` of the injected containers: the canonical helm value (computed once per
/// settings) unless the pod's annotations set them.
pub fn resources_of(r: &Render) -> Result<Value, InjectError> {
    if !has_resource_annotations(r.annotations) {
        return r
            .default_resources
            .clone()
            .map_err(|e| InjectError(format!("invalid values.global.proxy.resources: {e}")));
    }
    let values = r.helm.get(Key::Resources).unwrap_or(&Value::Null);
    proxy_resources(values, r.annotations)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn anns(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn values_resources_are_canonicalised_with_nulls_dropped() {
        // proxy-resources-mixed-null: the merged values keep a null only if the merge did not delete it.
        let values = json!({
            "limits": {"cpu": null, "memory": "500Mi", "ephemeral-storage": null},
            "requests": {"cpu": "100m", "ephemeral-storage": "1Gi"}
        });
        let got = proxy_resources(&values, &Map::new()).unwrap();
        assert_eq!(
            got,
            json!({"limits": {"memory": "500Mi"}, "requests": {"cpu": "100m", "ephemeral-storage": "1Gi"}})
        );
        // Chart defaults and proxy-resources-zero.
        let defaults = json!({"limits": {"cpu": "2000m", "memory": "1024Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}});
        assert_eq!(
            proxy_resources(&defaults, &Map::new()).unwrap(),
            json!({"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "100m", "memory": "128Mi"}})
        );
        let zero = json!({"limits": {"cpu": "0", "memory": "500Mi"}, "requests": {"cpu": 0, "memory": "150Mi"}});
        assert_eq!(
            proxy_resources(&zero, &Map::new()).unwrap(),
            json!({"limits": {"cpu": "0", "memory": "500Mi"}, "requests": {"cpu": "0", "memory": "150Mi"}})
        );
        assert_eq!(
            proxy_resources(&Value::Null, &Map::new()).unwrap(),
            json!({})
        );
    }

    #[test]
    fn annotations_replace_values_entirely() {
        let defaults = json!({"limits": {"cpu": "2000m", "memory": "1024Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}});
        // resource_annotations golden.
        let a = anns(json!({
            PROXY_CPU: "100m", PROXY_CPU_LIMIT: "1000m", PROXY_MEMORY: "1Gi", PROXY_MEMORY_LIMIT: "2Gi"
        }));
        assert_eq!(
            proxy_resources(&defaults, &a).unwrap(),
            json!({"limits": {"cpu": "1", "memory": "2Gi"}, "requests": {"cpu": "100m", "memory": "1Gi"}})
        );
        // Only a memory request: no limits at all, no cpu request.
        let a = anns(json!({PROXY_MEMORY: "256Mi"}));
        assert_eq!(
            proxy_resources(&defaults, &a).unwrap(),
            json!({"requests": {"memory": "256Mi"}})
        );
        let a = anns(json!({PROXY_CPU_LIMIT: "1500m"}));
        assert_eq!(
            proxy_resources(&defaults, &a).unwrap(),
            json!({"limits": {"cpu": "1500m"}})
        );
    }

    /// Istio decodes the rendered quantity with `resource.Quantity`'s UnmarshalJSON, which
    /// trims whitespace: versions that do not check the annotation first (before 1.27) admit it.
    #[test]
    fn annotation_quantities_are_trimmed_as_istio_decodes_them() {
        let a = anns(json!({PROXY_CPU: " 100m ", PROXY_MEMORY: "\t1Gi\n"}));
        assert_eq!(
            proxy_resources(&json!({}), &a).unwrap(),
            json!({"requests": {"cpu": "100m", "memory": "1Gi"}})
        );
    }

    #[test]
    fn bad_annotation_quantity_names_the_annotation() {
        let a = anns(json!({PROXY_MEMORY_LIMIT: "lots"}));
        let err = proxy_resources(&json!({}), &a).unwrap_err().0;
        assert!(err.contains("sidecar.istio.io/proxyMemoryLimit"), "{err}");
    }
}
