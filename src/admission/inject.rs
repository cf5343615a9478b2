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

    let view = template_view(&pod, &status_port)?;
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
    let render = sidecar::Render {
        helm,
        mesh: &pod_mesh,
        pod: &view,
        annotations: &view_annotations,
        labels: &view_labels,
        workload: &workload,
        revision: ctx.settings.revision_name(),
        native: native_mode(&annotations, ctx.settings),
        behaviour: effective.behaviour,
        traffic,
        default_resources: &effective.proxy_resources,
        proxy_config_env,
    };
    let tpl = sidecar::render(&render)?;
    let (native, hold) = (render.native, render.hold_application());
    let tproxy = traffic.interception_mode == "TPROXY";
    // What is needed of the template and of the submitted pod once both have moved.
    let status = status_annotation(&tpl, ctx.settings.revision_name());
    let rendered = TemplateContainers::of(&tpl);
    let original = submitted_parts(&pod, &rendered);

    let mut out = pod;
    merge::template_into(&mut out, tpl, native);
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

/// The pod annotation wins over the settings (`true` means native, any other value classic).
fn native_mode(annotations: &Map<String, Value>, settings: &Settings) -> bool {
    match annotations.get(NATIVE_SIDECAR) {
        Some(v) => v.as_str() == Some("true"),
        None => settings.native_sidecars(),
    }
}
