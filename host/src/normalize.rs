//! Normalization and comparison of pods, as the conformance suite's README ("Comparing") says.
//!
//! Istio compares Go structs, which hides JSON-level noise (omitempty zero values, `null`
//! volume sources, non-canonical quantities). A JSON runner must remove the same noise on
//! both sides, and nothing more, so that every remaining difference is a real one.
//! Strings compare byte for byte, including JSON carried in strings (`PROXY_CONFIG`,
//! `ISTIO_META_POD_PORTS`, `ISTIO_KUBE_APP_PROBERS`, `proxy.istio.io/overrides`), as Istio does.
//!
//! This file is self-contained (serde_json only) so the integration tests can include it.

use serde_json::{Map, Value};
use std::fmt;

/// The status annotation differs by design (Istio deletes it before comparing).
pub const STATUS_ANNOTATION: &str = "sidecar.istio.io/status";

const CONTAINER_LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];
const PROBES: [&str; 3] = ["livenessProbe", "readinessProbe", "startupProbe"];
const PROBE_INTEGERS: [&str; 5] = [
    "initialDelaySeconds",
    "periodSeconds",
    "timeoutSeconds",
    "successThreshold",
    "failureThreshold",
];

/// Apply steps 1–4 and 6 of the README to `pod` (step 5, quantities, is part of [`differences`]).
///
/// `request_namespace` is the namespace the request was sent with; `input_had_namespace`
/// says whether the pod sent to the policy carried `metadata.namespace` itself.
pub fn normalize_pod(pod: &mut Value, request_namespace: &str, input_had_namespace: bool) {
    // 1. The status annotation.
    if let Some(annotations) = pod
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.remove(STATUS_ANNOTATION);
    }
    // 2. fieldRef.apiVersion, wherever a fieldRef appears (env, downwardAPI volumes, projections).
    if let Some(spec) = pod.get_mut("spec") {
        strip_field_ref_api_version(spec);
    }
    // 3. Go omitempty zero values the goldens omit.
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        for list in CONTAINER_LISTS {
            if let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) {
                containers.iter_mut().for_each(drop_container_zero_values);
            }
        }
    }
    // 4. null, {} and [] (bottom-up, so one pass reaches the fixed point).
    prune_empty(pod);
    // 6. A namespace the policy filled in from the request.
    if !input_had_namespace {
        if let Some(metadata) = pod.get_mut("metadata").and_then(Value::as_object_mut) {
            if metadata.get("namespace").and_then(Value::as_str) == Some(request_namespace) {
                metadata.remove("namespace");
            }
        }
    }
}

fn strip_field_ref_api_version(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if key == "fieldRef" {
                    if let Some(field_ref) = child.as_object_mut() {
                        field_ref.remove("apiVersion");
                    }
                }
                strip_field_ref_api_version(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strip_field_ref_api_version),
        _ => {}
    }
}

fn drop_container_zero_values(container: &mut Value) {
    let Some(container) = container.as_object_mut() else {
        return;
    };
    for probe in PROBES {
        if let Some(probe) = container.get_mut(probe).and_then(Value::as_object_mut) {
            probe.retain(|k, v| !(PROBE_INTEGERS.contains(&k.as_str()) && is_zero(v)));
        }
    }
    if let Some(env) = container.get_mut("env").and_then(Value::as_array_mut) {
        for var in env.iter_mut().filter_map(Value::as_object_mut) {
            if var.get("value").and_then(Value::as_str) == Some("") {
                var.remove("value");
            }
            // A zero `resource.Quantity` divisor: Go marshals the template's missing divisor
            // (Istio up to 1.28) as "0".
            if let Some(field_ref) = var
                .get_mut("valueFrom")
                .and_then(|v| v.get_mut("resourceFieldRef"))
                .and_then(Value::as_object_mut)
            {
                let divisor = field_ref.get("divisor");
                if divisor.and_then(Value::as_str) == Some("0") || divisor.is_some_and(is_zero) {
                    field_ref.remove("divisor");
                }
            }
        }
    }
}

