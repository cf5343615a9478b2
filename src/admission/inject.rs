//! One pod's injection, the pipeline layer by layer: the pod as the template sees it
//! (a previous injection stripped), the effective values, the sidecar's parts rendered, the
//! strategic merge into the pod, then Istio's post-processing.

use crate::json::{meta_map, Path};
use serde_json::{Map, Value};
use std::borrow::Cow;

use crate::go::fmt::sprint;
use crate::merge;
use crate::postprocess::{self, overrides::submitted_parts, overrides::TemplateContainers};
use crate::postprocess::{reinject::template_view, status::status_annotation};
use crate::settings::Settings;
use crate::sidecar;
use crate::values::traffic::TrafficConfig;
use crate::values::workload::workload_of;
use crate::values::{self, annotations, override_policy, proxy_config};
use crate::versions::Change;

pub use crate::values::InjectError;

/// What the injector knows besides the pod itself.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub settings: &'a Settings,
    /// The namespace the pod is created in (request namespace, else the pod's, else `default`).
    pub namespace: &'a str,
}

const NATIVE_SIDECAR: &str = "sidecar.istio.io/nativeSidecar";

/// Return the injected pod. The input is never modified; fields the template does not own survive.
/// Override annotations the settings do not allow reject the pod (see [`override_policy`]).
pub fn inject(pod: &Value, ctx: &Context) -> Result<Value, InjectError> {
    inject_owned(pod.clone(), ctx)
}

/// [`inject`] of a pod the caller hands over: the pod becomes the output instead of being
/// copied (with 2,000 env vars the copy was most of a request's work).
pub fn inject_owned(pod: Value, ctx: &Context) -> Result<Value, InjectError> {
    let annotations = meta_map(&pod, "annotations");
    let allowed = ctx.settings.allowed_override_annotations.as_deref();
    let denied = override_policy::denied_overrides(&annotations, allowed);
    if !denied.is_empty() {
        let mut stripped = pod.clone();
        if let Some(a) = stripped
            .at_mut(&["metadata", "annotations"])
            .and_then(Value::as_object_mut)
        {
            a.retain(|k, _| !denied.contains(&k.as_str()));
        }
        let reference = render_pod(stripped, ctx)?;
        override_policy::check_against(&denied, &annotations, &reference).map_err(InjectError)?;
    }
    render_pod(pod, ctx)
}

fn render_pod(pod: Value, ctx: &Context) -> Result<Value, InjectError> {
    if !pod.is_object() {
        return Err(InjectError("the pod is not a JSON object".into()));
    }
    let annotations = meta_map(&pod, "annotations");
    let effective = values::effective(ctx.settings);
    annotations::validate(&annotations, effective.behaviour)?;
    let (helm, mesh) = (&effective.helm, &effective.mesh);
    let pod_mesh = proxy_config::apply_pod_proxy_config(mesh, &annotations)?;
    let status_port = mesh
        .at(&["defaultConfig", "statusPort"])
        .map(sprint)
        .unwrap_or_else(|| "15020".into());

    let view = template_view(&pod, &status_port, effective.behaviour)?;
    let view_annotations = meta_map(&view, "annotations");
    let view_labels = meta_map(&view, "labels");
    let workload = workload_of(&pod, ctx.namespace);
    // Without a `proxy.istio.io/config` annotation the mesh config is the settings' own, and
    // so are the traffic capture and `PROXY_CONFIG` derived from it (computed once).
    let annotated;
    let (traffic, proxy_config_env) = match &pod_mesh {
        Cow::Borrowed(_) => (
            &effective.traffic,
            Some(effective.proxy_config_env.as_str()),
        ),
        Cow::Owned(m) => {
            annotated = TrafficConfig::from_settings(helm, m);
            (&annotated, None)
        }
    };
    let native = native_mode(&annotations, ctx.settings);
    let render = sidecar::Render {
        helm,
        mesh: &pod_mesh,
        pod: &view,
        annotations: &view_annotations,
        labels: &view_labels,
        workload: &workload,
        revision: ctx.settings.revision_name(),
        native: native.template,
        behaviour: effective.behaviour,
        traffic,
        default_resources: &effective.proxy_resources,
        proxy_config_env,
    };
    let tpl = sidecar::render(&render)?;
    let hold = render.hold_application();
    let tproxy = traffic.interception_mode == "TPROXY";
    // What is needed of the template and of the submitted pod once both have moved.
    let status = status_annotation(&tpl, ctx.settings.revision_name());
    let rendered = TemplateContainers::of(&tpl);
    let original = submitted_parts(&pod, &rendered);

    let mut out = pod;
    merge::template_into(&mut out, tpl, native.move_user_proxy);
    let inputs = postprocess::Inputs {
        helm,
        mesh,
        status_port: &status_port,
        original: &original,
        rendered: &rendered,
        status,
        tproxy,
        hold,
        behaviour: effective.behaviour,
    };
    postprocess::run(&mut out, inputs)?;
    Ok(out)
}

/// How the sidecar is injected: what the template renders, and whether a user-declared
/// `istio-proxy` in `containers` moves to `initContainers` with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NativeMode {
    /// The template's `$nativeSidecar`: the proxy is a native (init container) sidecar.
    pub template: bool,
    /// RunTemplate moves the user's `istio-proxy` customisation out of `containers`.
    pub move_user_proxy: bool,
}

