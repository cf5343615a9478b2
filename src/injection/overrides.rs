//! User-supplied `istio-proxy` / `istio-init` / `istio-validation` containers, merged over the
//! template's, as Istio's `reapplyOverwrittenContainers` does; plus the Kubernetes strategic
//! merge and the Go `encoding/json` layout both need.
//!
//! Istio first merges the template over the pod (so the template wins), then merges the user's
//! container back over the result (so the user wins), and records the user's containers in the
//! `proxy.istio.io/overrides` annotation (Go `json.Marshal`: struct fields in declaration order,
//! canonical quantities, `image: auto` dropped) so that re-injection can apply them again.

use crate::json::put;
use crate::json::Path;
use serde_json::{Map, Value};

use super::annotations::SIDECAR_STATUS;
use super::resources::canonical_quantity;
use super::InjectError;

pub const PROXY_OVERRIDES: &str = "proxy.istio.io/overrides";
pub const PROXY_CONTAINER: &str = "istio-proxy";
pub const INIT_CONTAINER: &str = "istio-init";
pub const VALIDATION_CONTAINER: &str = "istio-validation";
/// The image a user writes to mean "keep the injected image".
pub const AUTO_IMAGE: &str = "auto";

/// A Go type of the Kubernetes API, enough to marshal and strategic-merge pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// string, number or bool, as is.
    Scalar,
    /// `resource.Quantity`: canonical text.
    Quantity,
    /// `intstr.IntOrString`.
    IntOrString,
    /// A struct, by name (see `fields`); unknown names marshal with sorted keys.
    Struct(&'static str),
    List(&'static Ty),
    Map(&'static Ty),
}

#[derive(Debug, Clone, Copy)]
enum Omit {
    /// `omitempty` on a value type: zero values are left out.
    Empty,
    /// A pointer (or struct) field: left out only when absent.
    Nil,
    /// No `omitempty`: an absent value prints as this zero.
    Zero(&'static str),
}

#[derive(Debug, Clone, Copy)]
struct Field {
    name: &'static str,
    ty: Ty,
    omit: Omit,
    /// `patchMergeKey` of a list field.
    key: Option<&'static str>,
}

const S: Ty = Ty::Scalar;
const STRINGS: Ty = Ty::List(&Ty::Scalar);

const fn e(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        omit: Omit::Empty,
        key: None,
    }
}
const fn n(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        omit: Omit::Nil,
        key: None,
    }
}
const fn z(name: &'static str, ty: Ty, zero: &'static str) -> Field {
    Field {
        name,
        ty,
        omit: Omit::Zero(zero),
        key: None,
    }
}
const fn k(name: &'static str, elem: &'static Ty, key: &'static str) -> Field {
    Field {
        name,
        ty: Ty::List(elem),
        omit: Omit::Empty,
        key: Some(key),
    }
}

/// A field table as a constant (const fn calls are not promoted to `'static` otherwise).
macro_rules! table {
    ($($f:expr),* $(,)?) => {{
        const TABLE: &[Field] = &[$($f),*];
        TABLE
    }};
}

/// Struct fields in Go declaration order (k8s.io/api v0.34 and Istio's own types).
fn fields(name: &str) -> &'static [Field] {
    match name {
        "Container" => table![
            z("name", S, "\"\""),
            e("image", S),
            e("command", STRINGS),
            e("args", STRINGS),
            e("workingDir", S),
            k("ports", &Ty::Struct("ContainerPort"), "containerPort"),
            e("envFrom", Ty::List(&Ty::Struct("EnvFromSource"))),
            k("env", &Ty::Struct("EnvVar"), "name"),
            z("resources", Ty::Struct("ResourceRequirements"), "{}"),
            e(
                "resizePolicy",
                Ty::List(&Ty::Struct("ContainerResizePolicy"))
            ),
            n("restartPolicy", S),
            e(
                "restartPolicyRules",
                Ty::List(&Ty::Struct("ContainerRestartRule"))
            ),
            k("volumeMounts", &Ty::Struct("VolumeMount"), "mountPath"),
            k("volumeDevices", &Ty::Struct("VolumeDevice"), "devicePath"),
            n("livenessProbe", Ty::Struct("Probe")),
            n("readinessProbe", Ty::Struct("Probe")),
            n("startupProbe", Ty::Struct("Probe")),
            n("lifecycle", Ty::Struct("Lifecycle")),
            e("terminationMessagePath", S),
            e("terminationMessagePolicy", S),
            e("imagePullPolicy", S),
            n("securityContext", Ty::Struct("SecurityContext")),
            e("stdin", S),
            e("stdinOnce", S),
            e("tty", S),
        ],
        "ContainerPort" => table![
            e("name", S),
            e("hostPort", S),
            z("containerPort", S, "0"),
            e("protocol", S),
            e("hostIP", S),
        ],
        "EnvFromSource" => table![
            e("prefix", S),
            n("configMapRef", Ty::Struct("LocalRef")),
            n("secretRef", Ty::Struct("LocalRef")),
        ],
        "LocalRef" => table![e("name", S), n("optional", S)],
        "EnvVar" => table![
            z("name", S, "\"\""),
            e("value", S),
            n("valueFrom", Ty::Struct("EnvVarSource"))
        ],
        "EnvVarSource" => table![
            n("fieldRef", Ty::Struct("ObjectFieldSelector")),
            n("resourceFieldRef", Ty::Struct("ResourceFieldSelector")),
            n("configMapKeyRef", Ty::Struct("KeySelector")),
            n("secretKeyRef", Ty::Struct("KeySelector")),
            n("fileKeyRef", Ty::Struct("FileKeySelector")),
        ],
        "ObjectFieldSelector" => table![e("apiVersion", S), z("fieldPath", S, "\"\"")],
        "ResourceFieldSelector" => table![
            e("containerName", S),
            z("resource", S, "\"\""),
            n("divisor", Ty::Quantity),
        ],
        "KeySelector" => table![e("name", S), z("key", S, "\"\""), n("optional", S)],
        "FileKeySelector" => table![
            z("volumeName", S, "\"\""),
            z("path", S, "\"\""),
            z("key", S, "\"\""),
            n("optional", S),
        ],
        "ResourceRequirements" => table![
            e("limits", Ty::Map(&Ty::Quantity)),
            e("requests", Ty::Map(&Ty::Quantity)),
            e("claims", Ty::List(&Ty::Struct("ResourceClaim"))),
        ],
        "ResourceClaim" => table![z("name", S, "\"\""), e("request", S)],
        "ContainerResizePolicy" => {
            table![z("resourceName", S, "\"\""), z("restartPolicy", S, "\"\"")]
        }
        "VolumeMount" => table![
            z("name", S, "\"\""),
            e("readOnly", S),
            n("recursiveReadOnly", S),
            z("mountPath", S, "\"\""),
            e("subPath", S),
            n("mountPropagation", S),
            e("subPathExpr", S),
        ],
        "VolumeDevice" => table![z("name", S, "\"\""), z("devicePath", S, "\"\"")],
        "Probe" => table![
            n("exec", Ty::Struct("ExecAction")),
            n("httpGet", Ty::Struct("HTTPGetAction")),
            n("tcpSocket", Ty::Struct("TCPSocketAction")),
            n("grpc", Ty::Struct("GRPCAction")),
            e("initialDelaySeconds", S),
            e("timeoutSeconds", S),
            e("periodSeconds", S),
            e("successThreshold", S),
            e("failureThreshold", S),
            n("terminationGracePeriodSeconds", S),
        ],
        "ExecAction" => table![e("command", STRINGS)],
        "HTTPGetAction" => table![
            e("path", S),
            z("port", Ty::IntOrString, "0"),
            e("host", S),
            e("scheme", S),
            e("httpHeaders", Ty::List(&Ty::Struct("HTTPHeader"))),
        ],
        "HTTPHeader" => table![z("name", S, "\"\""), z("value", S, "\"\"")],
        "TCPSocketAction" => table![z("port", Ty::IntOrString, "0"), e("host", S)],
        "GRPCAction" => table![z("port", S, "0"), z("service", S, "null")],
        "Lifecycle" => table![
            n("postStart", Ty::Struct("LifecycleHandler")),
            n("preStop", Ty::Struct("LifecycleHandler")),
            n("stopSignal", S),
        ],
        "LifecycleHandler" => table![
            n("exec", Ty::Struct("ExecAction")),
            n("httpGet", Ty::Struct("HTTPGetAction")),
            n("tcpSocket", Ty::Struct("TCPSocketAction")),
            n("sleep", Ty::Struct("SleepAction")),
        ],
        "SleepAction" => table![z("seconds", S, "0")],
        "SecurityContext" => table![
            n("capabilities", Ty::Struct("Capabilities")),
            n("privileged", S),
            n("seLinuxOptions", Ty::Struct("SELinuxOptions")),
            n(
                "windowsOptions",
                Ty::Struct("WindowsSecurityContextOptions")
            ),
            n("runAsUser", S),
            n("runAsGroup", S),
            n("runAsNonRoot", S),
            n("readOnlyRootFilesystem", S),
            n("allowPrivilegeEscalation", S),
            n("procMount", S),
            n("seccompProfile", Ty::Struct("SeccompProfile")),
            n("appArmorProfile", Ty::Struct("SeccompProfile")),
        ],
        "Capabilities" => table![e("add", STRINGS), e("drop", STRINGS)],
        "SELinuxOptions" => table![e("user", S), e("role", S), e("type", S), e("level", S)],
        "WindowsSecurityContextOptions" => table![
            n("gmsaCredentialSpecName", S),
            n("gmsaCredentialSpec", S),
            n("runAsUserName", S),
            n("hostProcess", S),
        ],
        "SeccompProfile" => table![z("type", S, "\"\""), n("localhostProfile", S)],
        // Istio's ParsedContainers (the overrides annotation).
        "ParsedContainers" => table![
            k("containers", &Ty::Struct("Container"), "name"),
            k("initContainers", &Ty::Struct("Container"), "name"),
        ],
        // Istio's app prober (ISTIO_KUBE_APP_PROBERS values).
        "Prober" => table![
            n("httpGet", Ty::Struct("HTTPGetAction")),
            n("tcpSocket", Ty::Struct("TCPSocketAction")),
            n("grpc", Ty::Struct("GRPCAction")),
            e("timeoutSeconds", S),
        ],
        // Merge keys only (pods are merged, never Go-marshalled, here).
        "Pod" => table![
            n("metadata", Ty::Struct("ObjectMeta")),
            n("spec", Ty::Struct("PodSpec"))
        ],
        "ObjectMeta" => table![
            e("labels", Ty::Map(&Ty::Scalar)),
            e("annotations", Ty::Map(&Ty::Scalar)),
            k("ownerReferences", &Ty::Struct("OwnerReference"), "uid"),
        ],
        "PodSpec" => table![
            k("volumes", &Ty::Struct("Volume"), "name"),
            k("initContainers", &Ty::Struct("Container"), "name"),
            k("containers", &Ty::Struct("Container"), "name"),
            k("ephemeralContainers", &Ty::Struct("Container"), "name"),
            k("imagePullSecrets", &Ty::Struct("LocalRef"), "name"),
            k("hostAliases", &Ty::Struct("HostAlias"), "ip"),
            n("securityContext", Ty::Struct("PodSecurityContext")),
            k("resourceClaims", &Ty::Struct("PodResourceClaim"), "name"),
        ],
        _ => table![],
    }
}

