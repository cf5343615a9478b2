//! serde's "invalid type" and "invalid value" messages for a JSON value, written directly,
//! for the hand-written settings reader (`settings/read.rs`) only: it goes when that reader
//! is replaced by serde's derive. Everything else uses serde's own errors.

use serde_json::Value;

/// What serde_json's `Value` deserializer calls `v` in an error: ``integer `5` ``,
/// ``string "x"``, `sequence`, ...
pub fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) if n.is_f64() => format!("floating point `{n}`"),
        Value::Number(n) => format!("integer `{n}`"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "sequence".to_string(),
        Value::Object(_) => "map".to_string(),
    }
}

/// serde's `invalid_type` message: ``invalid type: integer `5`, expected a string``.
pub fn invalid_type(v: &Value, expected: &str) -> String {
    format!("invalid type: {}, expected {expected}", describe(v))
}

/// serde's `invalid_value` message: `invalid value: string "v2", expected v1`.
pub fn invalid_value(v: &Value, expected: &str) -> String {
    format!("invalid value: {}, expected {expected}", describe(v))
}

/// serde's list of alternatives: `` `a` ``, `` `a` or `b` ``, `` one of `a`, `b`, `c` ``.
pub fn one_of(names: &[&str]) -> String {
    match names {
        [one] => format!("`{one}`"),
        [a, b] => format!("`{a}` or `{b}`"),
        _ => {
            let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            format!("one of {}", quoted.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::Error as _;
    use serde_json::json;

    /// The texts serde_json itself writes, for every kind of value.
    #[test]
    fn messages_are_serde_jsons() {
        for v in [
            json!(null),
            json!(true),
            json!(7),
            json!(-7),
            json!(u64::MAX),
            json!(1.5),
            json!(1e300),
            json!(-0.0),
            json!(0.1),
            json!("a \"quoted\"\n é \u{7f}"),
            json!([1]),
            json!({"a": 1}),
        ] {
            let (theirs, expected) = match serde_json::from_value::<String>(v.clone()) {
                Err(e) => (e, "a string"),
                Ok(_) => (
                    serde_json::from_value::<bool>(v.clone()).unwrap_err(),
                    "a boolean",
                ),
            };
            assert_eq!(invalid_type(&v, expected), theirs.to_string(), "{v}");
        }
        let theirs = serde_json::Error::invalid_value(serde::de::Unexpected::Unsigned(9), &"i32");
        assert_eq!(invalid_value(&json!(9), "i32"), theirs.to_string());
        let theirs = serde_json::from_value::<bool>(json!(1.0)).unwrap_err();
        assert_eq!(invalid_type(&json!(1.0), "a boolean"), theirs.to_string());
    }

    #[test]
    fn alternatives_are_listed_as_serde_lists_them() {
        assert_eq!(one_of(&["a"]), "`a`");
        assert_eq!(one_of(&["a", "b"]), "`a` or `b`");
        assert_eq!(one_of(&["a", "b", "c"]), "one of `a`, `b`, `c`");
    }
}
