//! The `proxy.istio.io/config` annotation read the way Istio reads it, into the
//! `serde_json::Value` its ProxyConfig is then decoded from.
//!
//! Istio applies the annotation with sigs.k8s.io/yaml: go-yaml v2 decodes the YAML (YAML 1.1
//! scalar resolution), the result is converted to JSON and that JSON is unmarshalled into
//! ProxyConfig. Here the syntax is saphyr-parser's (a maintained YAML parser, read at event
//! level so that each scalar's style is known) and plain scalars are typed by
//! [`resolve_plain`] with go-yaml v2's rules: `yes`, `on` and `y` are `true`, `0x1f`, `017`
//! and `1_000` are integers, `.inf` is a float, `12:30` stays a string. The JSON step is
//! mirrored too: mapping keys become strings (`true`, `1`), integral floats are JSON integers,
//! and what JSON cannot hold (`.nan`, `.inf`, a `null` key) is an error, as it is in Istio.
//!
//! Errors name the line. Not supported, each an error rather than a guess: tags other than
//! `!!str`, merge keys (`<<`), floating-point mapping keys. Only the first document is read,
//! as go-yaml's `Unmarshal` does, and a later duplicate key replaces an earlier one (go-yaml
//! v2 outside its strict mode, which Istio does not use).

use saphyr_parser::{Event, Parser, ScalarStyle, Tag};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Deeper nesting than any ProxyConfig needs is refused rather than risking the stack.
const MAX_DEPTH: usize = 64;
/// Nodes a document may expand to through aliases (a "billion laughs" is refused).
const MAX_NODES: usize = 100_000;

/// Parse the annotation text (YAML or JSON).
pub fn parse(text: &str) -> Result<Value, String> {
    let mut b = Builder::default();
    let mut parser = Parser::new_from_str(text);
    while let Some(next) = parser.next_event() {
        // An error at the end of the input is reported on its last line.
        let last_line = text.lines().count().max(1);
        let (event, span) = next.map_err(|e| {
            let line = e.marker().line().min(last_line);
            format!("line {line}: {}", e.info())
        })?;
        let line = span.start.line();
        let at_line = |what: String| format!("line {line}: {what}");
        match event {
            Event::StreamStart | Event::Nothing | Event::DocumentStart(_) => {}
            // go-yaml's Unmarshal decodes the first document and ignores the rest.
            Event::DocumentEnd | Event::StreamEnd => break,
            Event::Scalar(text, style, anchor, tag) => {
                let node = scalar(&text, style, tag.as_deref()).map_err(at_line)?;
                b.complete(node, anchor).map_err(at_line)?;
            }
            Event::Alias(id) => {
                let value = b.alias(id).map_err(at_line)?;
                b.complete(Node::Value(value), 0).map_err(at_line)?;
            }
            Event::SequenceStart(anchor, tag) => {
                b.open(Frame::Seq(Vec::new(), anchor), tag.as_deref())
                    .map_err(at_line)?;
            }
            Event::MappingStart(anchor, tag) => {
                b.open(Frame::Map(Map::new(), None, anchor), tag.as_deref())
                    .map_err(at_line)?;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (value, anchor) = match b.stack.pop() {
                    Some(Frame::Seq(items, anchor)) => (Value::Array(items), anchor),
                    Some(Frame::Map(map, _, anchor)) => (Value::Object(map), anchor),
                    None => return Err(at_line("unbalanced end of a collection".into())),
                };
                b.complete(Node::Value(value), anchor).map_err(at_line)?;
            }
        }
    }
    Ok(b.root.unwrap_or(Value::Null))
}

/// A collection being read: its items (a map's with the key waiting for its value) and its
/// anchor id (0: none).
enum Frame {
    Seq(Vec<Value>, usize),
    Map(Map<String, Value>, Option<String>, usize),
}

/// A finished node: a value, or a plain scalar, which as a mapping key is typed first.
enum Node {
    Value(Value),
    Plain(String),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Value>,
    anchors: BTreeMap<usize, Value>,
    /// Nodes produced so far, aliases counted with their whole content.
    nodes: usize,
}

