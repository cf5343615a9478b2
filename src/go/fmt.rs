//! `fmt` and `strconv` as the Istio template and webhook use them.

use serde_json::Value;

/// `fmt.Sprint` of a scalar helm or annotation value (integers without a fraction, strings
/// as is).
pub fn sprint(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => crate::json::int_text(i),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 1e15 => {
                crate::json::int_text(f as i64)
            }
            _ => n.to_string(),
        },
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Go-template truthiness (absent, false, 0, "" and empty are false).
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// `strconv.ParseBool`.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// `strconv.ParseUint(s, 10, bits)` with its error texts (`func` names the caller Istio's
/// message shows).
pub fn parse_uint(s: &str, max: u64, func: &str) -> Result<u64, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "strconv.{func}: parsing {}: invalid syntax",
            quote(s)
        ));
    }
    match s.parse::<u64>() {
        Ok(v) if v <= max => Ok(v),
        _ => Err(format!(
            "strconv.{func}: parsing {}: value out of range",
            quote(s)
        )),
    }
}

/// A double-quoted string like Go's `%q` for the printable strings annotations hold.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sprint_prints_numbers_as_go_does() {
        for (v, want) in [
            (json!(15020), "15020"),
            (json!(-4), "-4"),
            (json!(4.0), "4"),
            (json!(0.5), "0.5"),
            (json!(u64::MAX), "18446744073709551615"),
            (json!(1e20), "1e+20"),
            (json!("x"), "x"),
            (json!(true), "true"),
        ] {
            assert_eq!(sprint(&v), want, "{v}");
        }
    }
}