fn is_zero(v: &Value) -> bool {
    v.as_f64() == Some(0.0)
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Drop `null`, `{}` and `[]` map entries recursively. List items are kept (Go keeps them
/// too); only their contents are pruned. Strings, including `""`, are never dropped here.
pub fn prune_empty(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.values_mut().for_each(prune_empty);
            map.retain(|_, v| !is_empty(v));
        }
        Value::Array(items) => items.iter_mut().for_each(prune_empty),
        _ => {}
    }
}

/// A Kubernetes resource quantity's exact value: `mantissa × 10^exponent`, normalized so that
/// equal values compare equal (`2000m`, `2` and `2e0` all give `(2, 0)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    mantissa: i128,
    exponent: i32,
}

impl Quantity {
    /// Parse `<sign><digits>[.<digits>]<suffix>` with a binary (`Ki`…`Ei`), decimal
    /// (`n u m k M G T P E`) or exponent (`e3`, `E-2`) suffix, as `resource.ParseQuantity` does.
    /// `None` for anything else, or a value too large to hold exactly.
    pub fn parse(text: &str) -> Option<Quantity> {
        let text = text.trim();
        let (negative, rest) = match text.as_bytes().first()? {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(number_len);
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        if int_part.is_empty() && frac_part.is_empty() || frac_part.contains('.') {
            return None;
        }
        let mut mantissa: i128 = 0;
        for c in int_part.chars().chain(frac_part.chars()) {
            let digit = i128::from(c.to_digit(10)?);
            mantissa = mantissa.checked_mul(10)?.checked_add(digit)?;
        }
        let mut exponent = -i32::try_from(frac_part.len()).ok()?;
        let binary_power = match suffix {
            "Ki" => 10,
            "Mi" => 20,
            "Gi" => 30,
            "Ti" => 40,
            "Pi" => 50,
            "Ei" => 60,
            _ => 0,
        };
        if binary_power > 0 {
            mantissa = mantissa.checked_mul(1i128 << binary_power)?;
        } else {
            exponent += match suffix {
                "" => 0,
                "n" => -9,
                "u" => -6,
                "m" => -3,
                "k" => 3,
                "M" => 6,
                "G" => 9,
                "T" => 12,
                "P" => 15,
                "E" => 18,
                s if s.starts_with(['e', 'E']) => s.get(1..)?.parse::<i32>().ok()?,
                _ => return None,
            };
        }
        if negative {
            mantissa = -mantissa;
        }
        Some(Quantity::normalized(mantissa, exponent))
    }

    /// A quantity written as a YAML/JSON string or number.
    pub fn from_value(value: &Value) -> Option<Quantity> {
        match value {
            Value::String(s) => Quantity::parse(s),
            Value::Number(n) => Quantity::parse(&n.to_string()),
            _ => None,
        }
    }

    fn normalized(mut mantissa: i128, mut exponent: i32) -> Quantity {
        if mantissa == 0 {
            return Quantity {
                mantissa: 0,
                exponent: 0,
            };
        }
        while mantissa % 10 == 0 {
            mantissa /= 10;
            exponent += 1;
        }
        Quantity { mantissa, exponent }
    }
}

/// One place where the expected and the actual value differ (`None`: the side lacks it).
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    pub path: String,
    pub expected: Option<Value>,
    pub actual: Option<Value>,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: expected {}, got {}",
            self.path,
            show(self.expected.as_ref()),
            show(self.actual.as_ref())
        )
    }
}

const SHOWN_CHARS: usize = 200;

/// Compact JSON, cut to a readable length.
pub fn show(value: Option<&Value>) -> String {
    let Some(value) = value else {
        return "(absent)".to_string();
    };
    let text = value.to_string();
    if text.chars().count() <= SHOWN_CHARS {
        return text;
    }
    let cut: String = text.chars().take(SHOWN_CHARS).collect();
    format!("{cut}… ({} chars)", text.chars().count())
}

#[derive(Debug, Clone)]
enum Segment {
    Key(String),
    /// A list item, shown by its `name` when it has one.
    Item(usize, Option<String>),
}

