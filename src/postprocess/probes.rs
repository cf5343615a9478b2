//! App probe rewriting (Istio's `app_probe.go` and `applyRewrite`).
//!
//! With mTLS the kubelet cannot reach the app's probe ports directly, so every httpGet, tcpSocket
//! and grpc probe (and httpGet/tcpSocket lifecycle hook) of the app containers becomes an httpGet
//! on the agent's status port at `/app-health/<container>/{readyz,livez,startupz}` (hooks:
//! `/app-lifecycle/<container>/{prestopz,poststartz}`); the originals go into the proxy's
//! `ISTIO_KUBE_APP_PROBERS` env (Go `json.Marshal` of `map[string]*Prober`).

use crate::json::Path;

use crate::json::{put, value};
use serde_json::{Map, Value};

use crate::go::fmt::parse_bool;
use crate::go::json::marshal;
use crate::schema::{Ty, PROBER};
use crate::sidecar::PROXY_CONTAINER;
use crate::values::annotations::{
    EXCLUDE_INBOUND_PORTS, INCLUDE_INBOUND_PORTS, REWRITE_APP_HTTP_PROBERS, SIDECAR_STATUS,
    STATUS_PORT,
};
use crate::versions::{Behaviour, Change};

pub const APP_PROBERS_ENV: &str = "ISTIO_KUBE_APP_PROBERS";

const PROBERS: Ty = Ty::Map(&Ty::Struct(PROBER));

/// Whether probes are rewritten: the pod's `sidecar.istio.io/rewriteAppHTTPProbers` when it is a
/// valid Go bool, else `values.sidecarInjectorWebhook.rewriteAppHTTPProbe`.
pub fn should_rewrite(annotations: &Map<String, Value>, values_default: bool) -> bool {
    annotations
        .get(REWRITE_APP_HTTP_PROBERS)
        .and_then(Value::as_str)
        .and_then(parse_bool)
        .unwrap_or(values_default)
}

/// Rewrite the probes of the (already templated) pod and set `ISTIO_KUBE_APP_PROBERS` on its
/// `istio-proxy` container. `mesh_status_port` is `meshConfig.defaultConfig.statusPort`; the
/// pod's `status.sidecar.istio.io/port` annotation overrides it. Returns the env value written,
/// if any. A pod without `istio-proxy` is left alone.
pub fn rewrite_probes(
    pod: &mut Value,
    mesh_status_port: u16,
    rewrite_default: bool,
) -> Option<String> {
    rewrite_probes_at(pod, mesh_status_port, rewrite_default, Behaviour::default())
}

/// [`rewrite_probes`] as the given version's injector does it: lifecycle hooks only from 1.25
/// (R10), and on re-injection without a recorded env the probers are added only from 1.27
/// (R25).
pub fn rewrite_probes_at(
    pod: &mut Value,
    mesh_status_port: u16,
    rewrite_default: bool,
    behaviour: Behaviour,
) -> Option<String> {
    let hooks = behaviour.has(Change::LifecycleHookRewrite);
    let annotations = pod
        .at(&["metadata", "annotations"])
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let has_sidecar = ["containers", "initContainers"]
        .iter()
        .any(|list| sidecar_index(pod, list).is_some());
    if !has_sidecar || !should_rewrite(&annotations, rewrite_default) {
        return None;
    }
    let ports = port_filter(&annotations);
    let status_port = match annotations.get(STATUS_PORT).and_then(Value::as_str) {
        // Istio uses strconv.Atoi and keeps its zero result on error.
        Some(v) => v.parse::<i64>().unwrap_or(0),
        None => i64::from(mesh_status_port),
    };
    let probers = dump_app_probers(pod, &ports, status_port, hooks);
    let written = probers.map(|new| {
        let previously_injected = annotations.contains_key(SIDECAR_STATUS);
        let append_on_reinjection = behaviour.has(Change::ProbersOnReinjection);
        set_probers_env(pod, new, previously_injected, append_on_reinjection)
    });
    for list in ["containers", "initContainers"] {
        let Some(items) = pod.at_mut(&["spec", list]).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in items.iter_mut() {
            if name_of(c) != Some(PROXY_CONTAINER) {
                convert_container(c, status_port, &ports, hooks);
            }
        }
    }
    written.flatten()
}

fn name_of(c: &Value) -> Option<&str> {
    c.get("name").and_then(Value::as_str)
}

fn sidecar_index(pod: &Value, list: &str) -> Option<usize> {
    pod.at(&["spec", list])?
        .as_array()?
        .iter()
        .position(|c| name_of(c) == Some(PROXY_CONTAINER))
}

/// Which inbound ports the sidecar captures, from the include/exclude annotations: the ports
/// listed and whether they are the included or the excluded ones (empty = everything). A few
/// ports at most, so a list: a `HashMap` brought hashbrown and SipHash into policy.wasm.
struct PortFilter {
    listed: Vec<i64>,
    included: bool,
}

