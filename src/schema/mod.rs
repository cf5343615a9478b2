//! Type-checking a pod against the v1 Pod schema without deserializing it.
//!
//! The policy rejects pods that k8s-openapi's `Pod` would not deserialize (a string where
//! an integer belongs, an object where a list belongs...). Doing that with k8s-openapi's
//! generated `Deserialize` impls built a whole typed copy of the pod per request and linked
//! several hundred KB of visitor code into policy.wasm. [`check_pod`] walks the JSON against
//! a table generated from the same k8s-openapi sources (`pod_types.rs`, by
//! `scripts/gen-pod-schema.py`) and fails with the error serde would have produced, in the
//! same order (keys in map order, first error wins). The tests compare both on every field.
//!
//! The same table is the one Pod schema of the crate: it also carries what Go's
//! `json.Marshal` ([`crate::go::json`]) and Kubernetes' strategic merge ([`crate::merge`])
//! need, Go field order, `omitempty` and list merge keys.

pub mod pod_types;
mod time;

use serde::de::{Error as _, Unexpected};
use serde_json::Value;

pub use pod_types::{CONTAINER, PARSED_CONTAINERS, POD, PROBER, STRUCTS};

/// A JSON value's type in the schema.
#[derive(Debug)]
pub enum Ty {
    Bool,
    I32,
    I64,
    F64,
    Str,
    /// `resource.Quantity`: a string or any number.
    Quantity,
    /// `intstr.IntOrString`: a string or a 32-bit integer.
    IntOrString,
    /// `meta/v1.Time` or `MicroTime` (the name): an RFC 3339 timestamp, as jiff parses it.
    Time(&'static str),
    /// Anything (`FieldsV1`, raw JSON).
    Any,
    Seq(&'static Ty),
    /// A map with string keys.
    Map(&'static Ty),
    /// An index into the struct table.
    Struct(usize),
}

/// An object type: its name (what serde says it expected) and its known fields.
#[derive(Debug)]
pub struct Struct {
    pub name: &'static str,
    /// `apiVersion` and `kind` values a resource requires when present.
    pub resource: Option<(&'static str, &'static str)>,
    /// Those with Go data first, in Go declaration order.
    pub fields: &'static [Field],
}

/// A struct field.
#[derive(Debug)]
pub struct Field {
    pub name: &'static str,
    pub ty: Ty,
    /// How `json.Marshal` writes the field when it is listed in `scripts/pod-schema-go.txt`.
    /// Unlisted fields are opaque to the injector: written as a Go map would be (sorted keys)
    /// and replaced whole by a strategic merge.
    pub go: Option<Omit>,
    /// A list's `patchMergeKey` (strategic merge merges its items by that key).
    pub merge_key: Option<&'static str>,
}

impl Field {
    pub const fn new(
        name: &'static str,
        ty: Ty,
        go: Option<Omit>,
        merge_key: Option<&'static str>,
    ) -> Field {
        Field {
            name,
            ty,
            go,
            merge_key,
        }
    }
}

/// When Go's `json.Marshal` leaves a struct field out.
#[derive(Debug, Clone, Copy)]
pub enum Omit {
    /// `omitempty` on a value type: zero values are left out.
    Empty,
    /// A pointer (or struct) field with `omitempty`: left out only when absent.
    Nil,
    /// No `omitempty`: an absent value is written as this JSON text.
    Zero(&'static str),
}

/// The struct at `index` of the table (`None` for an index the table does not have).
pub fn struct_at(index: usize) -> Option<&'static Struct> {
    STRUCTS.get(index)
}

/// The field `name` of a value of type `ty`, when `ty` is a struct that has it.
pub fn field(ty: &Ty, name: &str) -> Option<&'static Field> {
    match ty {
        Ty::Struct(i) => struct_at(*i)?.fields.iter().find(|f| f.name == name),
        _ => None,
    }
}

/// Check `pod` as `k8s_openapi::api::core::v1::Pod` deserialization would; the error is
/// serde's message (e.g. ``invalid type: string "80", expected i32``).
pub fn check_pod(pod: &Value) -> Result<(), String> {
    check_struct(POD, pod)
}

/// serde's message, as k8s-openapi's visitors would have failed.
type Error = String;

/// How serde names a JSON value in its errors.
fn unexpected(v: &Value) -> Unexpected<'_> {
    match v {
        Value::Null => Unexpected::Unit,
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Unexpected::Unsigned(u),
            (None, Some(i), _) => Unexpected::Signed(i),
            (None, None, f) => Unexpected::Float(f.unwrap_or(f64::NAN)),
        },
        Value::String(s) => Unexpected::Str(s),
        Value::Array(_) => Unexpected::Seq,
        Value::Object(_) => Unexpected::Map,
    }
}

