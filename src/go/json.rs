//! Go's `encoding/json` output, which Istio's webhook writes into the pod: the
//! `proxy.istio.io/overrides` and `sidecar.istio.io/status` annotations, the
//! `ISTIO_KUBE_APP_PROBERS`, `ISTIO_META_POD_PORTS`, `ISTIO_PROMETHEUS_ANNOTATIONS` and
//! `PROXY_CONFIG` env values (the last through golang/protobuf's `jsonpb`, which writes every
//! string and map key with `encoding/json` too).
//!
//! Struct fields come in Go declaration order with `omitempty` honoured (from the Pod schema,
//! [`crate::schema`]), map keys sorted (a `Map` iterates in key order), quantities canonical.

use serde_json::{Map, Value};

use super::quantity::canonical_quantity;
use crate::schema::{struct_at, Omit, Ty};

/// A JSON string as `encoding/json` writes it with its default HTML escaping: `<`, `>`, `&`
/// and U+2028/U+2029 as `\u` escapes, `\b` `\f` `\n` `\r` `\t` short, other control
/// characters as `\u00xx` (lowercase hex).
pub fn write_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let short = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\u{8}' => "\\b",
            '\u{c}' => "\\f",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if (c as u32) < 0x20 || matches!(c, '<' | '>' | '&' | '\u{2028}' | '\u{2029}') => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        start = i + c.len_utf8();
        if short.is_empty() {
            let n = c as u32;
            out.push_str("\\u");
            for shift in [12, 8, 4, 0] {
                out.push(char::from(HEX[((n >> shift) & 0xf) as usize]));
            }
        } else {
            out.push_str(short);
        }
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// `json.Marshal` of `value` read as Go type `ty`.
pub fn marshal(value: &Value, ty: &Ty) -> String {
    let mut out = String::new();
    write_value(&mut out, value, ty);
    out
}

/// The value as Go sees it after a round trip through its type (zero values dropped,
/// quantities canonical).
pub fn normalize(value: &Value, ty: &Ty) -> Value {
    serde_json::from_str(&marshal(value, ty)).unwrap_or_else(|_| value.clone())
}

/// A Go struct Istio declares in place (its fields in this order, empty ones already left
/// out by the caller): `{"k1":v1,"k2":v2}`, values of any type.
pub fn object(fields: &[(&str, &Value)]) -> String {
    let mut out = String::with_capacity(64);
    out.push('{');
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(&mut out, k);
        out.push(':');
        write_value(&mut out, v, &Ty::Any);
    }
    out.push('}');
    out
}

/// Append `json.Marshal` of `value` read as type `ty` (`Ty::Any`: as Go writes a
/// `map[string]any`).
pub fn write_value(out: &mut String, value: &Value, ty: &Ty) {
    match (ty, value) {
        (Ty::Struct(i), Value::Object(obj)) => write_struct(out, obj, *i),
        (Ty::Map(inner), Value::Object(obj)) => write_map(out, obj, inner),
        (_, Value::Object(obj)) => write_map(out, obj, &Ty::Any),
        (Ty::Seq(inner), Value::Array(items)) => write_array(out, items, inner),
        (_, Value::Array(items)) => write_array(out, items, &Ty::Any),
        (Ty::Quantity, Value::String(s)) => {
            let canon = canonical_quantity(s).unwrap_or_else(|_| s.clone());
            write_string(out, &canon);
        }
        (Ty::Quantity, Value::Number(num)) => {
            let canon = canonical_quantity(&num.to_string()).unwrap_or_else(|_| num.to_string());
            write_string(out, &canon);
        }
        (_, Value::String(s)) => write_string(out, s),
        // A float with no fraction read into an integer field prints as one.
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

/// The struct's Go-listed fields in declaration order (see [`Omit`]), then the object's
/// other keys in key order, as Go marshals a map.
fn write_struct(out: &mut String, obj: &Map<String, Value>, index: usize) {
    let fields = struct_at(index).map_or(&[][..], |s| s.fields);
    let listed = || fields.iter().filter(|f| f.go.is_some());
    out.push('{');
    let mut first = true;
    let mut key = |out: &mut String, name: &str| {
        if !first {
            out.push(',');
        }
        first = false;
        write_string(out, name);
        out.push(':');
    };
    for f in listed() {
        match (obj.get(f.name), f.go) {
            (None | Some(Value::Null), Some(Omit::Zero(zero))) => {
                key(out, f.name);
                out.push_str(zero);
            }
            (None | Some(Value::Null), _) => {}
            (Some(v), Some(Omit::Empty)) if is_zero(v) => {}
            (Some(v), _) => {
                key(out, f.name);
                write_value(out, v, &f.ty);
            }
        }
    }
    let rest = obj
        .iter()
        .filter(|(k, v)| !v.is_null() && !listed().any(|f| f.name == k.as_str()));
    for (k, v) in rest {
        key(out, k);
        write_value(out, v, &Ty::Any);
    }
    out.push('}');
}

fn write_map(out: &mut String, obj: &Map<String, Value>, inner: &Ty) {
    out.push('{');
    for (i, (key, v)) in obj.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, key);
        out.push(':');
        write_value(out, v, inner);
    }
    out.push('}');
}

fn write_array(out: &mut String, items: &[Value], inner: &Ty) {
    out.push('[');
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_value(out, v, inner);
    }
    out.push(']');
}

/// Go's zero value, which `omitempty` leaves out.
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(num) => num.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

#[cfg(test)]
mod tests;
