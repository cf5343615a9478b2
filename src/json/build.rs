//! Building `Value`s with code the size of the data.
//!
//! `serde_json::json!` expands every map entry in place: an allocation for the key, a copy of
//! its bytes, the `BTreeMap` insert and the drop of the value it replaces, and
//! `serde_json::to_value` (through the serializer, with an `unwrap`) for every expression.
//! The template built that way was most of policy.wasm's own code. [`value!`] takes the same
//! JSON-like syntax and expands each entry to one call of [`put`]; expressions are converted
//! by [`ToValue`], one small function per type. A key or value that is more than one token
//! (`-1`, `a.b()`, `if …`) is written in parentheses.

use serde_json::{Map, Value};

/// Inserts `key` (copied) with `value`: one out-of-line call per entry of `value!`.
#[inline(never)]
pub fn put(map: &mut Map<String, Value>, key: &str, value: Value) {
    map.insert(key.to_owned(), value);
}

/// `serde_json::json!`'s syntax, built from out-of-line calls (see the module doc).
macro_rules! value {
    (null) => {
        ::serde_json::Value::Null
    };
    ([ $($elem:tt),* $(,)? ]) => {
        ::serde_json::Value::Array(::std::vec![ $( $crate::json::value!($elem) ),* ])
    };
    ({ $($key:tt : $val:tt),* $(,)? }) => {{
        #[allow(unused_mut)]
        let mut map = ::serde_json::Map::new();
        $( $crate::json::put(&mut map, $key, $crate::json::value!($val)); )*
        ::serde_json::Value::Object(map)
    }};
    ($other:expr) => {
        $crate::json::ToValue::to_value($other)
    };
}
pub(crate) use value;

/// What `value!` accepts as a value: the JSON a value of the type stands for.
pub trait ToValue {
    fn to_value(self) -> Value;
}

impl ToValue for Value {
    fn to_value(self) -> Value {
        self
    }
}

impl ToValue for &Value {
    fn to_value(self) -> Value {
        self.clone()
    }
}

impl ToValue for Map<String, Value> {
    fn to_value(self) -> Value {
        Value::Object(self)
    }
}

impl ToValue for String {
    fn to_value(self) -> Value {
        Value::String(self)
    }
}

impl ToValue for &String {
    fn to_value(self) -> Value {
        Value::String(self.clone())
    }
}

impl ToValue for &str {
    fn to_value(self) -> Value {
        Value::String(self.to_owned())
    }
}

impl ToValue for &&str {
    fn to_value(self) -> Value {
        Value::String((*self).to_owned())
    }
}

impl ToValue for bool {
    fn to_value(self) -> Value {
        Value::Bool(self)
    }
}

macro_rules! integers {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(self) -> Value {
                Value::from(self)
            }
        }
    )*};
}
integers!(i32, i64, u16, u32, u64, usize);

impl<T: ToValue> ToValue for Vec<T> {
    fn to_value(self) -> Value {
        Value::Array(self.into_iter().map(ToValue::to_value).collect())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn builds_what_json_builds() {
        let name = String::from("istio-proxy");
        let (port, root, list) = (15021_u16, false, vec!["NET_ADMIN", "NET_RAW"]);
        const KEY: &str = "sidecar.istio.io/status";
        let built = value!({
            "name": (&name),
            "ports": [{"containerPort": 15090, "protocol": "TCP"}, null, []],
            "httpGet": {"path": "/healthz/ready", "port": port},
            "runAsUser": (if root { 0 } else { 1337 }),
            "offset": (-1),
            "caps": list,
            "empty": {},
            KEY: (json!({"a": [1.5, "x"]})),
        });
        let expected = json!({
            "name": name,
            "ports": [{"containerPort": 15090, "protocol": "TCP"}, null, []],
            "httpGet": {"path": "/healthz/ready", "port": 15021},
            "runAsUser": 1337,
            "offset": -1,
            "caps": ["NET_ADMIN", "NET_RAW"],
            "empty": {},
            "sidecar.istio.io/status": {"a": [1.5, "x"]},
        });
        assert_eq!(built, expected);
    }

    #[test]
    fn a_repeated_key_keeps_the_last_value_as_json_does() {
        assert_eq!(value!({"a": 1, "a": 2}), json!({"a": 2}));
    }
}