fn invalid_type(v: &Value, expected: &str) -> Error {
    serde_json::Error::invalid_type(unexpected(v), &expected).to_string()
}

fn invalid_value(v: &Value, expected: &str) -> Error {
    serde_json::Error::invalid_value(unexpected(v), &expected).to_string()
}

fn check_struct(index: usize, v: &Value) -> Result<(), Error> {
    let Some(def) = struct_at(index) else {
        return Err(format!("schema table has no struct {index}"));
    };
    let Value::Object(map) = v else {
        return Err(invalid_type(v, def.name));
    };
    for (key, value) in map {
        if let Some((api_version, kind)) = def.resource {
            let required = match key.as_str() {
                "apiVersion" => Some(api_version),
                "kind" => Some(kind),
                _ => None,
            };
            if let Some(required) = required {
                let Value::String(s) = value else {
                    return Err(invalid_type(value, "a string"));
                };
                if s != required {
                    return Err(invalid_value(value, required));
                }
                continue;
            }
        }
        // Every field is optional in k8s-openapi's visitors: `null` is always accepted.
        if let Some(field) = def.fields.iter().find(|f| f.name == key) {
            if !value.is_null() {
                check(&field.ty, value)?;
            }
        }
    }
    Ok(())
}

fn check_int(v: &Value, expected: &'static str, min: i64, max: i64) -> Result<(), Error> {
    let Value::Number(n) = v else {
        return Err(invalid_type(v, expected));
    };
    let in_range = match (n.as_u64(), n.as_i64()) {
        (Some(u), _) => i64::try_from(u).is_ok_and(|i| i <= max),
        (None, Some(i)) => (min..=max).contains(&i),
        (None, None) => return Err(invalid_type(v, expected)),
    };
    if in_range {
        Ok(())
    } else {
        Err(invalid_value(v, expected))
    }
}

fn check(ty: &Ty, v: &Value) -> Result<(), Error> {
    match ty {
        Ty::Any => Ok(()),
        Ty::Bool => match v {
            Value::Bool(_) => Ok(()),
            _ => Err(invalid_type(v, "a boolean")),
        },
        Ty::Str => match v {
            Value::String(_) => Ok(()),
            _ => Err(invalid_type(v, "a string")),
        },
        Ty::F64 => match v {
            Value::Number(_) => Ok(()),
            _ => Err(invalid_type(v, "f64")),
        },
        Ty::I32 => check_int(v, "i32", i32::MIN.into(), i32::MAX.into()),
        Ty::I64 => check_int(v, "i64", i64::MIN, i64::MAX),
        Ty::Quantity => match v {
            Value::String(_) | Value::Number(_) => Ok(()),
            _ => Err(invalid_type(v, "Quantity")),
        },
        Ty::IntOrString => match v {
            Value::String(_) => Ok(()),
            Value::Number(n) if n.is_f64() => Err(invalid_type(v, "IntOrString")),
            Value::Number(_) => check_int(v, "i32", i32::MIN.into(), i32::MAX.into())
                .map_err(|_| invalid_value(v, "a 32-bit integer")),
            _ => Err(invalid_type(v, "IntOrString")),
        },
        Ty::Time(_) => time::check_time(v),
        Ty::Seq(item) => match v {
            Value::Array(items) => items.iter().try_for_each(|i| check(item, i)),
            _ => Err(invalid_type(v, "a sequence")),
        },
        Ty::Map(item) => match v {
            Value::Object(map) => map.values().try_for_each(|i| check(item, i)),
            _ => Err(invalid_type(v, "a map")),
        },
        Ty::Struct(index) => check_struct(*index, v),
    }
}

#[cfg(test)]
mod tests;
