use super::*;
use crate::admission::evaluate_owned;
use crate::settings::Settings;
use crate::testgen::{case, CaseCluster, SplitMix};
use serde_json::json;

/// What reading the payload as a `Value` gives, with the request cut to the fields kept.
fn expected(payload: &[u8]) -> serde_json::Result<Payload> {
    let mut v: Value = crate::json::from_slice(payload)?;
    let mut request = v.get_mut("request").map(Value::take).unwrap_or(Value::Null);
    if let Some(m) = request.as_object_mut() {
        m.retain(|k, _| REQUEST_FIELDS.contains(&k.as_str()));
    }
    let settings = v
        .get_mut("settings")
        .map(Value::take)
        .unwrap_or(Value::Null);
    Ok(Payload { request, settings })
}

#[test]
fn generated_requests_read_as_their_values_and_answer_the_same() {
    let settings = json!({"nativeSidecars": false, "revision": "canary"});
    let parsed = Settings::from_value(&settings).expect("valid settings");
    let mut dropped = 0;
    for seed in 0..800u64 {
        let c = case(&mut SplitMix(seed));
        let payload = serde_json::to_vec(&json!({"request": c.request, "settings": settings}))
            .expect("serializable");
        let read = Payload::from_slice(&payload).expect("parses");
        assert_eq!(read, expected(&payload).expect("parses"), "seed {seed}");
        if let (Some(all), Some(kept)) = (c.request.as_object(), read.request.as_object()) {
            dropped += all.len() - kept.len();
        }
        let cluster = CaseCluster(&c);
        assert_eq!(
            evaluate_owned(read.request, &parsed, &cluster),
            evaluate_owned(c.request.clone(), &parsed, &cluster),
            "seed {seed}"
        );
    }
    assert!(
        dropped > 800,
        "only {dropped} fields left out: the generator changed"
    );
}

#[test]
fn shapes_other_than_an_object() {
    for text in [
        "null",
        "true",
        "1",
        "-1",
        "1.5",
        "\"x\"",
        "[]",
        "[1, {\"request\": {}}]",
        "{}",
    ] {
        let read = Payload::from_slice(text.as_bytes()).expect("valid JSON");
        assert_eq!(read, Payload::default(), "{text}");
        assert_eq!(
            read,
            expected(text.as_bytes()).expect("valid JSON"),
            "{text}"
        );
    }
    for request in [
        "null",
        "true",
        "7",
        "18446744073709551615",
        "-2.5",
        "\"pod\"",
        "[1, {\"a\": [2]}]",
    ] {
        let text = format!("{{\"request\": {request}, \"settings\": {{\"revision\": \"x\"}}}}");
        let read = Payload::from_slice(text.as_bytes()).expect("valid JSON");
        assert_eq!(
            read,
            expected(text.as_bytes()).expect("valid JSON"),
            "{text}"
        );
        assert_eq!(
            read.request,
            serde_json::from_str::<Value>(request).expect("JSON")
        );
    }
}

#[test]
fn escaped_and_repeated_keys_read_like_a_value() {
    let text = br#"{"settings": 1, "req\u0075est": {"operation": "DELETE", "ob\u006aect": {"a": 1},
        "operation": "CREATE", "userInfo": {"username": "x"}}, "settings": {"revision": "b"},
        "other": [1, 2]}"#;
    let read = Payload::from_slice(text).expect("valid JSON");
    assert_eq!(read, expected(text).expect("valid JSON"));
    assert_eq!(
        read.request,
        json!({"operation": "CREATE", "object": {"a": 1}})
    );
    assert_eq!(read.settings, json!({"revision": "b"}));
}

#[test]
fn syntax_errors_in_fields_left_out_are_reported_where_they_are() {
    for text in [
        r#"{"request": {"userInfo": {"groups": ["a", tru]}}}"#,
        r#"{"request": {"uid": "abc}"#,
        r#"{"request": {"options": {"kind" "CreateOptions"}}}"#,
        r#"{"request": {"dryRun": false,}}"#,
        r#"{"request": {"oldObject": {"a": "\q"}}}"#,
        r#"{"ignored": [1, 2}"#,
        r#"{"request": {"object": {}}} trailing"#,
    ] {
        let ours = Payload::from_slice(text.as_bytes())
            .expect_err(text)
            .to_string();
        let theirs = expected(text.as_bytes()).expect_err(text).to_string();
        assert_eq!(ours, theirs, "{text}");
    }
    // serde_json's skipping scan names a control character in a string one column before
    // its decoding scan does; the message is otherwise the same.
    let text = b"{\"request\": {\"uid\": \"tab\tinside\"}}";
    assert_eq!(
        Payload::from_slice(text)
            .expect_err("control character")
            .to_string(),
        "control character (\\u0000-\\u001F) found while parsing a string at line 1 column 24"
    );
}

/// Fields left out are checked for syntax only: a value `Value` cannot hold (a number beyond
/// f64, a lone surrogate) in them does not reject a request the policy can answer.
#[test]
fn fields_left_out_are_not_decoded() {
    let text = br#"{"request": {"uid": "\ud800", "options": {"n": 1e400}, "operation": "UPDATE"}}"#;
    assert!(expected(text).is_err());
    let read = Payload::from_slice(text).expect("syntax is valid");
    assert_eq!(read.request, json!({"operation": "UPDATE"}));
}