fn port_filter(annotations: &Map<String, Value>) -> PortFilter {
    let text = |name: &str| {
        annotations
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (include, exclude) = (text(INCLUDE_INBOUND_PORTS), text(EXCLUDE_INBOUND_PORTS));
    let parse = |list: &str| -> Vec<i64> {
        list.split(',')
            .filter_map(|p| p.trim().parse::<i64>().ok())
            .filter(|p| *p != 0)
            .collect()
    };
    if !include.is_empty() && include != "*" {
        return PortFilter {
            listed: parse(&include),
            included: true,
        };
    }
    PortFilter {
        listed: parse(&exclude),
        included: false,
    }
}

/// Istio's `isPortIncluded`: listed ports follow their flag; unlisted ones are included unless
/// an include list exists.
fn is_port_included(port: i64, ports: &PortFilter) -> bool {
    if ports.listed.contains(&port) {
        ports.included
    } else {
        !ports.included || ports.listed.is_empty()
    }
}

/// The probe and lifecycle fields the agent takes over, with the prefix and suffix of the
/// status-port path it serves each one on (`<prefix><container><suffix>`).
const PROBE_FIELDS: [(&str, &str, &str); 5] = [
    ("readinessProbe", "/app-health/", "/readyz"),
    ("livenessProbe", "/app-health/", "/livez"),
    ("startupProbe", "/app-health/", "/startupz"),
    ("preStop", "/app-lifecycle/", "/prestopz"),
    ("postStart", "/app-lifecycle/", "/poststartz"),
];

/// The fields a version rewrites: the probes, and the lifecycle hooks from 1.25 (R10).
fn fields(hooks: bool) -> &'static [(&'static str, &'static str, &'static str)] {
    if hooks {
        &PROBE_FIELDS
    } else {
        &PROBE_FIELDS[..3]
    }
}

/// The agent's path for `container`'s probe: built only for the probes a container has
/// (`format!` for all five of every container was 2 % of a request).
fn url_path(prefix: &str, container: &str, suffix: &str) -> String {
    let mut url = String::with_capacity(prefix.len() + container.len() + suffix.len());
    url.push_str(prefix);
    url.push_str(container);
    url.push_str(suffix);
    url
}

