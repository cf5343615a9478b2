//! Compact JSON text of a `serde_json::Value`, byte for byte what `serde_json::to_vec`
//! writes, with a faster string escape.
//!
//! serde_json looks every byte of every string up in its escape table. The answer to a
//! large pod is mostly string bytes (2,000 env vars: ~200 KB), and on the guest that loop
//! was the largest single cost of the request (18 % of a 2,000-env-var call, counted with
//! callgrind). Here eight bytes are tested at once for the three kinds that need escaping
//! (`"`, `\` and control characters), and a string without them (nearly all) is copied
//! whole.

use serde_json::Value;

/// Append `v` as compact JSON text (object keys in the map's order).
pub fn write_value(out: &mut Vec<u8>, v: &Value) -> serde_json::Result<()> {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        // Rare in pods; serde_json's own formatting (itoa, shortest round-trip floats).
        Value::Number(n) => serde_json::to_writer(&mut *out, n)?,
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            for (i, (key, value)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, key);
                out.push(b':');
                write_value(out, value)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// JSON text written with this module as a `String`. Every byte the writers emit comes from
/// a `&str` or is ASCII, so the check cannot fail; it is kept rather than `unsafe`.
pub fn into_text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Append `s` as a JSON string literal, escaped as serde_json escapes it: `\"`, `\\`,
/// `\b \f \n \r \t`, other control characters as `\u00XX` (lowercase hex); everything else,
/// non-ASCII included, verbatim.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    if needs_escaping(bytes) {
        write_escaped(out, bytes);
    } else {
        out.extend_from_slice(bytes);
    }
    out.push(b'"');
}

/// Whether any byte of `bytes` must be escaped: eight at a time, the tail as the last
/// eight bytes (overlapping the words already tested), a string of four to seven bytes as
/// its first and last four. No byte-by-byte loop but for strings of up to three bytes:
/// most strings of a pod are keys and short values.
#[inline]
fn needs_escaping(bytes: &[u8]) -> bool {
    let n = bytes.len();
    if n < 8 {
        if n < 4 {
            return bytes.iter().any(|&b| needs_escape(b));
        }
        let (mut lo, mut hi) = ([0u8; 4], [0u8; 4]);
        lo.copy_from_slice(&bytes[..4]);
        hi.copy_from_slice(&bytes[n - 4..]);
        let word = u64::from(u32::from_le_bytes(lo)) | (u64::from(u32::from_le_bytes(hi)) << 32);
        return any_needs_escape(word);
    }
    let word_at = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[i..i + 8]);
        u64::from_le_bytes(w)
    };
    let mut i = 0;
    while i + 8 <= n {
        if any_needs_escape(word_at(i)) {
            return true;
        }
        i += 8;
    }
    i < n && any_needs_escape(word_at(n - 8))
}

/// The escaping path: runs between escapes copied whole, found eight bytes at a time (the
/// strings that get here are mostly JSON text in env values and annotations: one `"` per
/// few words, not per byte).
#[cold]
fn write_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(word) = bytes.get(i..i + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            if !any_needs_escape(u64::from_le_bytes(w)) {
                i += 8;
                continue;
            }
        }
        // A byte to escape is among the next eight (or in the tail): byte by byte up to it.
        let end = (i + 8).min(bytes.len());
        while i < end {
            let b = bytes[i];
            i += 1;
            if needs_escape(b) {
                out.extend_from_slice(&bytes[start..i - 1]);
                write_escape(out, b);
                start = i;
                break;
            }
        }
    }
    out.extend_from_slice(&bytes[start..]);
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether some byte of `w` is zero (the classic word-at-a-time test: exact, no false
/// positives in the answer as a whole).
#[inline(always)]
fn has_zero_byte(w: u64) -> bool {
    w.wrapping_sub(ONES) & !w & HIGHS != 0
}

/// Whether some byte of `w` is `"`, `\` or below 0x20.
#[inline(always)]
fn any_needs_escape(w: u64) -> bool {
    // Bytes below 0x20: subtracting 0x20 borrows into the high bit only for them (bytes
    // with the high bit already set are masked out by `!w`).
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGHS != 0;
    control
        || has_zero_byte(w ^ (ONES * u64::from(b'"')))
        || has_zero_byte(w ^ (ONES * u64::from(b'\\')))
}

#[inline(always)]
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

fn write_escape(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let short = match b {
        b'"' => b'"',
        b'\\' => b'\\',
        0x08 => b'b',
        0x0c => b'f',
        b'\n' => b'n',
        b'\r' => b'r',
        b'\t' => b't',
        _ => {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
            return;
        }
    };
    out.extend_from_slice(&[b'\\', short]);
}

#[cfg(test)]
mod tests;