impl Builder {
    fn open(&mut self, frame: Frame, tag: Option<&Tag>) -> Result<(), String> {
        if let Some(tag) = tag {
            return Err(format!("tag {} is not supported", tag_name(tag)));
        }
        if matches!(self.stack.last(), Some(Frame::Map(_, None, _))) {
            return Err("a mapping key must be a scalar, not a list or a map".into());
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err("nesting is too deep".into());
        }
        self.count(1)?;
        self.stack.push(frame);
        Ok(())
    }

    fn count(&mut self, n: usize) -> Result<(), String> {
        self.nodes += n;
        if self.nodes > MAX_NODES {
            return Err("the document expands to too many nodes (aliases)".into());
        }
        Ok(())
    }

    fn alias(&mut self, id: usize) -> Result<Value, String> {
        let value = self
            .anchors
            .get(&id)
            .ok_or("an alias to an anchor that cannot be used here")?;
        let size = nodes(value);
        let value = value.clone();
        self.count(size)?;
        Ok(value)
    }

    /// Put a finished node into its parent (or make it the document).
    fn complete(&mut self, node: Node, anchor: usize) -> Result<(), String> {
        if let Node::Plain(_) = node {
            self.count(1)?;
        }
        if let Some(Frame::Map(_, key @ None, _)) = self.stack.last_mut() {
            let name = match &node {
                Node::Plain(text) if text == "<<" => {
                    return Err("merge keys (`<<`) are not supported".into())
                }
                Node::Plain(text) => key_text(text, resolve_plain(text))?,
                Node::Value(v) => value_key(v)?,
            };
            *key = Some(name);
            if anchor != 0 {
                let value = match node {
                    Node::Plain(text) => json_value(&text, resolve_plain(&text)),
                    Node::Value(v) => Ok(v),
                };
                // An anchored key that JSON cannot hold as a value is not kept for aliases.
                if let Ok(value) = value {
                    self.anchors.insert(anchor, value);
                }
            }
            return Ok(());
        }
        let value = match node {
            Node::Plain(text) => json_value(&text, resolve_plain(&text))?,
            Node::Value(v) => v,
        };
        if anchor != 0 {
            self.anchors.insert(anchor, value.clone());
        }
        match self.stack.last_mut() {
            // A later duplicate key replaces the earlier value.
            Some(Frame::Map(map, key, _)) => {
                map.insert(key.take().unwrap_or_default(), value);
            }
            Some(Frame::Seq(items, _)) => items.push(value),
            None => self.root = Some(value),
        }
        Ok(())
    }
}

/// Nodes in a value (for the alias budget).
fn nodes(v: &Value) -> usize {
    1 + match v {
        Value::Array(items) => items.iter().map(nodes).sum(),
        Value::Object(map) => map.values().map(|v| 1 + nodes(v)).sum(),
        _ => 0,
    }
}

/// A scalar event: quoted, block and `!!str` scalars are strings, plain ones are typed
/// later (as a key or as a value).
fn scalar(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> Result<Node, String> {
    match tag {
        Some(tag) if tag.is_yaml_core_schema() && tag.suffix == "str" => {
            Ok(Node::Value(Value::String(text.to_string())))
        }
        Some(tag) => Err(format!(
            "tag {} is not supported (only !!str is)",
            tag_name(tag)
        )),
        None if style == ScalarStyle::Plain => Ok(Node::Plain(text.to_string())),
        None => Ok(Node::Value(Value::String(text.to_string()))),
    }
}

/// A tag as it was written (`!!int`, `!custom`).
fn tag_name(tag: &Tag) -> String {
    if tag.is_yaml_core_schema() {
        format!("!!{}", tag.suffix)
    } else {
        format!("{}{}", tag.handle, tag.suffix)
    }
}

/// What go-yaml v2 makes of an untagged plain scalar.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    Null,
    Bool(bool),
    /// An integer that fits `i64` (Go's `int`/`int64`).
    Int(i64),
    /// A positive integer above `i64::MAX` (Go's `uint64`).
    Uint(u64),
    Float(f64),
    Str,
}

