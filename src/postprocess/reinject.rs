//! Re-injection: strip what a previous injection added (per its `sidecar.istio.io/status`),
//! so that injecting an injected pod renders the same template again (`stripPod`), and put
//! back user overrides recorded in `proxy.istio.io/overrides` (`reinsertOverrides`).

use crate::json::Path;
use serde_json::Value;
use std::borrow::Cow;

use super::status::status_names;
use super::{overrides, prometheus};
use crate::values::annotations::SIDECAR_STATUS;
use crate::values::InjectError;
use crate::versions::Behaviour;

/// The previous injection's record, when the pod carries a parseable one.
pub fn previous_status(pod: &Value) -> Option<Value> {
    let text = pod
        .at(&["metadata", "annotations"])
        .and_then(|a| a.get(SIDECAR_STATUS))
        .and_then(Value::as_str)?;
    serde_json::from_str::<Value>(text)
        .ok()
        .filter(Value::is_object)
}

fn remove_named(pod: &mut Value, list: &str, names: &[String]) {
    if let Some(items) = pod.at_mut(&["spec", list]).and_then(Value::as_array_mut) {
        items.retain(|c| {
            c.get("name")
                .and_then(Value::as_str)
                .is_none_or(|n| !names.iter().any(|x| x == n))
        });
    }
}

/// The pod as the template should see it. `status_port` is the mesh's proxy status port:
/// prometheus annotations pointing at it were written by the previous injection.
/// A pod with neither a previous injection's status nor recorded overrides is its own view:
/// it is borrowed, not copied.
pub fn template_view<'a>(
    pod: &'a Value,
    status_port: &str,
    behaviour: Behaviour,
) -> Result<Cow<'a, Value>, InjectError> {
    let has_overrides = pod
        .at(&["metadata", "annotations"])
        .is_some_and(|a| a.get(overrides::PROXY_OVERRIDES).is_some());
    if !has_overrides && previous_status(pod).is_none() {
        return Ok(Cow::Borrowed(pod));
    }
    let mut out = pod.clone();
    if let Some(status) = previous_status(pod) {
        remove_named(&mut out, "containers", &status_names(&status, "containers"));
        remove_named(
            &mut out,
            "initContainers",
            &status_names(&status, "initContainers"),
        );
        if let Some(ann) = out
            .at_mut(&["metadata", "annotations"])
            .and_then(Value::as_object_mut)
        {
            if prometheus::prometheus_port(ann).as_deref() == Some(status_port) {
                prometheus::clear_prometheus(ann, behaviour);
            }
            ann.remove(SIDECAR_STATUS);
        }
    }
    overrides::reinsert_overrides(&mut out)?;
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strips_injected_containers_and_scrape_annotations() {
        let pod = json!({
            "metadata": {"annotations": {
                SIDECAR_STATUS: r#"{"initContainers":["istio-init"],"containers":["istio-proxy"]}"#,
                "prometheus.io/port": "15020", "prometheus.io/scrape": "true", "keep": "x"}},
            "spec": {"containers": [{"name": "app"}, {"name": "istio-proxy"}],
                     "initContainers": [{"name": "istio-init"}, {"name": "user-init"}]}
        });
        let v = template_view(&pod, "15020", Behaviour::default()).unwrap();
        assert_eq!(v["spec"]["containers"], json!([{"name": "app"}]));
        assert_eq!(v["spec"]["initContainers"], json!([{"name": "user-init"}]));
        assert_eq!(v["metadata"]["annotations"], json!({"keep": "x"}));
    }

    #[test]
    fn pod_without_status_is_unchanged() {
        let pod = json!({"metadata": {"annotations": {"prometheus.io/port": "15020"}},
            "spec": {"containers": [{"name": "istio-proxy"}]}});
        let view = template_view(&pod, "15020", Behaviour::default()).unwrap();
        assert!(matches!(view, Cow::Borrowed(_)), "copied without need");
        assert_eq!(view.into_owned(), pod);
    }
}
