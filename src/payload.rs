//! The waPC `validate` payload, `{"request": AdmissionRequest, "settings": Settings}`, read
//! with only what the policy uses.
//!
//! An AdmissionRequest carries much the policy never reads (`uid`, `resource`,
//! `requestKind`, `userInfo`, `oldObject`, `options`, ...): about half of a small request's
//! bytes, in small maps that cost more to build and drop than their size suggests. Those
//! fields are parsed as JSON (a syntax error anywhere is still reported at its line and
//! column) but not built into `Value`s. What [`crate::admission`] reads is kept: the
//! request's `kind`, `namespace`, `object` and `operation`, and the whole `settings`.

use serde::de::{
    self, Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::{Map, Value};
use std::fmt;

/// The request fields [`crate::admission`] reads (sorted, as a `Map` keeps them).
pub const REQUEST_FIELDS: [&str; 4] = ["kind", "namespace", "object", "operation"];

/// The parts of a `validate` payload the policy reads. A payload that is not an object reads
/// as one without `request` and `settings`, like a missing key (`Null`); of two equal keys
/// the last wins, as when the payload is read as a `Value`.
#[derive(Debug, Default, PartialEq)]
pub struct Payload {
    /// The AdmissionRequest with only [`REQUEST_FIELDS`] (any other JSON value as it is).
    pub request: Value,
    pub settings: Value,
}

impl Payload {
    /// Parse a payload (see [`crate::json::from_slice`] for the UTF-8 check and its errors).
    pub fn from_slice(bytes: &[u8]) -> serde_json::Result<Payload> {
        crate::json::from_slice(bytes)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(PayloadVisitor)
    }
}

/// A key of the payload or of the request: its index among the keys kept, compared without
/// allocating when it has no escapes.
struct Key(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for Key {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|k| *k == key))
    }
}

struct PayloadVisitor;

impl<'de> Visitor<'de> for PayloadVisitor {
    type Value = Payload;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a validation request")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Payload, A::Error> {
        let mut out = Payload::default();
        while let Some(key) = map.next_key_seed(Key(&["request", "settings"]))? {
            match key {
                Some(0) => out.request = map.next_value_seed(RequestVisitor)?,
                Some(_) => out.settings = map.next_value()?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Payload, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Payload::default())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Payload, E> {
        Ok(Payload::default())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Payload, E> {
        Ok(Payload::default())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Payload, E> {
        Ok(Payload::default())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Payload, E> {
        Ok(Payload::default())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Payload, E> {
        Ok(Payload::default())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Payload, E> {
        Ok(Payload::default())
    }
}

/// The request: an object keeps [`REQUEST_FIELDS`]; anything else is read as a `Value` (the
/// policy rejects it, naming what it is not).
struct RequestVisitor;

impl<'de> DeserializeSeed<'de> for RequestVisitor {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RequestVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an admission request")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key_seed(Key(&REQUEST_FIELDS))? {
            match key {
                Some(i) => {
                    let value = map.next_value()?;
                    out.insert(REQUEST_FIELDS[i].to_string(), value);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Value, E> {
        Ok(Value::from(n))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Value, E> {
        Ok(Value::from(n))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_string()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

#[cfg(test)]
mod tests;