fn field(ty: Ty, name: &str) -> Option<&'static Field> {
    match ty {
        Ty::Struct(s) => fields(s).iter().find(|f| f.name == name),
        _ => None,
    }
}

/// The type of the values under `name` in a value of type `ty` (Scalar when unknown).
fn child_ty(ty: Ty, name: &str) -> Ty {
    match ty {
        Ty::Map(inner) => *inner,
        _ => field(ty, name).map_or(Ty::Scalar, |f| f.ty),
    }
}

// ---------------------------------------------------------------------------------------------
// Go encoding/json

/// `json.Marshal` of `value` read as Go type `ty`: struct fields in declaration order with
/// `omitempty` honoured, map keys sorted, quantities canonical, Go's string escaping.
pub fn go_marshal(value: &Value, ty: Ty) -> String {
    let mut out = String::new();
    write_go(&mut out, value, ty);
    out
}

fn write_go(out: &mut String, value: &Value, ty: Ty) {
    match (ty, value) {
        (Ty::Struct(name), Value::Object(obj)) => {
            out.push('{');
            let mut first = true;
            let mut emit = |out: &mut String, key: &str, write: &dyn Fn(&mut String)| {
                if !first {
                    out.push(',');
                }
                first = false;
                write_go_string(out, key);
                out.push(':');
                write(out);
            };
            let known = fields(name);
            for f in known {
                match (obj.get(f.name), f.omit) {
                    (None | Some(Value::Null), Omit::Zero(zero)) => {
                        emit(out, f.name, &|o| o.push_str(zero))
                    }
                    (None | Some(Value::Null), _) => {}
                    (Some(v), Omit::Empty) if is_go_zero(v) => {}
                    (Some(v), _) => emit(out, f.name, &|o| write_go(o, v, f.ty)),
                }
            }
            // Unknown fields in key order, as Go marshals a map: a `Map` iterates in key order.
            let rest = obj
                .iter()
                .filter(|(key, v)| !v.is_null() && !known.iter().any(|f| f.name == key.as_str()));
            for (key, v) in rest {
                emit(out, key, &|o| write_go(o, v, Ty::Scalar));
            }
            out.push('}');
        }
        (Ty::Map(inner), Value::Object(obj)) => write_sorted_object(out, obj, *inner),
        (_, Value::Object(obj)) => write_sorted_object(out, obj, Ty::Scalar),
        (Ty::List(inner), Value::Array(items)) => write_array(out, items, *inner),
        (_, Value::Array(items)) => write_array(out, items, Ty::Scalar),
        (Ty::Quantity, Value::String(s)) => {
            let canon = canonical_quantity(s).unwrap_or_else(|_| s.clone());
            write_go_string(out, &canon);
        }
        (Ty::Quantity, Value::Number(num)) => {
            let canon = canonical_quantity(&num.to_string()).unwrap_or_else(|_| num.to_string());
            write_go_string(out, &canon);
        }
        (_, Value::String(s)) => write_go_string(out, s),
        (_, Value::Number(num)) => match num.as_f64() {
            Some(f) if !num.is_i64() && !num.is_u64() && f.fract() == 0.0 && f.abs() < 1e15 => {
                out.push_str(&(f as i64).to_string())
            }
            _ => out.push_str(&num.to_string()),
        },
        (_, Value::Bool(b)) => out.push_str(if *b { "true" } else { "false" }),
        (_, Value::Null) => out.push_str("null"),
    }
}

