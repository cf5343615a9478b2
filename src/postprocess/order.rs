//! Istio's `reorderPod` / `modifyContainers`: where the proxy and the init containers go.

use serde_json::Value;

use super::{is_named, list_mut};
use crate::json::meta_map;
use crate::sidecar::PROXY_CONTAINER;

const INIT_BEFORE_PROXY: &str = "sidecar.istio.io/init-containers-before-proxy";

#[derive(Clone, Copy)]
enum Place {
    First,
    Last,
}

/// `modifyContainers`: move the container called `name` first or last.
fn place(list: &mut Vec<Value>, name: &str, at: Place) {
    let Some(i) = list.iter().rposition(|c| is_named(c, name)) else {
        return;
    };
    let c = list.remove(i);
    list.retain(|c| !is_named(c, name));
    match at {
        Place::First => list.insert(0, c),
        Place::Last => list.push(c),
    }
}

/// `reorderPod`: proxy last among containers (first when holding the application); with a
/// native sidecar, init containers run istio-init/istio-validation, the proxy, then the rest.
pub fn reorder(pod: &mut Value, hold: bool) {
    let before: Vec<String> = meta_map(pod, "annotations")
        .get(INIT_BEFORE_PROXY)
        .and_then(Value::as_str)
        .map(|s| {
            let mut seen: Vec<String> = Vec::new();
            for n in s.split(',') {
                if !seen.iter().any(|x| x == n) {
                    seen.push(n.to_string());
                }
            }
            seen
        })
        .unwrap_or_default();
    if let Some(cs) = list_mut(pod, "containers") {
        place(
            cs,
            PROXY_CONTAINER,
            if hold { Place::First } else { Place::Last },
        );
    }
    let Some(init) = list_mut(pod, "initContainers") else {
        return;
    };
    if init.iter().any(|c| is_named(c, PROXY_CONTAINER)) {
        place(init, "enable-core-dump", Place::First);
        place(init, PROXY_CONTAINER, Place::First);
        for name in before.iter().rev() {
            place(init, name, Place::First);
        }
        place(init, "istio-validation", Place::First);
        place(init, "istio-init", Place::First);
    } else {
        place(init, "istio-validation", Place::First);
        place(init, "istio-init", Place::Last);
        place(init, "enable-core-dump", Place::Last);
    }
}
