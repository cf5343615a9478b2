//! User-supplied `istio-proxy` / `istio-init` / `istio-validation` containers, merged over the
//! template's, as Istio's `reapplyOverwrittenContainers` does, and the re-injection steps that
//! keep them (`reinsertOverrides`, `adjustInitContainerUser`).
//!
//! Istio first merges the template over the pod (so the template wins), then merges the user's
//! container back over the result (so the user wins), and records the user's containers in the
//! `proxy.istio.io/overrides` annotation (Go `json.Marshal`: struct fields in declaration order,
//! canonical quantities, `image: auto` dropped) so that re-injection can apply them again.

use crate::json::put;
use crate::json::Path;
use serde_json::{Map, Value};

use crate::go::json::{marshal, normalize};
use crate::merge::strategic::{merge, merge_list};
use crate::schema::{Ty, CONTAINER, PARSED_CONTAINERS};
use crate::sidecar::{INIT_CONTAINER, PROXY_CONTAINER, VALIDATION_CONTAINER};
use crate::values::annotations::{INTERCEPTION_MODE, SIDECAR_STATUS};
use crate::values::InjectError;

pub const PROXY_OVERRIDES: &str = "proxy.istio.io/overrides";
/// The image a user writes to mean "keep the injected image".
pub const AUTO_IMAGE: &str = "auto";

/// The user's container as Istio applies it: Go-normalised, `image: auto` dropped.
fn overlay_of(user: &Value) -> Value {
    let mut overlay = normalize(user, &Ty::Struct(CONTAINER));
    if let Some(obj) = overlay.as_object_mut() {
        if obj.get("image").and_then(Value::as_str) == Some(AUTO_IMAGE) {
            obj.remove("image");
        }
    }
    overlay
}

/// Merge a user-supplied container over the template's container of the same name: the
/// template is merged over the user's container (as when the template is applied to the pod),
/// then the user's container over that (Istio's re-application), so the user's fields win and
/// lists like `volumeMounts` and `env` are unions.
pub fn apply_container_override(template: &mut Value, user: &Value) {
    let ty = Ty::Struct(CONTAINER);
    let user_go = normalize(user, &ty);
    let first = merge(&user_go, template, &ty);
    *template = merge(&first, &overlay_of(user), &ty);
}

fn containers<'a>(pod: &'a Value, list: &str) -> &'a [Value] {
    pod.at(&["spec", list])
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn find<'a>(list: &'a [Value], name: &str) -> Option<&'a Value> {
    list.iter()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
}

fn names(list: &[Value]) -> Vec<&str> {
    list.iter()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect()
}

fn annotation<'a>(pod: &'a Value, name: &str) -> Option<&'a str> {
    pod.at(&["metadata", "annotations"])
        .and_then(|a| a.get(name))
        .and_then(Value::as_str)
}

fn existing_overrides(pod: &Value) -> Result<Value, InjectError> {
    match annotation(pod, PROXY_OVERRIDES) {
        None => Ok(Value::Null),
        Some(text) => serde_json::from_str(text)
            .map_err(|e| InjectError(format!("invalid annotation '{PROXY_OVERRIDES}': {e}"))),
    }
}

/// The names of the containers the template rendered, per list.
pub struct TemplateContainers {
    containers: Vec<String>,
    init_containers: Vec<String>,
}

impl TemplateContainers {
    /// From the rendered template pod.
    pub fn of(template: &Value) -> TemplateContainers {
        let list = |l: &str| -> Vec<String> {
            let items = template
                .get("spec")
                .and_then(|s| s.get(l))
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice);
            names(items).into_iter().map(str::to_string).collect()
        };
        TemplateContainers {
            containers: list("containers"),
            init_containers: list("initContainers"),
        }
    }

    fn contains(&self, name: &str) -> bool {
        self.containers
            .iter()
            .chain(&self.init_containers)
            .any(|n| n == name)
    }
}