/// go-yaml v2's typing of a plain scalar (YAML 1.1 flavoured), in its order:
///
/// 1. A fixed set of spellings: `y`, `yes`, `true`, `on` (each lower case, capitalised or
///    upper case, `y` and `Y` only for the one-letter form) are `true`; `n`, `no`, `false`,
///    `off` likewise `false`; the empty scalar, `~`, `null`, `Null`, `NULL` are null;
///    `.nan`/`.NaN`/`.NAN` is NaN and `.inf`, `+.inf`, `-.inf` (same three spellings) the
///    infinities. Only scalars starting with one of those letters, `~`, `.`, a sign or a
///    digit are looked up at all; every other scalar is a string.
/// 2. Starting with `.`: a decimal float (digits after the dot, an optional exponent,
///    `_` allowed between digits), else a string.
/// 3. Starting with a sign or a digit: with every `_` removed, an integer as Go literals
///    write it (`0x`/`0o`/`0b` prefixes in either case, a leading `0` for octal, an optional
///    sign) that fits 64 bits, signed first, then unsigned; else a decimal float
///    (`[sign] digits [. digits] [exponent]` or `[sign] . digits [exponent]`) that is finite;
///    else, for `0b` followed by a sign and binary digits, that signed number; else a string.
///    So `08` is the float 8, `1e400` and `12:30:00` are strings.
pub fn resolve_plain(s: &str) -> Resolved {
    let Some(&first) = s.as_bytes().first() else {
        return Resolved::Null;
    };
    let looked_up = matches!(
        first,
        b'y' | b'Y' | b'n' | b'N' | b't' | b'T' | b'f' | b'F' | b'o' | b'O' | b'~' | b'.'
    ) || first == b'+'
        || first == b'-'
        || first.is_ascii_digit();
    if !looked_up {
        return Resolved::Str;
    }
    if let Some(word) = word(s) {
        return word;
    }
    match first {
        b'.' => dot_float(s).map_or(Resolved::Str, Resolved::Float),
        b'+' | b'-' | b'0'..=b'9' => number(s),
        _ => Resolved::Str,
    }
}

/// Step 1 of [`resolve_plain`]: the spellings go-yaml v2 looks up.
fn word(s: &str) -> Option<Resolved> {
    const TRUE: &[&str] = &[
        "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON",
    ];
    const FALSE: &[&str] = &[
        "n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF",
    ];
    const NULL: &[&str] = &["~", "null", "Null", "NULL"];
    const NAN: &[&str] = &[".nan", ".NaN", ".NAN"];
    const INF: &[&str] = &[".inf", ".Inf", ".INF"];
    Some(if TRUE.contains(&s) {
        Resolved::Bool(true)
    } else if FALSE.contains(&s) {
        Resolved::Bool(false)
    } else if NULL.contains(&s) {
        Resolved::Null
    } else if NAN.contains(&s) {
        Resolved::Float(f64::NAN)
    } else if INF.contains(&s) || s.strip_prefix('+').is_some_and(|t| INF.contains(&t)) {
        Resolved::Float(f64::INFINITY)
    } else if s.strip_prefix('-').is_some_and(|t| INF.contains(&t)) {
        Resolved::Float(f64::NEG_INFINITY)
    } else {
        return None;
    })
}

/// Step 2 of [`resolve_plain`]: `.5`, `.5e-3`, `.1_5`.
fn dot_float(s: &str) -> Option<f64> {
    let bytes = s.as_bytes();
    let digits = |from: usize| {
        bytes[from..]
            .iter()
            .take_while(|b| b.is_ascii_digit() || **b == b'_')
            .count()
    };
    let mut i = 1;
    let mantissa = digits(i);
    i += mantissa;
    if mantissa == 0 {
        return None;
    }
    let i = after_exponent(bytes, i, digits)?;
    // Underscores only between two digits.
    let underscores_ok = (0..bytes.len()).filter(|&j| bytes[j] == b'_').all(|j| {
        j > 0 && bytes[j - 1].is_ascii_digit() && bytes.get(j + 1).is_some_and(u8::is_ascii_digit)
    });
    if i != bytes.len() || !underscores_ok {
        return None;
    }
    finite(&s.replace('_', ""))
}

/// Where an optional exponent (`e`/`E`, a sign, then digits as `digits` counts them) that
/// starts at `i` ends; `None` for an `e` without digits.
fn after_exponent(bytes: &[u8], mut i: usize, digits: impl Fn(usize) -> usize) -> Option<usize> {
    if !matches!(bytes.get(i), Some(b'e' | b'E')) {
        return Some(i);
    }
    i += 1;
    if matches!(bytes.get(i), Some(b'+' | b'-')) {
        i += 1;
    }
    match digits(i) {
        0 => None,
        n => Some(i + n),
    }
}

