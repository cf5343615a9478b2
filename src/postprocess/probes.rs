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
    let probers = dump_app_probers(pod, &ports, status_port);
    let written = probers.map(|new| {
        let previously_injected = annotations.contains_key(SIDECAR_STATUS);
        set_probers_env(pod, new, previously_injected)
    });
    for list in ["containers", "initContainers"] {
        let Some(items) = pod.at_mut(&["spec", list]).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in items.iter_mut() {
            if name_of(c) != Some(PROXY_CONTAINER) {
                convert_container(c, status_port, &ports);
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
fn dump_app_probers(pod: &Value, ports: &PortFilter, status_port: i64) -> Option<Value> {
    let mut out = Map::new();
    for list in ["initContainers", "containers"] {
        let Some(items) = pod.at(&["spec", list]).and_then(Value::as_array) else {
            continue;
        };
        for c in items {
            let Some(name) = name_of(c).filter(|n| *n != PROXY_CONTAINER) else {
                continue;
            };
            for (field, prefix, suffix) in PROBE_FIELDS {
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
fn set_probers_env(pod: &mut Value, new: Value, previously_injected: bool) -> Option<String> {
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
        _ => {
            let text = marshal(&new, &PROBERS);
            env.push(value!({"name": APP_PROBERS_ENV, "value": (&text)}));
            Some(text)
        }
    }
}

/// Point the container's probes and lifecycle hooks at the status port.
fn convert_container(c: &mut Value, status_port: i64, ports: &PortFilter) {
    let Some(name) = name_of(c).map(str::to_string) else {
        return;
    };
    for (field, prefix, suffix) in PROBE_FIELDS {
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
mod tests {
    use super::*;
    use serde_json::json;

    fn hello_probes_pod() -> Value {
        // inputs/hello-probes.yaml after the template (proxy as a native sidecar).
        json!({
            "metadata": {"annotations": {"istio.io/rev": "default"}},
            "spec": {
                "initContainers": [
                    {"name": "istio-init", "args": []},
                    {"name": "istio-proxy", "env": [{"name": "TRUST_DOMAIN", "value": "cluster.local"}]}
                ],
                "containers": [
                    {
                        "name": "hello",
                        "ports": [{"name": "http", "containerPort": 80}],
                        "livenessProbe": {"httpGet": {"port": "http"}},
                        "readinessProbe": {"httpGet": {"port": 3333}},
                        "lifecycle": {"preStop": {"httpGet": {"port": 91}}, "postStart": {"tcpSocket": {"port": 93}}}
                    },
                    {
                        "name": "world",
                        "ports": [{"name": "http", "containerPort": 90}],
                        "livenessProbe": {"httpGet": {"port": "http"}},
                        "readinessProbe": {"exec": {"command": ["cat", "/tmp/healthy"]}}
                    }
                ]
            }
        })
    }

    #[test]
    fn hello_probes_golden() {
        let mut pod = hello_probes_pod();
        let env = rewrite_probes(&mut pod, 15020, true).unwrap();
        assert_eq!(
            env,
            r#"{"/app-health/hello/livez":{"httpGet":{"port":80}},"/app-health/hello/readyz":{"httpGet":{"port":3333}},"/app-health/world/livez":{"httpGet":{"port":90}},"/app-lifecycle/hello/poststartz":{"tcpSocket":{"port":93}},"/app-lifecycle/hello/prestopz":{"httpGet":{"port":91}}}"#
        );
        let proxy_env = &pod["spec"]["initContainers"][1]["env"];
        assert_eq!(proxy_env[1], json!({"name": APP_PROBERS_ENV, "value": env}));
        let hello = &pod["spec"]["containers"][0];
        assert_eq!(
            hello["livenessProbe"],
            json!({"httpGet": {"path": "/app-health/hello/livez", "port": 15020}})
        );
        assert_eq!(
            hello["readinessProbe"],
            json!({"httpGet": {"path": "/app-health/hello/readyz", "port": 15020}})
        );
        assert_eq!(
            hello["lifecycle"],
            json!({"preStop": {"httpGet": {"path": "/app-lifecycle/hello/prestopz", "port": 15020}},
                   "postStart": {"httpGet": {"path": "/app-lifecycle/hello/poststartz", "port": 15020}}})
        );
        let world = &pod["spec"]["containers"][1];
        assert_eq!(
            world["readinessProbe"],
            json!({"exec": {"command": ["cat", "/tmp/healthy"]}})
        );
        assert_eq!(
            world["livenessProbe"]["httpGet"]["path"],
            "/app-health/world/livez"
        );
    }

    #[test]
    fn disabled_by_annotation_or_values() {
        let mut pod = hello_probes_pod();
        let before = pod.clone();
        assert_eq!(rewrite_probes(&mut pod, 15020, false), None);
        assert_eq!(pod, before);
        pod["metadata"]["annotations"][REWRITE_APP_HTTP_PROBERS] = json!("false");
        assert_eq!(rewrite_probes(&mut pod, 15020, true), None);
        // hello-probes-with-flag-set-in-annotation: the annotation turns it on.
        pod["metadata"]["annotations"][REWRITE_APP_HTTP_PROBERS] = json!("true");
        assert!(rewrite_probes(&mut pod, 15020, false).is_some());
        // An invalid bool falls back to the values setting.
        let mut pod = hello_probes_pod();
        pod["metadata"]["annotations"][REWRITE_APP_HTTP_PROBERS] = json!("maybe");
        assert_eq!(rewrite_probes(&mut pod, 15020, false), None);
    }

    #[test]
    fn tcp_grpc_timeouts_scheme_and_status_port_annotation() {
        let mut pod = json!({
            "metadata": {"annotations": {STATUS_PORT: "123"}},
            "spec": {"containers": [
                {"name": "app",
                 "readinessProbe": {"tcpSocket": {"port": 8080}, "timeoutSeconds": 5, "periodSeconds": 3},
                 "livenessProbe": {"grpc": {"port": 9000}},
                 "startupProbe": {"httpGet": {"port": 8443, "scheme": "HTTPS", "path": "/start", "host": "localhost",
                                              "httpHeaders": [{"name": "A", "value": "b"}]}}},
                {"name": "istio-proxy"}
            ]}
        });
        let env = rewrite_probes(&mut pod, 15020, true).unwrap();
        assert_eq!(
            env,
            r#"{"/app-health/app/livez":{"grpc":{"port":9000,"service":null}},"/app-health/app/readyz":{"tcpSocket":{"port":8080},"timeoutSeconds":5},"/app-health/app/startupz":{"httpGet":{"path":"/start","port":8443,"host":"localhost","scheme":"HTTPS","httpHeaders":[{"name":"A","value":"b"}]}}}"#
        );
        let app = &pod["spec"]["containers"][0];
        assert_eq!(
            app["readinessProbe"],
            json!({"httpGet": {"path": "/app-health/app/readyz", "port": 123}, "timeoutSeconds": 5, "periodSeconds": 3})
        );
        assert_eq!(
            app["livenessProbe"],
            json!({"httpGet": {"path": "/app-health/app/livez", "port": 123}})
        );
        assert_eq!(
            app["startupProbe"]["httpGet"],
            json!({"port": 123, "scheme": "HTTP", "path": "/app-health/app/startupz", "host": "localhost",
                   "httpHeaders": [{"name": "A", "value": "b"}]})
        );
        assert_eq!(
            pod["spec"]["containers"][1]["env"][0]["name"],
            APP_PROBERS_ENV
        );
    }

    #[test]
    fn no_sidecar_no_probes() {
        let mut pod = json!({"spec": {"containers": [{"name": "app", "readinessProbe": {"httpGet": {"port": 80}}}]}});
        let before = pod.clone();
        assert_eq!(rewrite_probes(&mut pod, 15020, true), None);
        assert_eq!(pod, before);
        let mut pod = json!({"spec": {"containers": [{"name": "app"}, {"name": "istio-proxy"}]}});
        assert_eq!(rewrite_probes(&mut pod, 15020, true), None);
        assert!(pod["spec"]["containers"][1].get("env").is_none());
    }

    #[test]
    fn unknown_named_port_is_rewritten_but_not_recorded() {
        let mut pod = json!({"spec": {"containers": [
            {"name": "app", "readinessProbe": {"httpGet": {"port": "nope"}}, "livenessProbe": {"httpGet": {"port": "8081"}}},
            {"name": "istio-proxy"}
        ]}});
        let env = rewrite_probes(&mut pod, 15020, true).unwrap();
        assert_eq!(
            env,
            r#"{"/app-health/app/livez":{"httpGet":{"port":8081}}}"#
        );
        assert_eq!(
            pod["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"],
            15020
        );
        // Re-injection does not record the rewritten probe as an original (found by fuzzing).
        pod["metadata"] = json!({"annotations": {"sidecar.istio.io/status": "{}"}});
        let again = rewrite_probes(&mut pod, 15020, true);
        assert!(
            again.as_ref().is_none_or(|e| !e.contains("readyz")),
            "{again:?}"
        );
    }

    #[test]
    fn inbound_port_annotations_limit_rewriting() {
        let base = json!({"spec": {"containers": [
            {"name": "app", "readinessProbe": {"httpGet": {"port": 80}}, "livenessProbe": {"httpGet": {"port": 81}}},
            {"name": "istio-proxy"}
        ]}});
        let mut pod = base.clone();
        pod["metadata"] = json!({"annotations": {EXCLUDE_INBOUND_PORTS: "81"}});
        let env = rewrite_probes(&mut pod, 15020, true).unwrap();
        assert_eq!(env, r#"{"/app-health/app/readyz":{"httpGet":{"port":80}}}"#);
        assert_eq!(
            pod["spec"]["containers"][0]["livenessProbe"],
            json!({"httpGet": {"port": 81}})
        );
        let mut pod = base.clone();
        pod["metadata"] =
            json!({"annotations": {INCLUDE_INBOUND_PORTS: "81", EXCLUDE_INBOUND_PORTS: "81"}});
        let env = rewrite_probes(&mut pod, 15020, true).unwrap();
        assert_eq!(env, r#"{"/app-health/app/livez":{"httpGet":{"port":81}}}"#);
        assert_eq!(
            pod["spec"]["containers"][0]["readinessProbe"],
            json!({"httpGet": {"port": 80}})
        );
    }

    #[test]
    fn merge_probers_on_reinjection() {
        // merge-probers: the old env is kept for already rewritten probes, the new container added.
        let old = r#"{"/app-health/hello/livez":{"httpGet":{"port":80}},"/app-health/hello/readyz":{"httpGet":{"port":3333}},"/app-health/world/livez":{"httpGet":{"port":90}}}"#;
        let mut pod = json!({
            "metadata": {"annotations": {SIDECAR_STATUS: "{}"}},
            "spec": {"initContainers": [{"name": "istio-proxy", "env": [{"name": APP_PROBERS_ENV, "value": old}, {"name": "X", "value": "y"}]}],
                     "containers": [
                {"name": "hello", "ports": [{"name": "http", "containerPort": 80}],
                 "livenessProbe": {"httpGet": {"path": "/app-health/hello/livez", "port": 15020}},
                 "readinessProbe": {"httpGet": {"path": "/app-health/hello/readyz", "port": 15020}}},
                {"name": "world", "livenessProbe": {"httpGet": {"path": "/app-health/world/livez", "port": 15020}}},
                {"name": "new", "livenessProbe": {"httpGet": {"path": "/testLive", "port": 8008}}}
            ]}
        });
        let env = rewrite_probes(&mut pod, 15020, true).unwrap();
        assert_eq!(
            env,
            r#"{"/app-health/hello/livez":{"httpGet":{"port":80}},"/app-health/hello/readyz":{"httpGet":{"port":3333}},"/app-health/new/livez":{"httpGet":{"path":"/testLive","port":8008}},"/app-health/world/livez":{"httpGet":{"port":90}}}"#
        );
        let proxy_env = pod["spec"]["initContainers"][0]["env"].as_array().unwrap();
        assert_eq!(proxy_env.len(), 2);
        assert_eq!(proxy_env[0]["value"], env);
        assert_eq!(
            pod["spec"]["containers"][0]["livenessProbe"],
            json!({"httpGet": {"path": "/app-health/hello/livez", "port": 15020}})
        );
        assert_eq!(
            pod["spec"]["containers"][2]["livenessProbe"]["httpGet"]["path"],
            "/app-health/new/livez"
        );
    }

    #[test]
    fn native_sidecar_init_container_probes() {
        let mut pod = json!({"spec": {
            "initContainers": [
                {"name": "istio-init"}, {"name": "istio-proxy"},
                {"name": "other-sidecar", "restartPolicy": "Always", "readinessProbe": {"httpGet": {"port": 3333}}}
            ],
            "containers": [{"name": "hello"}]
        }});
        let env = rewrite_probes(&mut pod, 15020, true).unwrap();
        assert_eq!(
            env,
            r#"{"/app-health/other-sidecar/readyz":{"httpGet":{"port":3333}}}"#
        );
        assert_eq!(
            pod["spec"]["initContainers"][2]["readinessProbe"],
            json!({"httpGet": {"path": "/app-health/other-sidecar/readyz", "port": 15020}})
        );
    }
}