/// Every difference between `expected` and `actual`, in document order. Maps are unordered,
/// lists ordered; resource quantities (`resources.limits|requests.*`) compare by value.
/// Lists of named items whose names differ get one difference listing both name sequences,
/// then their common items are compared by name, so one missing env var does not shift
/// every following entry into a difference.
pub fn differences(expected: &Value, actual: &Value) -> Vec<Difference> {
    let mut out = Vec::new();
    diff_at(&mut Vec::new(), expected, actual, &mut out);
    out
}

fn diff_at(path: &mut Vec<Segment>, expected: &Value, actual: &Value, out: &mut Vec<Difference>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => diff_maps(path, e, a, out),
        (Value::Array(e), Value::Array(a)) => diff_lists(path, e, a, out),
        _ if expected == actual => {}
        _ if in_quantity_position(path)
            && Quantity::from_value(expected).is_some()
            && Quantity::from_value(expected) == Quantity::from_value(actual) => {}
        _ => out.push(Difference {
            path: render(path),
            expected: Some(expected.clone()),
            actual: Some(actual.clone()),
        }),
    }
}

fn diff_maps(
    path: &mut Vec<Segment>,
    expected: &Map<String, Value>,
    actual: &Map<String, Value>,
    out: &mut Vec<Difference>,
) {
    let mut keys: Vec<&String> = expected.keys().chain(actual.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        path.push(Segment::Key(key.clone()));
        match (expected.get(key), actual.get(key)) {
            (Some(e), Some(a)) => diff_at(path, e, a, out),
            (e, a) => out.push(Difference {
                path: render(path),
                expected: e.cloned(),
                actual: a.cloned(),
            }),
        }
        path.pop();
    }
}

fn item_name(v: &Value) -> Option<String> {
    v.get("name").and_then(Value::as_str).map(str::to_string)
}

/// The item names of a list whose items all have distinct names.
fn names_of(items: &[Value]) -> Option<Vec<String>> {
    let names: Vec<String> = items.iter().map(item_name).collect::<Option<_>>()?;
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    (sorted.len() == names.len()).then_some(names)
}

fn diff_lists(
    path: &mut Vec<Segment>,
    expected: &[Value],
    actual: &[Value],
    out: &mut Vec<Difference>,
) {
    if let (Some(e_names), Some(a_names)) = (names_of(expected), names_of(actual)) {
        if e_names != a_names {
            out.push(Difference {
                path: format!("{} (item names)", render(path)),
                expected: Some(Value::from(e_names.clone())),
                actual: Some(Value::from(a_names.clone())),
            });
            for (i, e) in expected.iter().enumerate() {
                let name = e_names.get(i);
                let Some(j) = a_names.iter().position(|n| Some(n) == name) else {
                    continue;
                };
                if let Some(a) = actual.get(j) {
                    path.push(Segment::Item(i, name.cloned()));
                    diff_at(path, e, a, out);
                    path.pop();
                }
            }
            return;
        }
    }
    for i in 0..expected.len().max(actual.len()) {
        let (e, a) = (expected.get(i), actual.get(i));
        path.push(Segment::Item(i, e.or(a).and_then(item_name)));
        match (e, a) {
            (Some(e), Some(a)) => diff_at(path, e, a, out),
            _ => out.push(Difference {
                path: render(path),
                expected: e.cloned(),
                actual: a.cloned(),
            }),
        }
        path.pop();
    }
}

fn in_quantity_position(path: &[Segment]) -> bool {
    matches!(
        path,
        [.., Segment::Key(r), Segment::Key(l), _] if r == "resources" && (l == "limits" || l == "requests")
    )
}

fn render(path: &[Segment]) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Key(k) if is_plain_key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Segment::Key(k) => out.push_str(&format!("[{k:?}]")),
            Segment::Item(_, Some(name)) => out.push_str(&format!("[{name}]")),
            Segment::Item(i, None) => out.push_str(&format!("[{i}]")),
        }
    }
    if out.is_empty() {
        out.push_str("(root)");
    }
    out
}

fn is_plain_key(k: &str) -> bool {
    !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}
