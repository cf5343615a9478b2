//! The rendered template merged into the pod, as Istio's webhook does it: a strategic merge
//! patch of the template over the pod ([`strategic`]), after a native sidecar's
//! customisation has moved to where the template puts the proxy.

pub mod strategic;

use crate::json::value;
use crate::json::Path;
use serde_json::Value;

use crate::schema::{Ty, POD};
use crate::sidecar::PROXY_CONTAINER;

/// Merge the template pod into `pod` (the template wins; the user's containers are put back
/// over it in post-processing).
pub fn template_into(pod: &mut Value, template: Value, native: bool) {
    if native {
        // A proxy customisation (or a classic injection) sits in `containers`; the native
        // template has it in `initContainers`: move it there before merging.
        move_container(pod, "containers", "initContainers", PROXY_CONTAINER);
    }
    strategic::merge_into(pod, template, &Ty::Struct(POD));
}

/// Move the first container called `name` from `spec[from]` to the end of `spec[to]`.
fn move_container(pod: &mut Value, from: &str, to: &str, name: &str) {
    let named = |c: &Value| c.get("name").and_then(Value::as_str) == Some(name);
    let Some(src) = pod.at_mut(&["spec", from]).and_then(Value::as_array_mut) else {
        return;
    };
    let Some(i) = src.iter().position(named) else {
        return;
    };
    let c = src.remove(i);
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        let dst = spec.entry(to).or_insert_with(|| value!([]));
        if let Some(d) = dst.as_array_mut() {
            d.push(c);
        }
    }
}