fn write_sorted_object(out: &mut String, obj: &Map<String, Value>, inner: Ty) {
    out.push('{');
    // Go marshals maps in key order; a `Map` iterates in key order.
    for (i, (key, v)) in obj.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_go_string(out, key);
        out.push(':');
        write_go(out, v, inner);
    }
    out.push('}');
}

fn write_array(out: &mut String, items: &[Value], inner: Ty) {
    out.push('[');
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_go(out, v, inner);
    }
    out.push(']');
}

fn is_go_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(num) => num.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// A JSON string the way Go escapes it (HTML-safe: `<`, `>`, `&`, U+2028/2029 as `\u` escapes).
pub fn write_go_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The value as Go would see it after a round trip through its struct (zero values dropped,
/// quantities canonical).
pub fn go_normalize(value: &Value, ty: Ty) -> Value {
    serde_json::from_str(&go_marshal(value, ty)).unwrap_or_else(|_| value.clone())
}

// ---------------------------------------------------------------------------------------------
// Strategic merge patch

/// Kubernetes' strategic merge of `patch` onto `original` (both of type `ty`): maps merge, a
/// `null` deletes, lists with a merge key merge by it and keep Kubernetes' element order, other
/// lists and scalars are replaced.
pub fn strategic_merge(original: &Value, patch: &Value, ty: Ty) -> Value {
    let mut out = original.clone();
    strategic_merge_into(&mut out, patch.clone(), ty);
    out
}

/// [`strategic_merge`] in place, consuming the patch: `target` becomes the merge of itself
/// and `patch`; nothing of either is copied (the template's containers move into the pod).
pub fn strategic_merge_into(target: &mut Value, patch: Value, ty: Ty) {
    match (target, patch) {
        (Value::Object(out), Value::Object(p))
            if matches!(ty, Ty::Struct(_) | Ty::Map(_)) || ty == Ty::Scalar =>
        {
            for (key, pv) in p {
                if key.starts_with('$') {
                    continue;
                }
                if pv.is_null() {
                    out.remove(&key);
                    continue;
                }
                let fty = child_ty(ty, &key);
                match out.get_mut(&key) {
                    Some(ov) => merge_field_into(ov, pv, fty, field(ty, &key).and_then(|f| f.key)),
                    None => {
                        out.insert(key, pv);
                    }
                }
            }
        }
        (target, patch) => *target = patch,
    }
}

fn merge_field_into(original: &mut Value, patch: Value, ty: Ty, merge_key: Option<&str>) {
    match (ty, &mut *original, patch, merge_key) {
        (Ty::List(elem), Value::Array(o), Value::Array(p), Some(key)) => {
            let o = std::mem::take(o);
            *original = merge_list(o, p, key, *elem);
        }
        (Ty::Struct(_) | Ty::Map(_), Value::Object(_), patch @ Value::Object(_), _) => {
            strategic_merge_into(original, patch, ty);
        }
        (_, _, patch, _) => *original = patch,
    }
}

fn same_key(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => x.as_f64() == y.as_f64(),
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

fn position(list: &[Value], item: &Value, key: &str) -> Option<usize> {
    list.iter()
        .position(|o| same_key(o.get(key), item.get(key)))
}

/// apimachinery's `mergeSlice` for lists of maps with a merge key, including its ordering:
/// patch items keep the patch's order, items only in the original keep theirs, and the two are
/// interleaved by their positions in the original. Items move; only merge keys are copied.
fn merge_list(original: Vec<Value>, patch: Vec<Value>, key: &str, elem: Ty) -> Value {
    if original.iter().chain(&patch).any(|v| v.get(key).is_none()) {
        return Value::Array(patch);
    }
    let keys = |list: &[Value]| -> Vec<Value> {
        list.iter()
            .map(|o| o.get(key).cloned().unwrap_or(Value::Null))
            .collect()
    };
    let (original_keys, patch_keys) = (keys(&original), keys(&patch));
    let index = |keys: &[Value], v: &Value| keys.iter().position(|k| same_key(Some(k), v.get(key)));
    let mut merged = original;
    for p in patch {
        match position(&merged, &p, key) {
            Some(i) => strategic_merge_into(&mut merged[i], p, elem),
            None => merged.push(p),
        }
    }
    let (mut patch_items, mut server_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|m| index(&patch_keys, m).is_some());
    let order = |i: Option<usize>| i.map_or(-1, |i| i as i64);
    crate::sort::sort_by_key(&mut patch_items, |v| order(index(&patch_keys, v)));
    crate::sort::sort_by_key(&mut server_only, |v| order(index(&original_keys, v)));
    let mut out = Vec::with_capacity(patch_items.len() + server_only.len());
    let (mut left, mut right) = (
        server_only.into_iter().peekable(),
        patch_items.into_iter().peekable(),
    );
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => match (index(&original_keys, l), index(&original_keys, r)) {
                (Some(li), Some(ri)) => li < ri,
                _ => false,
            },
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    Value::Array(out)
}

// ---------------------------------------------------------------------------------------------
// Overrides

/// The user's container as Istio applies it: Go-normalised, `image: auto` dropped.
fn overlay_of(user: &Value) -> Value {
    let mut overlay = go_normalize(user, Ty::Struct("Container"));
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
    let ty = Ty::Struct("Container");
    let user_go = go_normalize(user, ty);
    let first = strategic_merge(&user_go, template, ty);
    *template = strategic_merge(&first, &overlay_of(user), ty);
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
        let injected = super::reinject::status_names(&status, status_key);
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
        let text = go_marshal(&Value::Object(recorded), Ty::Struct("ParsedContainers"));
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
        Ty::Struct("Container"),
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
    let tproxy = tproxy || annotation(pod, super::annotations::INTERCEPTION_MODE) == Some("TPROXY");
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

    const CONTAINER: Ty = Ty::Struct("Container");

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

    #[test]
    fn merge_list_keeps_kubernetes_order() {
        let key = |v: &Value| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|e| e["name"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        let elem = Ty::Struct("EnvVar");
        // Patch items come first unless the original orders a server-only item before them.
        let original = [
            json!({"name": "a"}),
            json!({"name": "b"}),
            json!({"name": "c"}),
        ];
        let patch = [json!({"name": "c", "value": "1"}), json!({"name": "x"})];
        let merged = merge_list(original.to_vec(), patch.to_vec(), "name", elem);
        assert_eq!(key(&merged), ["a", "b", "c", "x"]);
        assert_eq!(merged[2], json!({"name": "c", "value": "1"}));
        let patch = [json!({"name": "x"}), json!({"name": "a"})];
        assert_eq!(
            key(&merge_list(original.to_vec(), patch.to_vec(), "name", elem)),
            ["x", "a", "b", "c"]
        );
    }

    #[test]
    fn strategic_merge_deletes_nulls_and_replaces_plain_lists() {
        let original = json!({"name": "c", "args": ["a", "b"], "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}});
        let patch = json!({"args": ["z"], "resources": {"limits": {"cpu": null}}});
        assert_eq!(
            strategic_merge(&original, &patch, CONTAINER),
            json!({"name": "c", "args": ["z"], "resources": {"limits": {"memory": "1Gi"}}})
        );
    }

    #[test]
    fn go_marshal_orders_fields_and_escapes_like_go() {
        let c = json!({
            "tty": false, "name": "x", "ports": [{"protocol": "TCP", "containerPort": 80, "name": "http"}],
            "env": [{"value": "a<b&c>", "name": "E"}], "unknownField": 1, "stdin": true,
            "readinessProbe": {"grpc": {"port": 9}, "periodSeconds": 0}
        });
        assert_eq!(
            go_marshal(&c, CONTAINER),
            "{\"name\":\"x\",\"ports\":[{\"name\":\"http\",\"containerPort\":80,\"protocol\":\"TCP\"}],\
\"env\":[{\"name\":\"E\",\"value\":\"a\\u003cb\\u0026c\\u003e\"}],\"resources\":{},\
\"readinessProbe\":{\"grpc\":{\"port\":9,\"service\":null}},\"stdin\":true,\"unknownField\":1}"
        );
    }
}