/// What [`reapply_overrides`] reads of the submitted pod, kept before the pod itself moves
/// into the output: its annotations and labels, and its containers named like the
/// template's (in their order, so a lookup by name finds the same one).
pub fn submitted_parts(pod: &Value, template: &TemplateContainers) -> Value {
    let mut metadata = Map::new();
    for field in ["annotations", "labels"] {
        if let Some(v) = pod.at(&["metadata", field]) {
            metadata.insert(field.to_string(), v.clone());
        }
    }
    let mut spec = Map::new();
    for list in ["containers", "initContainers"] {
        let kept: Vec<Value> = containers(pod, list)
            .iter()
            .filter(|c| {
                c.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| template.contains(n))
            })
            .cloned()
            .collect();
        spec.insert(list.to_string(), Value::Array(kept));
    }
    let mut out = Map::new();
    put(&mut out, "metadata", Value::Object(metadata));
    put(&mut out, "spec", Value::Object(spec));
    Value::Object(out)
}

/// Istio's `reapplyOverwrittenContainers`. `final_pod` is the pod with the template applied,
/// `original` what [`submitted_parts`] kept of the pod as submitted, `template` the containers
/// and initContainers the template injects. Containers the pod defines itself are merged back
/// over the injected ones and recorded in `proxy.istio.io/overrides`.
pub fn reapply_overrides(
    final_pod: &mut Value,
    original: &Value,
    template: &TemplateContainers,
    tproxy: bool,
) -> Result<(), InjectError> {
    let existing = existing_overrides(original)?;
    let status: Option<Value> = annotation(original, SIDECAR_STATUS)
        .map(|s| serde_json::from_str(s).unwrap_or(Value::Null));
    let already_injected = status.is_some();
    let status = status.unwrap_or(Value::Null);
    let mut recorded = Map::new();
    for (list, status_key) in [
        ("containers", "containers"),
        ("initContainers", "initContainers"),
    ] {
        let injected = super::status::status_names(&status, status_key);
        let template_list = if list == "containers" {
            &template.containers
        } else {
            &template.init_containers
        };
        let mut applied = Vec::new();
        for name in template_list.iter().map(String::as_str) {
            let from_annotation = existing
                .get(list)
                .and_then(Value::as_array)
                .and_then(|l| find(l, name));
            // Re-injection: the injected container is re-rendered, but overrides recorded in
            // the annotation are applied again so that re-injection is idempotent (Istio
            // skips them and loses the user's customisation).
            let injected_before = injected.iter().any(|n| n == name);
            if injected_before && from_annotation.is_none() {
                continue;
            }
            let from_pod = if injected_before {
                None
            } else if list == "containers" {
                find(containers(original, "containers"), name)
            } else {
                find(containers(original, "containers"), name)
                    .or_else(|| find(containers(original, "initContainers"), name))
            };
            let Some(user) = from_annotation.or(from_pod) else {
                continue;
            };
            let overlay = overlay_of(user);
            merge_into_pod(final_pod, list, &overlay);
            applied.push(overlay);
        }
        if !applied.is_empty() {
            recorded.insert(list.to_string(), Value::Array(applied));
        }
    }
    if !already_injected && !recorded.is_empty() {
        let text = marshal(&Value::Object(recorded), &Ty::Struct(PARSED_CONTAINERS));
        set_annotation(final_pod, PROXY_OVERRIDES, text);
    }
    adjust_init_container_user(final_pod, original, tproxy);
    Ok(())
}

/// Strategic-merge one container into `spec.<list>` of the pod (appended when absent).
fn merge_into_pod(pod: &mut Value, list: &str, overlay: &Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let current = match spec.get_mut(list) {
        Some(Value::Array(items)) => std::mem::take(items),
        _ => Vec::new(),
    };
    let merged = merge_list(
        current,
        vec![overlay.clone()],
        "name",
        &Ty::Struct(CONTAINER),
    );
    spec.insert(list.to_string(), merged);
}

