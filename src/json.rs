//! Path lookups in `serde_json::Value` trees without allocating.
//!
//! `Value::pointer` unescapes every path segment into a new `String` (`~1`, `~0`), and the
//! template reads a few hundred paths per request; these walk borrowed keys instead.

use serde_json::Value;

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