/// A float that is finite: Go reports a range error for what overflows.
fn finite(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// Step 3 of [`resolve_plain`].
fn number(s: &str) -> Resolved {
    let plain = s.replace('_', "");
    let (negative, unsigned) = match plain.as_bytes().first() {
        Some(b'-') => (true, &plain[1..]),
        Some(b'+') => (false, &plain[1..]),
        _ => (false, &plain[..]),
    };
    if let Some(n) = go_literal(unsigned) {
        if negative {
            if n <= 1 << 63 {
                return Resolved::Int((n as i64).wrapping_neg());
            }
        } else if let Ok(n) = i64::try_from(n) {
            return Resolved::Int(n);
        } else if !plain.starts_with('+') {
            return Resolved::Uint(n);
        }
    }
    if decimal_float(&plain) {
        if let Some(f) = finite(&plain) {
            return Resolved::Float(f);
        }
    }
    if let Some(binary) = plain.strip_prefix("0b") {
        if binary.starts_with(['+', '-']) {
            if let Ok(n) = i64::from_str_radix(binary, 2) {
                return Resolved::Int(n);
            }
        }
    }
    Resolved::Str
}

/// An unsigned integer literal as Go writes it: `0x`/`0o`/`0b` (either case) with at least
/// one digit, a leading `0` for octal, else decimal; `None` if not one or above `u64::MAX`.
fn go_literal(s: &str) -> Option<u64> {
    let bytes = s.as_bytes();
    let (radix, digits) = match bytes {
        [] => return None,
        [b'0', p, _, ..] if matches!(p.to_ascii_lowercase(), b'x' | b'o' | b'b') => {
            let radix = match p.to_ascii_lowercase() {
                b'x' => 16,
                b'o' => 8,
                _ => 2,
            };
            (radix, &s[2..])
        }
        [b'0', ..] => (8, &s[1..]),
        _ => (10, s),
    };
    if digits.is_empty() {
        return Some(0); // "0"
    }
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// `[sign] (digits [. digits*] | . digits) [(e|E) [sign] digits]`.
fn decimal_float(s: &str) -> bool {
    let bytes = s.as_bytes();
    let mut i = usize::from(matches!(bytes.first(), Some(b'+' | b'-')));
    let digits = |from: usize| {
        bytes[from..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let whole = digits(i);
    i += whole;
    if bytes.get(i) == Some(&b'.') {
        let fraction = digits(i + 1);
        if whole == 0 && fraction == 0 {
            return false;
        }
        i += 1 + fraction;
    } else if whole == 0 {
        return false;
    }
    let Some(i) = after_exponent(bytes, i, digits) else {
        return false;
    };
    i == bytes.len()
}

/// A plain scalar's value once through JSON, as Go's `json.Marshal` writes it and Istio
/// reads it back: floats without a fraction are integers; NaN and infinities cannot be
/// written (Go's "json: unsupported value").
fn json_value(text: &str, resolved: Resolved) -> Result<Value, String> {
    Ok(match resolved {
        Resolved::Null => Value::Null,
        Resolved::Bool(b) => Value::Bool(b),
        Resolved::Int(n) => Value::from(n),
        Resolved::Uint(n) => Value::from(n),
        Resolved::Float(f) if !f.is_finite() => {
            return Err(format!("`{text}` is not a number JSON can hold"))
        }
        Resolved::Float(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Value::from(f as i64),
        Resolved::Float(f) => Value::from(f),
        Resolved::Str => Value::String(text.to_string()),
    })
}

/// A mapping key as sigs.k8s.io/yaml makes it a JSON object key: strings as they are,
/// booleans and integers written out; other keys are errors.
fn key_text(text: &str, resolved: Resolved) -> Result<String, String> {
    match resolved {
        Resolved::Str => Ok(text.to_string()),
        Resolved::Bool(b) => Ok(b.to_string()),
        Resolved::Int(n) => Ok(n.to_string()),
        Resolved::Null => Err(format!("the mapping key `{text}` is null")),
        Resolved::Uint(_) | Resolved::Float(_) => Err(format!(
            "the mapping key `{text}` is not supported (a number that is not a 64-bit integer)"
        )),
    }
}

/// A key that came from an alias.
fn value_key(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) if n.is_i64() => Ok(n.to_string()),
        other => Err(format!("the mapping key {other} is not supported")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testgen::{Gen, SplitMix};
    use serde_json::json;

    /// go-yaml v2's resolution of untagged plain scalars, written from its documentation
    /// (the YAML 1.1 boolean, null, int and float types it implements, with its stated
    /// exceptions: no sexagesimal numbers, timestamps left as strings when decoded into an
    /// interface, `_` ignored in numbers, Go's integer literal syntax).
    #[test]
    fn plain_scalars_resolve_as_go_yaml_v2() {
        use Resolved::*;
        let table: &[(&str, Resolved)] = &[
            // booleans: YAML 1.1's y|Y|yes|Yes|YES|n|N|no|No|NO|true|...|on|...|off|...
            ("y", Bool(true)),
            ("Y", Bool(true)),
            ("yes", Bool(true)),
            ("Yes", Bool(true)),
            ("YES", Bool(true)),
            ("true", Bool(true)),
            ("True", Bool(true)),
            ("TRUE", Bool(true)),
            ("on", Bool(true)),
            ("On", Bool(true)),
            ("ON", Bool(true)),
            ("n", Bool(false)),
            ("N", Bool(false)),
            ("no", Bool(false)),
            ("No", Bool(false)),
            ("NO", Bool(false)),
            ("false", Bool(false)),
            ("False", Bool(false)),
            ("FALSE", Bool(false)),
            ("off", Bool(false)),
            ("Off", Bool(false)),
            ("OFF", Bool(false)),
            // other spellings stay strings
            ("yEs", Str),
            ("tRUE", Str),
            ("oN", Str),
            ("enabled", Str),
            ("yes please", Str),
            // null
            ("", Null),
            ("~", Null),
            ("null", Null),
            ("Null", Null),
            ("NULL", Null),
            ("nULL", Str),
            ("none", Str),
            // decimal integers, signs, `_` separators
            ("0", Int(0)),
            ("-0", Int(0)),
            ("+0", Int(0)),
            ("12", Int(12)),
            ("+12", Int(12)),
            ("-12", Int(-12)),
            ("1_000", Int(1000)),
            ("1__0", Int(10)),
            ("1_", Int(1)),
            ("9223372036854775807", Int(i64::MAX)),
            ("-9223372036854775808", Int(i64::MIN)),
            ("9223372036854775808", Uint(1 << 63)),
            ("18446744073709551615", Uint(u64::MAX)),
            // hexadecimal, octal (0o and a leading 0), binary
            ("0x1F", Int(31)),
            ("0X1f", Int(31)),
            ("-0x1f", Int(-31)),
            ("0x_1F", Int(31)),
            ("0o17", Int(15)),
            ("0O17", Int(15)),
            ("017", Int(15)),
            ("-017", Int(-15)),
            ("0b101", Int(5)),
            ("0B101", Int(5)),
            ("-0b101", Int(-5)),
            ("0b-101", Int(-5)),
            ("0b+101", Int(5)),
            ("0xFFFFFFFFFFFFFFFF", Uint(u64::MAX)),
            // not integers: empty digits, wrong digits, too large without a float form
            ("0x", Str),
            ("0b", Str),
            ("0xG", Str),
            ("0b102", Str),
            ("0x1FFFFFFFFFFFFFFFF", Str),
            // floats
            ("1.5", Float(1.5)),
            ("-1.5", Float(-1.5)),
            ("+1.5", Float(1.5)),
            ("1.", Float(1.0)),
            ("1e3", Float(1000.0)),
            ("1E-3", Float(0.001)),
            ("6.8523015e+5", Float(685230.15)),
            ("685_230.15", Float(685230.15)),
            ("-.5", Float(-0.5)),
            ("+.5", Float(0.5)),
            (".5", Float(0.5)),
            (".5e2", Float(50.0)),
            (".1_5", Float(0.15)),
            ("08", Float(8.0)),
            ("09.5", Float(9.5)),
            ("99999999999999999999", Float(1e20)),
            ("-9223372036854775809", Float(-9223372036854775809.0)),
            (".inf", Float(f64::INFINITY)),
            (".Inf", Float(f64::INFINITY)),
            (".INF", Float(f64::INFINITY)),
            ("+.inf", Float(f64::INFINITY)),
            ("-.inf", Float(f64::NEG_INFINITY)),
            ("-.INF", Float(f64::NEG_INFINITY)),
            // not floats
            ("1e400", Str),
            (".", Str),
            (".e3", Str),
            ("._5", Str),
            (".5_", Str),
            ("1e", Str),
            ("e3", Str),
            ("inf", Str),
            ("-inf", Str),
            ("nan", Str),
            ("NaN", Str),
            (".iNf", Str),
            ("0x1p-2", Str),
            // sexagesimal (YAML 1.1) is not supported: strings
            ("190:20:30", Str),
            ("1:30", Str),
            ("-1:30", Str),
            ("190:20:30.15", Str),
            // timestamps stay strings
            ("2001-12-14", Str),
            ("2001-12-14t21:59:43.10-05:00", Str),
            // anything else
            ("+", Str),
            ("-", Str),
            ("1.2.3", Str),
            ("30s", Str),
            ("foo", Str),
            ("<<", Str),
            ("=", Str),
            ("_1", Str),
            ("istiod.istio-system.svc:15012", Str),
        ];
        for (text, expected) in table {
            let got = resolve_plain(text);
            let same = match (&got, expected) {
                (Float(a), Float(b)) => a == b || a.is_nan() && b.is_nan(),
                _ => got == *expected,
            };
            assert!(same, "{text:?}: {got:?}, expected {expected:?}");
        }
        assert!(matches!(resolve_plain(".nan"), Float(f) if f.is_nan()));
        assert!(matches!(resolve_plain(".NaN"), Float(f) if f.is_nan()));
        assert!(matches!(resolve_plain(".NAN"), Float(f) if f.is_nan()));
    }

    fn ok(text: &str) -> Value {
        parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    #[test]
    fn hold_application_yes_is_true() {
        assert_eq!(
            ok("holdApplicationUntilProxyStarts: yes"),
            json!({"holdApplicationUntilProxyStarts": true})
        );
        assert_eq!(
            ok("holdApplicationUntilProxyStarts: off\n"),
            json!({"holdApplicationUntilProxyStarts": false})
        );
        // Quoted, it is the string Istio's ProxyConfig refuses.
        assert_eq!(
            ok("holdApplicationUntilProxyStarts: 'yes'"),
            json!({"holdApplicationUntilProxyStarts": "yes"})
        );
    }

    #[test]
    fn documents_become_json_as_istio_sees_it() {
        let cases: &[(&str, Value)] = &[
            ("", Value::Null),
            ("# only a comment\n", Value::Null),
            ("---\nconcurrency: 2\n", json!({"concurrency": 2})),
            ("--- # config\n{}\n", json!({})),
            (
                "{ \"holdApplicationUntilProxyStarts\": true }",
                json!({"holdApplicationUntilProxyStarts": true}),
            ),
            (
                "discoveryAddress: foo:123\nconcurrency: 0\nproxyMetadata:\n  FOO: bar",
                json!({"discoveryAddress": "foo:123", "concurrency": 0, "proxyMetadata": {"FOO": "bar"}}),
            ),
            (
                "terminationDrainDuration: 30s",
                json!({"terminationDrainDuration": "30s"}),
            ),
            (
                "{\n  \"concurrency\": 2,\n  \"proxyMetadata\": {\"A\": \"b\", \"N\": null},\n  \"x\": [1, 2.5, -3, true]\n}\n",
                json!({"concurrency": 2, "proxyMetadata": {"A": "b", "N": null}, "x": [1, 2.5, -3, true]}),
            ),
            (
                "tracing:\n  zipkin:\n    address: zipkin.istio-system:9411\n  sampling: 100.0\n",
                json!({"tracing": {"zipkin": {"address": "zipkin.istio-system:9411"}, "sampling": 100}}),
            ),
            (
                "proxyStatsMatcher:\n  inclusionPrefixes:\n  - cluster.outbound\n  - listener\n",
                json!({"proxyStatsMatcher": {"inclusionPrefixes": ["cluster.outbound", "listener"]}}),
            ),
            (
                "proxyHeaders: {forwardedClientCert: SANITIZE, server: {disabled: true}}",
                json!({"proxyHeaders": {"forwardedClientCert": "SANITIZE", "server": {"disabled": true}}}),
            ),
            (
                "quotes: [\"a\\tb\\u00e9\\\"\", 'it''s', \"\\x41\\/\"]",
                json!({"quotes": ["a\tb\u{e9}\"", "it's", "A/"]}),
            ),
            (
                "types: [~, '', 0, 017, 0x_1, 1e3, 2.5, 12:30, 'yes', yes, n]",
                json!({"types": [null, "", 0, 15, 1, 1000, 2.5, "12:30", "yes", true, false]}),
            ),
            // Keys are strings in JSON: booleans and integers are written out.
            (
                "\"quoted key\": 1\n'single': 2\n3: 4\nyes: 5\n0x10: 6\n",
                json!({"quoted key": 1, "single": 2, "3": 4, "true": 5, "16": 6}),
            ),
            ("a: 1\na: 2\n", json!({"a": 2})),
            ("a: &x [1, 2]\nb: *x\n", json!({"a": [1, 2], "b": [1, 2]})),
            ("a: !!str 0x10\n", json!({"a": "0x10"})),
            (
                "literal: |\n  line one\n  line two\n\nfolded: >-\n  a\n  b\n",
                json!({"literal": "line one\nline two\n", "folded": "a b"}),
            ),
            ("a: 1\n---\nb: 2\n", json!({"a": 1})),
            ("nothing:\nalso: ~\n", json!({"nothing": null, "also": null})),
            ("- 1\n- two\n", json!([1, "two"])),
            ("just a string", json!("just a string")),
        ];
        for (text, expected) in cases {
            assert_eq!(&ok(text), expected, "{text:?}");
        }
    }

    #[test]
    fn bad_input_is_an_error_naming_the_line() {
        let cases: &[(&str, &str)] = &[
            ("{not json", "line "),
            ("a: 'unterminated", "line 1"),
            ("a:\n  b: 1\n c: 2\n", "line 3"),
            ("a: b: c", "line 1"),
            ("[a, b", "line 1: while parsing a flow sequence"),
            ("a: \"\\q\"", "line 1"),
            ("a: .nan", "not a number JSON can hold"),
            ("a:\n  b: -.inf", "line 2: `-.inf`"),
            ("~: 1", "the mapping key `~` is null"),
            ("1.5: x", "the mapping key `1.5` is not supported"),
            ("18446744073709551615: x", "not supported"),
            ("[a]: 1", "a mapping key must be a scalar"),
            ("a: !!int 1", "tag !!int is not supported"),
            ("a: !custom {}", "is not supported"),
            ("base: &b {x: 1}\nc:\n  <<: *b\n", "line 3: merge keys"),
            ("a: *nowhere", "line 1"),
        ];
        for (text, expected) in cases {
            let err = parse(text).expect_err(text);
            assert!(
                err.starts_with("line ") && err.contains(expected),
                "{text:?}: {err}"
            );
        }
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(parse(&deep).unwrap_err().contains("nesting is too deep"));
        let mut laughs = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..6 {
            let (prev, next) = (char::from(b'a' + i), char::from(b'b' + i));
            laughs.push_str(&format!("{next}: &{next} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        assert!(parse(&laughs).unwrap_err().contains("too many nodes"));
    }

    /// Mutated inputs never panic, and every refusal names its line.
    #[test]
    fn mutated_inputs_are_values_or_errors_naming_a_line() {
        const SEEDS: &[&str] = &[
            "holdApplicationUntilProxyStarts: yes\nproxyMetadata:\n  B: \"2\"\n",
            "{\"concurrency\": 2, \"x\": [1, 2.5, -3, true]}",
            "items:\n- name: a\n  value: 0x1f\n- &b {c: d}\n- *b\n",
            "literal: |\n  line one\n\nfolded: >\n  a\n  b\n",
        ];
        const BYTES: &[u8] = b"\r \n-:#'\"[]{},|>&*!?%\\ax0.\t<";
        let mut seed = SplitMix(0x2545_f491_4f6c_dd1d);
        let mut rng = Gen::new(&mut seed);
        for _ in 0..2000 {
            let mut bytes = rng.pick(SEEDS).as_bytes().to_vec();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(bytes.len() + 1);
                let b = BYTES[rng.below(BYTES.len())];
                match rng.below(3) {
                    0 if at < bytes.len() => bytes[at] = b,
                    1 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => bytes.insert(at, b),
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            if let Err(e) = parse(&text) {
                assert!(e.starts_with("line "), "{text:?}: {e}");
            }
        }
    }
}
