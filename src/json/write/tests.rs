use super::*;
use crate::testgen::{Gen, SplitMix};
use serde_json::json;
use std::path::Path;

fn same_as_serde(v: &Value) {
    let expected = serde_json::to_vec(v).expect("serde_json writes any Value");
    let mut ours = Vec::new();
    write_value(&mut ours, v).expect("writes");
    assert_eq!(
        String::from_utf8_lossy(&ours),
        String::from_utf8_lossy(&expected)
    );
}

#[test]
fn every_ascii_and_some_wider_characters_at_every_offset_of_short_and_long_strings() {
    let mut chars: Vec<char> = (0u8..0x80).map(char::from).collect();
    chars.extend(['\u{7f}', '\u{80}', 'é', '\u{2028}', '€', '😀']);
    for c in chars {
        for before in 0..17 {
            for after in 0..17 {
                let s = format!("{}{c}{}", "a".repeat(before), "b".repeat(after));
                same_as_serde(&Value::String(s));
            }
        }
    }
}

#[test]
fn runs_of_escapes_and_long_plain_strings() {
    for s in [
        "",
        "\"\"\"\"\"\"\"\"\"\"",
        "\\\\\\\\\\\\\\\\\\",
        "\n\r\t\u{8}\u{c}\u{0}\u{1f}",
        "{\"a\":\"b\\\"c\"}",
        &"plain ascii, no escapes at all; ".repeat(40),
        &"ünïcødé ".repeat(30),
    ] {
        same_as_serde(&Value::String(s.to_string()));
    }
}

#[test]
fn scalars_arrays_and_maps() {
    same_as_serde(&json!({
        "null": null, "t": true, "f": false, "zero": 0, "neg": -12, "big": u64::MAX,
        "min": i64::MIN, "float": 1.5, "tiny": 1e-300, "exp": 6.02e23,
        "empty": {}, "none": [], "nested": [[[]], {"k\"ey": ["v\n", 1, {"x": null}]}],
        "ke\u{1}y": "va\\lue"
    }));
}

/// Random values built from the fuzzer's generator: odd words as keys and strings.
#[test]
fn generated_values() {
    fn value(g: &mut Gen<'_>, depth: usize) -> Value {
        match g.below(if depth > 3 { 4 } else { 6 }) {
            0 => Value::Null,
            1 => Value::Bool(g.chance(50)),
            2 => json!(g.below(100_000) as i64 - 50_000),
            3 => {
                let mut s = g.word();
                for _ in 0..g.below(4) {
                    s.push(char::from(g.below(0x80) as u8));
                    s.push_str(&g.word());
                }
                Value::String(s)
            }
            4 => Value::Array((0..g.below(5)).map(|_| value(g, depth + 1)).collect()),
            _ => Value::Object(
                (0..g.below(5))
                    .map(|_| (g.word(), value(g, depth + 1)))
                    .collect(),
            ),
        }
    }
    let mut e = SplitMix(0x5eed_0f7e57);
    let mut g = Gen::new(&mut e);
    for _ in 0..3_000 {
        same_as_serde(&value(&mut g, 0));
    }
}

/// Every JSON fixture of the repository (requests, pods, expected answers) writes back the
/// same as serde_json writes it.
#[test]
fn fixtures() {
    fn walk(dir: &Path, seen: &mut usize) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, seen);
            } else if path.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read(&path).expect("readable fixture");
                if let Ok(v) = serde_json::from_slice::<Value>(&text) {
                    same_as_serde(&v);
                    *seen += 1;
                }
            }
        }
    }
    let mut seen = 0;
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("test-data"),
        &mut seen,
    );
    assert!(seen > 20, "only {seen} JSON fixtures found");
}

#[test]
fn from_slice_matches_serde_json_and_keeps_its_errors() {
    let ok = br#"{"a": ["b\u00e9", 1, {"c": null}], "d": "\ud83d\ude00"}"#;
    assert_eq!(
        crate::json::from_slice::<Value>(ok).unwrap(),
        serde_json::from_slice::<Value>(ok).unwrap()
    );
    for bad in [&b"{\"a\": 1,}"[..], b"[1, 2", b"{\"a\" 1}"] {
        let ours = crate::json::from_slice::<Value>(bad).unwrap_err();
        let theirs = serde_json::from_slice::<Value>(bad).unwrap_err();
        assert_eq!(ours.to_string(), theirs.to_string());
    }
    // Invalid UTF-8: the place of the first bad byte, where serde_json (inside a string)
    // reports it too.
    let ours = crate::json::from_slice::<Value>(b"{\"a\": \"\xff\"}").unwrap_err();
    let theirs = serde_json::from_slice::<Value>(b"{\"a\": \"\xff\"}").unwrap_err();
    assert_eq!(ours.to_string(), "invalid UTF-8 at line 1 column 8");
    assert_eq!(
        (ours.line(), ours.column()),
        (theirs.line(), theirs.column())
    );
}
