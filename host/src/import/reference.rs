//! What a default install of each supported Istio version writes in its injector ConfigMaps
//! (`host/istio/<version>/`, see its README), and the comparisons `revinject import` makes
//! with it: which version a `sidecar` template is, a small line diff, what differs from the
//! chart's values.

use serde_json::{Map, Value};

use revision_injector::versions::IstioVersion;

/// One supported version's chart defaults.
pub struct Reference {
    /// The release the files come from (`1.23.3`), `1.32` for the main branch.
    pub release: &'static str,
    /// The chart's `sidecar` template.
    pub template: &'static str,
    /// The ConfigMap's `values` key in a default install (JSON).
    pub values: &'static str,
}

macro_rules! references {
    ($($v:literal),+) => {
        /// Every supported version, oldest first.
        pub const REFERENCES: &[Reference] = &[$(Reference {
            release: $v,
            template: include_str!(concat!("../../istio/", $v, "/injection-template.yaml")),
            values: include_str!(concat!("../../istio/", $v, "/values.json")),
        }),+];
    };
}
references!(
    "1.22.8", "1.23.3", "1.24.0", "1.25.5", "1.26.8", "1.27.9", "1.28.10", "1.29.6", "1.30.3",
    "1.32"
);

/// A default install's `mesh` key (the same at every supported version).
pub const DEFAULT_MESH: &str = include_str!("../../istio/mesh.yaml");

impl Reference {
    pub fn version(&self) -> IstioVersion {
        // The embedded names are all valid versions (tested).
        IstioVersion::parse(self.release).unwrap_or_default()
    }

    /// The chart's values, parsed.
    pub fn values(&self) -> Value {
        serde_json::from_str(self.values).unwrap_or_else(|_| Value::Object(Map::new()))
    }
}

/// The version whose chart template `template` is, byte for byte (the chart trims the file
/// before indenting it into the ConfigMap, so surrounding whitespace is not compared).
pub fn by_template(template: &str) -> Option<&'static Reference> {
    REFERENCES
        .iter()
        .find(|r| r.template.trim() == template.trim())
}

/// The reference of a minor version.
pub fn by_minor(minor: u8) -> Option<&'static Reference> {
    REFERENCES.iter().find(|r| r.version().minor == minor)
}

/// The version a proxy image tag names: `1.23.3`, `1.23.3-asm.2`, `1.24.0-distroless` …;
/// `None` for `latest`, a digest or a version outside the supported range.
pub fn version_from_tag(tag: &str) -> Option<IstioVersion> {
    let end = tag
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(tag.len());
    IstioVersion::parse(tag[..end].trim_end_matches('.')).ok()
}

/// The first lines where `actual` differs from `expected`: the common head and tail are cut
/// and at most `max` removed and `max` added lines are shown, numbered as in `expected`.
pub fn line_diff(expected: &str, actual: &str, max: usize) -> Vec<String> {
    let (e, a): (Vec<&str>, Vec<&str>) = (
        expected.trim().lines().collect(),
        actual.trim().lines().collect(),
    );
    let head = e.iter().zip(&a).take_while(|(x, y)| x == y).count();
    let tail = e[head..]
        .iter()
        .rev()
        .zip(a[head..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (removed, added) = (&e[head..e.len() - tail], &a[head..a.len() - tail]);
    let mut out = vec![format!(
        "@@ line {}: {} line(s) of the chart's template replaced by {} @@",
        head + 1,
        removed.len(),
        added.len()
    )];
    let shown = |lines: &[&str], sign: char, out: &mut Vec<String>| {
        out.extend(lines.iter().take(max).map(|l| format!("{sign} {l}")));
        if lines.len() > max {
            out.push(format!("{sign} … {} more", lines.len() - max));
        }
    };
    shown(removed, '-', &mut out);
    shown(added, '+', &mut out);
    out
}

/// What of `actual` differs from `default`: maps are compared key by key, anything else
/// (scalars, lists) as a whole; `None` when nothing differs. Keys only in `default` are not
/// reported (an install never deletes a chart value; it sets it).
pub fn diff(actual: &Value, default: &Value) -> Option<Value> {
    match (actual, default) {
        (Value::Object(a), Value::Object(d)) => {
            let out: Map<String, Value> = a
                .iter()
                .filter_map(|(k, v)| match d.get(k) {
                    Some(dv) => diff(v, dv).map(|x| (k.clone(), x)),
                    None => Some((k.clone(), v.clone())),
                })
                .collect();
            (!out.is_empty()).then_some(Value::Object(out))
        }
        _ => (actual != default).then(|| actual.clone()),
    }
}

/// The dotted paths of `value`'s leaves, maps followed at most `depth` levels deep.
pub fn leaf_paths(value: &Value, depth: usize) -> Vec<String> {
    match value {
        Value::Object(map) if depth > 0 => map
            .iter()
            .flat_map(|(k, v)| {
                let below = leaf_paths(v, depth - 1);
                if below.is_empty() {
                    vec![k.clone()]
                } else {
                    below.into_iter().map(|p| format!("{k}.{p}")).collect()
                }
            })
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_reference_is_a_distinct_supported_version() {
        for (i, r) in REFERENCES.iter().enumerate() {
            assert!(IstioVersion::parse(r.release).is_ok(), "{}", r.release);
            assert!(r.values().get("global").is_some(), "{}", r.release);
            assert_eq!(by_template(r.template).unwrap().release, r.release);
            assert!(REFERENCES[..i].iter().all(|o| o.template != r.template));
        }
    }

    #[test]
    fn tags_name_versions() {
        let v = |t: &str| version_from_tag(t).map(|v| v.to_string());
        assert_eq!(v("1.23.3-asm.2").as_deref(), Some("1.23.3"));
        assert_eq!(v("1.24.0").as_deref(), Some("1.24.0"));
        assert_eq!(v("1.25.5-distroless").as_deref(), Some("1.25.5"));
        assert_eq!(v("latest"), None);
        assert_eq!(v("1.31.0"), None);
        assert_eq!(v(""), None);
    }

    #[test]
    fn diff_keeps_what_differs() {
        let d = json!({"global": {"hub": "a", "proxy": {"x": 1, "y": [1]}}, "r": ""});
        let a = json!({"global": {"hub": "a", "proxy": {"x": 2, "y": [1]}, "new": true}, "r": ""});
        assert_eq!(
            diff(&a, &d),
            Some(json!({"global": {"proxy": {"x": 2}, "new": true}}))
        );
        assert_eq!(diff(&d, &d), None);
        assert_eq!(
            leaf_paths(&json!({"a": {"b": {"c": 1}}, "d": 1}), 2),
            ["a.b", "d"]
        );
        let lines = line_diff("a\nb\nc\nd", "a\nB\nc\nd", 5);
        assert_eq!(
            lines,
            [
                "@@ line 2: 1 line(s) of the chart's template replaced by 1 @@",
                "- b",
                "+ B"
            ]
        );
    }
}
