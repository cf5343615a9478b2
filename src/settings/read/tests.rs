//! The hand-written reader against serde's derived `Deserialize`, which it replaces on the
//! request path: the same settings or the same message, on generated input.

use super::*;
use crate::testgen::{Gen, SplitMix};
use serde::Deserialize;
use serde_json::json;

/// Values of every JSON type; `arrays`/`objects` say whether the position may get them
/// (struct positions never get arrays, enum positions never get maps: the forms the reader
/// refuses on purpose, tested below).
fn wrong(rng: &mut Gen, arrays: bool, objects: bool) -> Value {
    let mut pool = vec![
        json!(null),
        json!(true),
        json!(3),
        json!(-4),
        json!(2.5),
        json!("x"),
        json!("disabled"),
    ];
    if arrays {
        pool.extend([json!([]), json!(["a", 1])]);
    }
    if objects {
        pool.extend([json!({}), json!({"a": "b"})]);
    }
    pool.swap_remove(rng.below(pool.len()))
}

fn strings(rng: &mut Gen) -> Value {
    if rng.chance(15) {
        return wrong(rng, false, true);
    }
    let items: Vec<Value> = (0..rng.below(3))
        .map(|_| {
            if rng.chance(10) {
                wrong(rng, true, true)
            } else {
                json!(rng.word())
            }
        })
        .collect();
    Value::Array(items)
}

fn requirement(rng: &mut Gen) -> Value {
    if rng.chance(8) {
        return wrong(rng, false, false);
    }
    let mut r = Map::new();
    if !rng.chance(10) {
        r.insert(
            "key".into(),
            if rng.chance(8) {
                wrong(rng, true, true)
            } else {
                json!("k")
            },
        );
    }
    if !rng.chance(10) {
        let op = match rng.below(6) {
            0 => json!("In"),
            1 => json!("NotIn"),
            2 => json!("Exists"),
            3 => json!("DoesNotExist"),
            4 => json!("in"),
            _ => wrong(rng, true, false),
        };
        r.insert("operator".into(), op);
    }
    if rng.chance(50) {
        r.insert("values".into(), strings(rng));
    }
    if rng.chance(5) {
        r.insert("value".into(), json!("typo"));
    }
    Value::Object(r)
}

fn selector(rng: &mut Gen) -> Value {
    if rng.chance(8) {
        return wrong(rng, false, false);
    }
    let mut s = Map::new();
    if rng.chance(50) {
        let labels = if rng.chance(10) {
            wrong(rng, true, false)
        } else {
            let mut m = Map::new();
            for _ in 0..rng.below(3) {
                let v = if rng.chance(10) {
                    wrong(rng, true, true)
                } else {
                    json!(rng.word())
                };
                m.insert(rng.word(), v);
            }
            Value::Object(m)
        };
        s.insert("matchLabels".into(), labels);
    }
    if rng.chance(50) {
        let list = if rng.chance(10) {
            wrong(rng, false, true)
        } else {
            Value::Array((0..rng.below(3)).map(|_| requirement(rng)).collect())
        };
        s.insert("matchExpressions".into(), list);
    }
    if rng.chance(5) {
        s.insert("matchLabel".into(), json!({}));
    }
    Value::Object(s)
}

fn selectors(rng: &mut Gen) -> Value {
    if rng.chance(10) {
        return wrong(rng, false, true);
    }
    Value::Array((0..rng.below(3)).map(|_| selector(rng)).collect())
}

fn settings(rng: &mut Gen) -> Value {
    let mut s = Map::new();
    for field in SETTINGS_FIELDS {
        if !rng.chance(30) {
            continue;
        }
        let bad = rng.chance(10);
        let value = match *field {
            _ if bad && !matches!(*field, "values" | "meshConfig") => wrong(
                rng,
                true,
                !matches!(*field, "policy" | "namespaceLookupFailure"),
            ),
            "revision" | "istioNamespace" => json!(rng.word()),
            "tags" | "ignoredNamespaces" => strings(rng),
            "allowedOverrideAnnotations" if rng.chance(30) => json!(null),
            "allowedOverrideAnnotations" => strings(rng),
            "defaultRevision" | "enableNamespacesByDefault" | "nativeSidecars" => {
                json!(rng.chance(50))
            }
            "policy" => json!(rng.pick(&["enabled", "disabled", "Enabled"])),
            "namespaceLookupFailure" => json!(rng.pick(&["reject", "skip", "fail"])),
            "neverInjectSelector" | "alwaysInjectSelector" => selectors(rng),
            _ => wrong(rng, true, true),
        };
        s.insert(field.to_string(), value);
    }
    if rng.chance(5) {
        s.insert(rng.pick(&["revison", "Revision", "tag"]).into(), json!("x"));
    }
    Value::Object(s)
}

#[test]
fn reads_what_serdes_derive_reads_with_the_same_messages() {
    let mut seed = SplitMix(0x5e77_1a65_0dd5_beef);
    let mut rng = Gen::new(&mut seed);
    let (mut accepted, mut rejected) = (0, 0);
    for _ in 0..20_000 {
        let v = settings(&mut rng);
        let theirs = Settings::deserialize(&v).map_err(|e| e.to_string());
        match (super::settings(&v), theirs) {
            (Ok(ours), Ok(theirs)) => {
                assert_eq!(ours, theirs, "{v}");
                accepted += 1;
            }
            (Err(ours), Err(theirs)) => {
                assert_eq!(ours, theirs, "{v}");
                rejected += 1;
            }
            (ours, theirs) => panic!("{v}\nours: {ours:?}\nserde: {theirs:?}"),
        }
    }
    // Both outcomes are exercised in earnest.
    assert!(
        accepted > 2_000 && rejected > 2_000,
        "{accepted} accepted, {rejected} rejected"
    );
}

#[test]
fn the_policy_and_selectors_in_helm_values_read_alike() {
    let mut seed = SplitMix(0x0ddc_0ffe_e15e_a5e1);
    let mut rng = Gen::new(&mut seed);
    for _ in 0..5_000 {
        let v = selectors(&mut rng);
        let theirs = Vec::<LabelSelector>::deserialize(&v).map_err(|e| e.to_string());
        assert_eq!(super::selectors(&v), theirs, "{v}");
        let p = json!(rng.pick(&["enabled", "disabled", "maybe"]));
        let p = if rng.chance(20) {
            wrong(&mut rng, true, false)
        } else {
            p
        };
        let theirs = InjectPolicy::deserialize(&p).map_err(|e| e.to_string());
        assert_eq!(inject_policy(&p), theirs, "{p}");
    }
}

/// serde accepts these forms; the reader refuses them, saying what it wanted.
#[test]
fn sequence_structs_and_map_variants_are_refused() {
    let cases = [
        (
            json!(["canary"]),
            "invalid type: sequence, expected struct Settings",
        ),
        (
            json!({"neverInjectSelector": [[{}]]}),
            "invalid type: sequence, expected struct LabelSelector",
        ),
        (
            json!({"policy": {"enabled": null}}),
            "invalid type: map, expected a string",
        ),
    ];
    for (v, message) in cases {
        assert_eq!(super::settings(&v).unwrap_err(), message, "{v}");
    }
}
