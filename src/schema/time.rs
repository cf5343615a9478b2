//! `meta/v1.Time` strings, checked the way k8s-openapi's `Time` deserializes them: with
//! jiff's `Timestamp` (RFC 3339 / Temporal grammar: a date, a time and a required offset).

use serde::Deserialize;
use serde_json::Value;

use super::Error;

/// Check a `Time` field value: a string jiff's `Timestamp` deserializer accepts.
pub(super) fn check_time(v: &Value) -> Result<(), Error> {
    k8s_openapi::jiff::Timestamp::deserialize(v)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_timestamps_with_an_offset_are_accepted() {
        for s in [
            "2026-10-02T08:14:55Z",
            "2026-10-02T08:14:55.123456Z",
            "2026-01-01t10:00:00z",
            "2026-01-01 10:00:00Z",
            "2026-01-01T10:00:00+05:30",
            "2026-01-01T10:00:00-00:00",
            "2016-12-31T23:59:60Z",
            "2024-02-29T00:00:00Z",
        ] {
            assert_eq!(check_time(&Value::from(s)), Ok(()), "{s}");
        }
    }

    #[test]
    fn other_strings_and_types_are_refused_with_a_message() {
        for (v, message) in [
            (Value::from("2026-01-01"), "time component"),
            (Value::from("2026-01-01T10:00:00"), "offset"),
            (Value::from("2026-13-01T00:00:00Z"), "month"),
            (Value::from("2026-02-29T00:00:00Z"), "day"),
            (Value::from("yesterday"), ""),
            (Value::from(""), ""),
            (Value::from(5), "invalid type: integer `5`"),
            (Value::Null, "invalid type: null"),
        ] {
            let err = check_time(&v).expect_err(&v.to_string());
            assert!(err.contains(message), "{v}: {err}");
        }
    }
}