fn set_annotation(pod: &mut Value, name: &str, value: String) {
    let Some(meta) = pod.as_object_mut().map(|p| {
        p.entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()))
    }) else {
        return;
    };
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    let annotations = meta
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(a) = annotations.as_object_mut() {
        a.insert(name.to_string(), Value::String(value));
    }
}

/// Istio's `adjustInitContainerUser`: a user `istio-proxy` with its own runAsUser/runAsGroup
/// moves the iptables owner (`-u`) along, and the CNI validation container runs as that user.
/// In TPROXY mode the proxy must stay root.
///
/// On re-injection the user's proxy is the one recorded in `proxy.istio.io/overrides` (the
/// pod's own `istio-proxy` is then the injected one, root in TPROXY mode): reading the pod's
/// reset `-u` to the default and broke idempotence (found by fuzzing).
fn adjust_init_container_user(pod: &mut Value, original: &Value, tproxy: bool) {
    let recorded = existing_overrides(original).unwrap_or(Value::Null);
    let recorded_in = |list: &str| {
        recorded
            .get(list)
            .and_then(Value::as_array)
            .and_then(|l| find(l, PROXY_CONTAINER))
    };
    let user = recorded_in("containers")
        .or_else(|| recorded_in("initContainers"))
        .or_else(|| find(containers(original, "containers"), PROXY_CONTAINER))
        .or_else(|| find(containers(original, "initContainers"), PROXY_CONTAINER));
    let Some(sc) = user.and_then(|u| u.get("securityContext")) else {
        return;
    };
    let run_as_user = sc.get("runAsUser").filter(|v| !v.is_null()).cloned();
    let run_as_group = sc.get("runAsGroup").filter(|v| !v.is_null()).cloned();
    if run_as_user.is_none() && run_as_group.is_none() {
        return;
    }
    let tproxy = tproxy || annotation(pod, INTERCEPTION_MODE) == Some("TPROXY");
    if tproxy && run_as_user.is_some() {
        for list in ["containers", "initContainers"] {
            if let Some(proxy) = container_mut(pod, list, PROXY_CONTAINER) {
                if let Some(sc) = proxy
                    .get_mut("securityContext")
                    .and_then(Value::as_object_mut)
                {
                    put(sc, "runAsUser", Value::from(0));
                }
                break;
            }
        }
    }
    let init_name = if container_mut(pod, "initContainers", INIT_CONTAINER).is_some() {
        INIT_CONTAINER
    } else {
        VALIDATION_CONTAINER
    };
    let Some(init) = container_mut(pod, "initContainers", init_name) else {
        return;
    };
    if !tproxy && init_name == VALIDATION_CONTAINER {
        if let Some(obj) = init.as_object_mut() {
            let sc = obj
                .entry("securityContext")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(sc) = sc.as_object_mut() {
                if let Some(u) = &run_as_user {
                    put(sc, "runAsUser", u.clone());
                }
                if let Some(g) = &run_as_group {
                    put(sc, "runAsGroup", g.clone());
                }
            }
        }
    }
    let uid = match run_as_user.as_ref().and_then(Value::as_i64) {
        Some(uid) if uid != 0 => uid,
        _ => return,
    };
    if let Some(args) = init.get_mut("args").and_then(Value::as_array_mut) {
        if let Some(i) = args.iter().position(|a| a.as_str() == Some("-u")) {
            if let Some(slot) = args.get_mut(i + 1) {
                *slot = Value::String(uid.to_string());
            }
        }
    }
}

fn container_mut<'a>(pod: &'a mut Value, list: &str, name: &str) -> Option<&'a mut Value> {
    pod.at_mut(&["spec", list])
        .and_then(Value::as_array_mut)?
        .iter_mut()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
}