/// The original probes as Istio's probers, keyed by their status-port path (`None` when empty).
/// A probe that already points at the agent's own URL on the status port was rewritten by a
/// previous injection (one whose original could not be recorded, e.g. an unknown named port):
/// recording it would make the agent probe itself and break re-injection's idempotence.
fn dump_app_probers(
    pod: &Value,
    ports: &PortFilter,
    status_port: i64,
    hooks: bool,
) -> Option<Value> {
    let mut out = Map::new();
    for list in ["initContainers", "containers"] {
        let Some(items) = pod.at(&["spec", list]).and_then(Value::as_array) else {
            continue;
        };
        for c in items {
            let Some(name) = name_of(c).filter(|n| *n != PROXY_CONTAINER) else {
                continue;
            };
            for &(field, prefix, suffix) in fields(hooks) {
                let (handler, with_timeout) = match field {
                    "preStop" | "postStart" => {
                        (c.get("lifecycle").and_then(|l| l.get(field)), false)
                    }
                    _ => (c.get(field), true),
                };
                let Some(p) = handler.and_then(|h| to_prober(h, with_timeout, c, ports)) else {
                    continue;
                };
                let url = url_path(prefix, name, suffix);
                let own = p.at(&["httpGet", "path"]).and_then(Value::as_str) == Some(url.as_str())
                    && p.at(&["httpGet", "port"]).and_then(Value::as_i64) == Some(status_port);
                if !own {
                    out.insert(url, p);
                }
            }
        }
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

/// One probe (or lifecycle handler) as a prober with its port resolved, or `None` when it is
/// not an httpGet/tcpSocket/grpc action, names an unknown port, or targets an uncaptured port.
fn to_prober(
    handler: &Value,
    with_timeout: bool,
    container: &Value,
    ports: &PortFilter,
) -> Option<Value> {
    let mut prober = Map::new();
    if with_timeout {
        if let Some(t) = handler.get("timeoutSeconds").filter(|t| !t.is_null()) {
            put(&mut prober, "timeoutSeconds", t.clone());
        }
    }
    let http_or_tcp = ["httpGet", "tcpSocket"]
        .iter()
        .find_map(|k| handler.get(*k).filter(|a| a.is_object()).map(|a| (*k, a)));
    let Some((kind, action)) = http_or_tcp else {
        let grpc = handler
            .get("grpc")
            .filter(|g| with_timeout && g.is_object())?;
        let port = grpc.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !is_port_included(port, ports) {
            return None;
        }
        put(&mut prober, "grpc", grpc.clone());
        return Some(Value::Object(prober));
    };
    let port = match action.get("port") {
        Some(Value::Number(n)) => n.as_i64()?,
        Some(Value::String(s)) => {
            named_port(container, s).or_else(|| s.parse::<i32>().ok().map(i64::from))?
        }
        _ => 0,
    };
    if !is_port_included(port, ports) {
        return None;
    }
    let mut action = action.clone();
    action["port"] = value!(port);
    prober.insert(kind.to_string(), action);
    Some(Value::Object(prober))
}

fn named_port(container: &Value, name: &str) -> Option<i64> {
    container
        .get("ports")?
        .as_array()?
        .iter()
        .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
        .and_then(|p| p.get("containerPort"))
        .and_then(Value::as_i64)
        .filter(|p| *p > 0)
}

/// Append the env, or on re-injection merge it into the existing one (old entries win).
/// Before 1.27 (`append_on_reinjection` false) a re-injected proxy without the env gets none.
fn set_probers_env(
    pod: &mut Value,
    new: Value,
    previously_injected: bool,
    append_on_reinjection: bool,
) -> Option<String> {
    let list = if sidecar_index(pod, "containers").is_some() {
        "containers"
    } else {
        "initContainers"
    };
    let idx = sidecar_index(pod, list)?;
    let sidecar = pod
        .at_mut(&["spec", list])?
        .as_array_mut()?
        .get_mut(idx)?
        .as_object_mut()?;
    let env = sidecar
        .entry("env")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !env.is_array() {
        *env = Value::Array(Vec::new());
    }
    let env = env.as_array_mut()?;
    let existing = env
        .iter_mut()
        .find(|e| e.get("name").and_then(Value::as_str) == Some(APP_PROBERS_ENV));
    match existing {
        Some(entry) if previously_injected => {
            let old = entry
                .get("value")
                .and_then(Value::as_str)
                .unwrap_or_default();
            // An unreadable old value leaves the env as it is, like Istio.
            let Ok(Value::Object(old)) = serde_json::from_str::<Value>(old) else {
                return None;
            };
            let mut merged = new.as_object().cloned().unwrap_or_default();
            merged.extend(old);
            let text = marshal(&Value::Object(merged), &PROBERS);
            *entry = value!({"name": APP_PROBERS_ENV, "value": (&text)});
            Some(text)
        }
        None if previously_injected && !append_on_reinjection => None,
        _ => {
            let text = marshal(&new, &PROBERS);
            env.push(value!({"name": APP_PROBERS_ENV, "value": (&text)}));
            Some(text)
        }
    }
}

/// Point the container's probes and lifecycle hooks at the status port.
fn convert_container(c: &mut Value, status_port: i64, ports: &PortFilter, hooks: bool) {
    let Some(name) = name_of(c).map(str::to_string) else {
        return;
    };
    for &(field, prefix, suffix) in fields(hooks) {
        let is_hook = matches!(field, "preStop" | "postStart");
        let slot = if is_hook {
            c.get_mut("lifecycle").and_then(|l| l.get_mut(field))
        } else {
            c.get_mut(field)
        };
        let Some(handler) = slot.filter(|h| h.is_object()) else {
            continue;
        };
        if !is_port_included(action_port(handler), ports) {
            continue;
        }
        convert_handler(
            handler,
            &url_path(prefix, &name, suffix),
            status_port,
            !is_hook,
        );
    }
}

/// The numeric port of a probe (0 for named ports, as Go's `IntVal`).
fn action_port(handler: &Value) -> i64 {
    for kind in ["httpGet", "tcpSocket", "grpc"] {
        if let Some(a) = handler.get(kind).filter(|a| a.is_object()) {
            return a.get("port").and_then(Value::as_i64).unwrap_or(0);
        }
    }
    0
}

fn convert_handler(handler: &mut Value, url: &str, status_port: i64, allow_grpc: bool) {
    let Some(obj) = handler.as_object_mut() else {
        return;
    };
    if let Some(Value::Object(http)) = obj.get_mut("httpGet") {
        put(http, "port", value!(status_port));
        put(http, "path", value!(url));
        if http.get("scheme").and_then(Value::as_str) == Some("HTTPS") {
            put(http, "scheme", value!("HTTP"));
        }
        return;
    }
    let replaced = if obj.get("tcpSocket").is_some_and(Value::is_object) {
        obj.remove("tcpSocket")
    } else if allow_grpc && obj.get("grpc").is_some_and(Value::is_object) {
        obj.remove("grpc")
    } else {
        None
    };
    if replaced.is_some() {
        put(obj, "httpGet", value!({"path": url, "port": status_port}));
    }
}

#[cfg(test)]
mod tests;