/// `sidecar.istio.io/nativeSidecar` as each version reads it, over the setting (R02, R19).
/// * up to 1.23 the annotation is ignored: the setting (istiod's flag) decides both;
/// * 1.24–1.26, template: present means native iff exactly `"true"`, absent the setting;
/// * from 1.27, template: a non-empty value means native iff it is not `"false"`; empty or
///   absent, the setting (the node detection);
/// * from 1.24 the move of a user `istio-proxy` (inject.go) follows the setting overridden by
///   exactly `"true"` or `"false"`, and only happens when the template went native.
pub fn native_mode(annotations: &Map<String, Value>, settings: &Settings) -> NativeMode {
    let behaviour = settings.behaviour();
    let flag = settings.native_sidecars();
    let annotation = annotations.get(NATIVE_SIDECAR);
    if !behaviour.has(Change::NativeSidecarAnnotation) {
        return NativeMode {
            template: flag,
            move_user_proxy: flag,
        };
    }
    // A non-string value cannot reach Istio (annotations are strings); it counts as present
    // and as neither "true" nor "false".
    let text = annotation.map(|v| v.as_str().unwrap_or("\u{0}"));
    let template = if behaviour.has(Change::NativeSidecarDefault) {
        match text {
            Some(v) if !v.is_empty() => v != "false",
            _ => flag,
        }
    } else {
        match text {
            Some(v) => v == "true",
            None => flag,
        }
    };
    let wanted = match text {
        Some("true") => true,
        Some("false") => false,
        _ => flag,
    };
    NativeMode {
        template,
        move_user_proxy: template && wanted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mode(version: &str, setting: bool, annotation: Option<&str>) -> (bool, bool) {
        let settings =
            Settings::from_value(&json!({"istioVersion": version, "nativeSidecars": setting}))
                .unwrap();
        let mut ann = Map::new();
        if let Some(a) = annotation {
            ann.insert(NATIVE_SIDECAR.into(), json!(a));
        }
        let m = native_mode(&ann, &settings);
        (m.template, m.move_user_proxy)
    }

    /// R02: the annotation is ignored up to 1.23 and read from 1.24 (present: exactly "true").
    #[test]
    fn annotation_read_from_1_24() {
        assert_eq!(mode("1.23", false, Some("true")), (false, false));
        assert_eq!(mode("1.23", true, Some("false")), (true, true));
        assert_eq!(mode("1.24", false, Some("true")), (true, true));
        assert_eq!(mode("1.24", true, Some("false")), (false, false));
        // Present but not "true" means classic, even when empty or "yes".
        assert_eq!(mode("1.26", true, Some("")), (false, false));
        assert_eq!(mode("1.26", true, Some("yes")), (false, false));
        assert_eq!(mode("1.26", true, None), (true, true));
    }

    /// R19: from 1.27 any non-empty value but "false" is native, and an empty one falls back
    /// to the setting; the user's istio-proxy moves only for exactly "true" or the setting.
    #[test]
    fn anything_but_false_from_1_27() {
        assert_eq!(mode("1.27", false, Some("yes")), (true, false));
        assert_eq!(mode("1.32", false, Some("yes")), (true, false));
        assert_eq!(mode("1.32", true, Some("yes")), (true, true));
        assert_eq!(mode("1.32", true, Some("")), (true, true));
        assert_eq!(mode("1.32", false, Some("")), (false, false));
        assert_eq!(mode("1.32", true, Some("false")), (false, false));
        assert_eq!(mode("1.27", false, Some("true")), (true, true));
        // The version's default when the setting is absent: off up to 1.26, on from 1.27.
        let default = |v: &str| {
            let s = Settings::from_value(&json!({"istioVersion": v})).unwrap();
            native_mode(&Map::new(), &s).template
        };
        assert!(!default("1.26") && default("1.27"));
    }

    /// A user istio-proxy stays in `containers` when the template goes native on a "yes"
    /// annotation but the setting is off (inject.go only honours exact "true").
    #[test]
    fn user_proxy_not_moved_on_yes_without_the_setting() {
        let settings =
            Settings::from_value(&json!({"istioVersion": "1.32", "nativeSidecars": false}))
                .unwrap();
        let pod = json!({
            "metadata": {"name": "p", "annotations": {NATIVE_SIDECAR: "yes"}},
            "spec": {"containers": [{"name": "app", "image": "app"},
                                    {"name": "istio-proxy", "image": "custom"}]}
        });
        let ctx = Context {
            settings: &settings,
            namespace: "default",
        };
        let out = inject(&pod, &ctx).unwrap();
        let names = |list: &str| -> Vec<String> {
            out["spec"][list]
                .as_array()
                .map(|l| {
                    l.iter()
                        .map(|c| c["name"].as_str().unwrap().to_string())
                        .collect()
                })
                .unwrap_or_default()
        };
        assert!(
            names("initContainers").contains(&"istio-proxy".to_string()),
            "{out}"
        );
        assert!(
            names("containers").contains(&"istio-proxy".to_string()),
            "{out}"
        );
    }
}