/// Istio's `reinsertOverrides`: on re-injection, containers recorded in the overrides annotation
/// that the stripped pod no longer has are put back before the template runs.
pub fn reinsert_overrides(pod: &mut Value) -> Result<(), InjectError> {
    let existing = existing_overrides(pod)?;
    for list in ["containers", "initContainers"] {
        let Some(saved) = existing.get(list).and_then(Value::as_array) else {
            continue;
        };
        let mut current = containers(pod, list).to_vec();
        for c in saved {
            let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
            if find(&current, name).is_none() {
                current.push(c.clone());
            }
        }
        if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert(list.to_string(), Value::Array(current));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The rendered template's istio-proxy (hello golden, trimmed).
    fn template_proxy() -> Value {
        json!({
            "name": "istio-proxy",
            "image": "registry.istio.io/testing/proxyv2:latest",
            "args": ["proxy", "sidecar"],
            "lifecycle": {"preStop": {"exec": {"command": ["pilot-agent", "request", "--debug-port=15020", "POST", "drain"]}}},
            "resources": {"limits": {"cpu": "2000m", "memory": "1024Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
            "restartPolicy": "Always",
            "securityContext": {
                "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "privileged": false,
                "readOnlyRootFilesystem": true, "runAsGroup": 1337, "runAsNonRoot": true, "runAsUser": 1337
            },
            "volumeMounts": [
                {"mountPath": "/var/run/secrets/workload-spiffe-uds", "name": "workload-socket"},
                {"mountPath": "/var/lib/istio/data", "name": "istio-data"},
                {"mountPath": "/etc/istio/pod", "name": "istio-podinfo"}
            ]
        })
    }

    /// The user's istio-proxy of inputs/proxy-override.yaml.
    fn user_proxy() -> Value {
        json!({
            "name": "istio-proxy",
            "image": "auto",
            "resources": {"requests": {"cpu": "123m"}, "limits": {"cpu": "3000m"}},
            "livenessProbe": {"failureThreshold": 30, "httpGet": {"path": "/healthz/ready", "port": 15021},
                              "initialDelaySeconds": 10, "periodSeconds": 2, "timeoutSeconds": 3},
            "tty": true,
            "terminationMessagePath": "/foo/bar",
            "volumeMounts": [{"mountPath": "/etc/certs", "name": "certs"}],
            "lifecycle": {"preStop": {"exec": {"command": ["sleep", "10"]}}},
            "securityContext": {"allowPrivilegeEscalation": true, "readOnlyRootFilesystem": false, "runAsUser": 1234, "runAsGroup": 1234}
        })
    }

    #[test]
    fn user_container_wins_and_lists_are_unions() {
        let mut c = template_proxy();
        apply_container_override(&mut c, &user_proxy());
        assert_eq!(c["image"], "registry.istio.io/testing/proxyv2:latest");
        assert_eq!(c["args"], json!(["proxy", "sidecar"]));
        assert_eq!(
            c["lifecycle"],
            json!({"preStop": {"exec": {"command": ["sleep", "10"]}}})
        );
        assert_eq!(
            c["resources"],
            json!({"limits": {"cpu": "3", "memory": "1024Mi"}, "requests": {"cpu": "123m", "memory": "128Mi"}})
        );
        assert_eq!(
            c["securityContext"],
            json!({"allowPrivilegeEscalation": true, "capabilities": {"drop": ["ALL"]}, "privileged": false,
                   "readOnlyRootFilesystem": false, "runAsGroup": 1234, "runAsNonRoot": true, "runAsUser": 1234})
        );
        let mounts: Vec<&str> = c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["mountPath"].as_str().unwrap())
            .collect();
        assert_eq!(
            mounts,
            [
                "/var/run/secrets/workload-spiffe-uds",
                "/var/lib/istio/data",
                "/etc/istio/pod",
                "/etc/certs"
            ]
        );
        assert_eq!(c["tty"], true);
        assert_eq!(c["terminationMessagePath"], "/foo/bar");
        assert_eq!(c["livenessProbe"]["initialDelaySeconds"], 10);
        assert_eq!(c["restartPolicy"], "Always");
    }

    #[test]
    fn user_args_and_command_replace_the_templates() {
        let mut c = template_proxy();
        apply_container_override(
            &mut c,
            &json!({"name": "istio-proxy", "image": "auto", "args": ["-c", "my-config.yaml"], "command": ["envoy"]}),
        );
        assert_eq!(c["args"], json!(["-c", "my-config.yaml"]));
        assert_eq!(c["command"], json!(["envoy"]));
        // A real image replaces the injected one.
        let mut c = template_proxy();
        apply_container_override(
            &mut c,
            &json!({"name": "istio-proxy", "image": "my/proxy:1"}),
        );
        assert_eq!(c["image"], "my/proxy:1");
    }

    fn injected_pod(init_args: Value) -> Value {
        json!({
            "metadata": {"annotations": {"istio.io/rev": "default"}},
            "spec": {
                "initContainers": [
                    {"name": "istio-init", "image": "registry.istio.io/testing/proxyv2:latest", "args": init_args},
                    template_proxy()
                ],
                "containers": [{"name": "hello", "image": "hello"}]
            }
        })
    }

    #[test]
    fn overrides_annotation_matches_the_proxy_override_golden() {
        let original = json!({
            "metadata": {"labels": {"app": "hello"}},
            "spec": {
                "initContainers": [{"name": "istio-init", "args": ["my", "custom", "args"], "image": "fake/custom-image"}],
                "containers": [{"name": "hello", "image": "hello"}, user_proxy()]
            }
        });
        let template = TemplateContainers::of(
            &json!({"spec": {"initContainers": [{"name": "istio-init"}, {"name": "istio-proxy"}], "containers": []}}),
        );
        let mut pod = injected_pod(json!(["istio-iptables", "-u", "1337"]));
        reapply_overrides(&mut pod, &original, &template, false).unwrap();
        assert_eq!(
            pod["metadata"]["annotations"][PROXY_OVERRIDES],
            "{\"initContainers\":[{\"name\":\"istio-init\",\"image\":\"fake/custom-image\",\"args\":[\"my\",\"custom\",\"args\"],\"resources\":{}},\
{\"name\":\"istio-proxy\",\"resources\":{\"limits\":{\"cpu\":\"3\"},\"requests\":{\"cpu\":\"123m\"}},\
\"volumeMounts\":[{\"name\":\"certs\",\"mountPath\":\"/etc/certs\"}],\
\"livenessProbe\":{\"httpGet\":{\"path\":\"/healthz/ready\",\"port\":15021},\"initialDelaySeconds\":10,\"timeoutSeconds\":3,\"periodSeconds\":2,\"failureThreshold\":30},\
\"lifecycle\":{\"preStop\":{\"exec\":{\"command\":[\"sleep\",\"10\"]}}},\"terminationMessagePath\":\"/foo/bar\",\
\"securityContext\":{\"runAsUser\":1234,\"runAsGroup\":1234,\"readOnlyRootFilesystem\":false,\"allowPrivilegeEscalation\":true},\"tty\":true}]}"
        );
        let init = &pod["spec"]["initContainers"][0];
        assert_eq!(init["args"], json!(["my", "custom", "args"]));
        assert_eq!(init["image"], "fake/custom-image");
        assert_eq!(
            pod["spec"]["initContainers"][1]["securityContext"]["runAsUser"],
            1234
        );
    }

    #[test]
    fn run_as_user_moves_the_iptables_owner() {
        let original = json!({"spec": {"containers": [
            {"name": "hello"},
            {"name": "istio-proxy", "image": "auto", "securityContext": {"runAsUser": 1234, "runAsGroup": 4321}}
        ]}});
        let template = TemplateContainers::of(
            &json!({"spec": {"initContainers": [{"name": "istio-init"}, {"name": "istio-proxy"}]}}),
        );
        let mut pod = injected_pod(json!([
            "istio-iptables",
            "-p",
            "15001",
            "-u",
            "1337",
            "-m",
            "REDIRECT"
        ]));
        reapply_overrides(&mut pod, &original, &template, false).unwrap();
        assert_eq!(
            pod["spec"]["initContainers"][0]["args"],
            json!([
                "istio-iptables",
                "-p",
                "15001",
                "-u",
                "1234",
                "-m",
                "REDIRECT"
            ])
        );
        assert_eq!(
            pod["metadata"]["annotations"][PROXY_OVERRIDES],
            "{\"initContainers\":[{\"name\":\"istio-proxy\",\"resources\":{},\"securityContext\":{\"runAsUser\":1234,\"runAsGroup\":4321}}]}"
        );
        let sc = &pod["spec"]["initContainers"][1]["securityContext"];
        assert_eq!(
            (sc["runAsUser"].as_i64(), sc["runAsGroup"].as_i64()),
            (Some(1234), Some(4321))
        );

        // TPROXY: the proxy stays root, the validation container keeps its user.
        let mut pod = injected_pod(json!(["istio-iptables", "-u", "1337"]));
        reapply_overrides(&mut pod, &original, &template, true).unwrap();
        assert_eq!(
            pod["spec"]["initContainers"][1]["securityContext"]["runAsUser"],
            0
        );

        // CNI: istio-validation runs as the user's uid/gid.
        let mut pod = injected_pod(json!(["istio-iptables", "-u", "1337"]));
        pod["spec"]["initContainers"][0]["name"] = json!("istio-validation");
        let template = TemplateContainers::of(
            &json!({"spec": {"initContainers": [{"name": "istio-validation"}, {"name": "istio-proxy"}]}}),
        );
        reapply_overrides(&mut pod, &original, &template, false).unwrap();
        let v = &pod["spec"]["initContainers"][0];
        assert_eq!(
            v["securityContext"],
            json!({"runAsUser": 1234, "runAsGroup": 4321})
        );
        assert_eq!(v["args"], json!(["istio-iptables", "-u", "1234"]));
    }

    #[test]
    fn reinjection_does_not_reapply_injected_containers() {
        let status = "{\"initContainers\":[\"istio-init\",\"istio-proxy\"],\"containers\":null,\"volumes\":[],\"imagePullSecrets\":null,\"revision\":\"default\"}";
        let original = json!({
            "metadata": {"annotations": {SIDECAR_STATUS: status}},
            "spec": {"initContainers": [{"name": "istio-init", "args": ["old"]}, {"name": "istio-proxy", "image": "old"}], "containers": [{"name": "hello"}]}
        });
        let template = TemplateContainers::of(
            &json!({"spec": {"initContainers": [{"name": "istio-init"}, {"name": "istio-proxy"}]}}),
        );
        let mut pod = injected_pod(json!(["istio-iptables"]));
        let before = pod.clone();
        reapply_overrides(&mut pod, &original, &template, false).unwrap();
        assert_eq!(pod, before);
    }

    #[test]
    fn reinsert_puts_back_recorded_overrides() {
        let mut pod = json!({
            "metadata": {"annotations": {PROXY_OVERRIDES: "{\"containers\":[{\"name\":\"istio-proxy\",\"resources\":{},\"tty\":true}]}"}},
            "spec": {"containers": [{"name": "hello"}]}
        });
        reinsert_overrides(&mut pod).unwrap();
        assert_eq!(
            pod["spec"]["containers"][1],
            json!({"name": "istio-proxy", "resources": {}, "tty": true})
        );
        let mut bad = json!({"metadata": {"annotations": {PROXY_OVERRIDES: "{"}}, "spec": {}});
        assert!(reinsert_overrides(&mut bad)
            .unwrap_err()
            .0
            .contains(PROXY_OVERRIDES));
    }
}
