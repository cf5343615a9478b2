//! JSON helpers on the request path: path lookups without allocating, and reading and
//! writing the payload text faster than serde_json's generic paths do in wasm.
//!
//! `Value::pointer` unescapes every path segment into a new `String` (`~1`, `~0`), and the
//! template reads a few hundred paths per request; [`Path`] walks borrowed keys instead.
//!
//! serde_json is built without `preserve_order`, so a `Map` is a `BTreeMap` and iterates in
//! key order (byte order, as Go sorts map keys when it marshals or ranges over them in a
//! template): the injection code relies on that instead of sorting keys again.

mod build;
mod meta;
pub mod unexpected;
mod write;

pub(crate) use build::value;
pub use build::{put, ToValue};
pub use meta::{labels_of, meta_map};

pub use write::{into_text, write_str, write_value};

use serde_json::Value;

/// Parse JSON text from bytes as `serde_json::from_slice` does, with one UTF-8 check over
/// the whole input instead of one per string (serde_json checks each string it reads from
/// a byte slice; from `&str` it need not). On the guest that per-string check was ~6 % of
/// a large pod's request, and parsing only from `&str` keeps one instance of serde_json's
/// parser in policy.wasm. Invalid UTF-8 is an error naming its line and column.
pub fn from_slice<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> serde_json::Result<T> {
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text),
        Err(e) => {
            let before = &bytes[..e.valid_up_to()];
            let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
            let column = 1 + before.iter().rev().take_while(|&&b| b != b'\n').count();
            Err(serde::de::Error::custom(format_args!(
                "invalid UTF-8 at line {line} column {column}"
            )))
        }
    }
}

/// Append `n` in decimal. `core::fmt` (`format!`, `to_string`) costs a formatter and a
/// dynamic call per number; the template writes a few integers per request.
pub fn push_u64(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[start..].iter().map(|&d| char::from(d)));
}

/// `n` in decimal (see [`push_u64`]).
pub fn int_text(n: i64) -> String {
    let mut out = String::new();
    if n < 0 {
        out.push('-');
    }
    push_u64(&mut out, n.unsigned_abs());
    out
}

/// Lookups by a path of map keys (array elements are not addressed by these paths).
pub trait Path {
    /// The value at `path`, if every step is a map holding the next key.
    fn at(&self, path: &[&str]) -> Option<&Value>;
    /// [`Path::at`] for editing.
    fn at_mut(&mut self, path: &[&str]) -> Option<&mut Value>;
}

impl Path for Value {
    fn at(&self, path: &[&str]) -> Option<&Value> {
        path.iter().try_fold(self, |v, k| v.as_object()?.get(*k))
    }

    fn at_mut(&mut self, path: &[&str]) -> Option<&mut Value> {
        path.iter()
            .try_fold(self, |v, k| v.as_object_mut()?.get_mut(*k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integers_are_written_as_core_fmt_writes_them() {
        for n in [0, 1, -1, 9, 10, 15020, -600, 1 << 40, i64::MAX, i64::MIN] {
            assert_eq!(int_text(n), n.to_string());
        }
        let mut out = "x".to_string();
        push_u64(&mut out, u64::MAX);
        assert_eq!(out, format!("x{}", u64::MAX));
    }

    #[test]
    fn invalid_utf8_is_an_error_naming_its_place() {
        let err = from_slice::<Value>(b"{\n  \"a\": \"\xff\"}").unwrap_err();
        assert_eq!(err.to_string(), "invalid UTF-8 at line 2 column 9");
        assert_eq!((err.line(), err.column()), (2, 9));
        let ok: Value = from_slice(b"{\"a\": [1, \"\xc3\xa9\"]}").unwrap();
        assert_eq!(ok, json!({"a": [1, "\u{e9}"]}));
    }

    /// Guards the module's promise: were `preserve_order` switched on (by this crate or any
    /// dependency), maps would keep insertion order and Go's key order would be lost.
    #[test]
    fn maps_iterate_in_byte_order_of_their_keys() {
        let map = json!({"b": 1, "a.b": 2, "B": 3, "a": 4, "é": 5, "a/": 6});
        let keys: Vec<&str> = map
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["B", "a", "a.b", "a/", "b", "é"]);
    }

    #[test]
    fn walks_maps_only() {
        let mut v = json!({"a": {"b": [1], "c": {"d": "x"}}});
        assert_eq!(v.at(&["a", "c", "d"]), Some(&json!("x")));
        assert_eq!(v.at(&[]), Some(&v.clone()));
        assert_eq!(v.at(&["a", "b", "0"]), None, "no array indexing");
        assert_eq!(v.at(&["a", "zz"]), None);
        *v.at_mut(&["a", "c", "d"]).unwrap() = json!(1);
        assert_eq!(v["a"]["c"]["d"], 1);
    }
}
