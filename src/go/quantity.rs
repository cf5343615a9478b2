//! Kubernetes' `resource.Quantity` as Go's apimachinery reads and prints it: Istio
//! round-trips the rendered pod through Go structs, so quantities come out canonical
//! (`2000m` -> `2`, `1024Mi` -> `1Gi`).

use serde_json::{Map, Value};

const QUANTITY_SYNTAX: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// A ResourceRequirements value with nulls dropped and every quantity canonical, as Go
/// prints it after a round trip through its struct.
pub fn canonical_resources(resources: &Value) -> Result<Value, String> {
    let Some(obj) = resources.as_object() else {
        return match resources {
            Value::Null => Ok(Value::Object(Map::new())),
            other => Err(format!("expected a map, got {other}")),
        };
    };
    let mut out = Map::new();
    for (section, value) in obj {
        match (section.as_str(), value) {
            (_, Value::Null) => {}
            ("limits" | "requests", Value::Object(list)) => {
                let mut m = Map::new();
                for (name, q) in list {
                    if q.is_null() {
                        continue;
                    }
                    let text = scalar_text(q)
                        .ok_or_else(|| format!("{section}.{name}: {q} is not a quantity"))?;
                    let canon =
                        canonical_quantity(&text).map_err(|e| format!("{section}.{name}: {e}"))?;
                    m.insert(name.clone(), Value::String(canon));
                }
                out.insert(section.clone(), Value::Object(m));
            }
            _ => {
                out.insert(section.clone(), value.clone());
            }
        }
    }
    Ok(Value::Object(out))
}

/// A quantity's text: a string as is, a number as JSON writes it.
pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// How a quantity was written; the canonical form keeps the family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantityFormat {
    DecimalSI,
    BinarySI,
    DecimalExponent,
}

/// A parsed quantity: `nanos` is the value in units of 10^-9 (rounded up, as Kubernetes does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    pub nanos: i128,
    pub format: QuantityFormat,
}

const NANO: i128 = 1_000_000_000;

/// Parse a Kubernetes quantity (`100m`, `1Gi`, `1.5`, `1e3`, ...).
pub fn parse_quantity(s: &str) -> Result<Quantity, String> {
    let bad = || QUANTITY_SYNTAX.to_string();
    let (negative, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let num_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(num_end);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if number.is_empty() || frac_part.contains('.') || (int_part.is_empty() && frac_part.is_empty())
    {
        return Err(bad());
    }
    let (format, base2_exp, base10_exp): (QuantityFormat, u32, i32) = match suffix {
        "" => (QuantityFormat::DecimalSI, 0, 0),
        "n" => (QuantityFormat::DecimalSI, 0, -9),
        "u" => (QuantityFormat::DecimalSI, 0, -6),
        "m" => (QuantityFormat::DecimalSI, 0, -3),
        "k" => (QuantityFormat::DecimalSI, 0, 3),
        "M" => (QuantityFormat::DecimalSI, 0, 6),
        "G" => (QuantityFormat::DecimalSI, 0, 9),
        "T" => (QuantityFormat::DecimalSI, 0, 12),
        "P" => (QuantityFormat::DecimalSI, 0, 15),
        "E" => (QuantityFormat::DecimalSI, 0, 18),
        "Ki" => (QuantityFormat::BinarySI, 10, 0),
        "Mi" => (QuantityFormat::BinarySI, 20, 0),
        "Gi" => (QuantityFormat::BinarySI, 30, 0),
        "Ti" => (QuantityFormat::BinarySI, 40, 0),
        "Pi" => (QuantityFormat::BinarySI, 50, 0),
        "Ei" => (QuantityFormat::BinarySI, 60, 0),
        e if e.starts_with(['e', 'E']) => {
            let exp: i32 = e[1..].parse().map_err(|_| bad())?;
            if !(-30..=30).contains(&exp) {
                return Err("quantity exponent is out of the supported range".to_string());
            }
            (QuantityFormat::DecimalExponent, 0, exp)
        }
        _ => return Err(bad()),
    };
    let too_big = || "quantity is too large".to_string();
    // Exact value as digits * 10^(base10_exp - frac_len) * 2^base2_exp, scaled to nanos.
    // Only ASCII digits are left in both parts (the number ends at the first other character
    // and holds one '.'), read in 64 bits while they fit.
    let mut digits = int_part
        .bytes()
        .chain(frac_part.bytes())
        .skip_while(|&d| d == b'0');
    let (mut small, mut count) = (0u64, 0usize);
    for d in digits.by_ref().take(18) {
        small = small * 10 + u64::from(d - b'0');
        count += 1;
    }
    let mut mantissa = i128::from(small);
    for d in digits {
        count += 1;
        if count > 30 {
            return Err(too_big());
        }
        mantissa = mantissa * 10 + i128::from(d - b'0');
    }
    let mantissa = mantissa
        .checked_shl(base2_exp)
        .filter(|m| m >> base2_exp == mantissa)
        .ok_or_else(too_big)?;
    let scale = base10_exp - frac_part.len() as i32 + 9;
    let nanos = if scale >= 0 {
        10i128
            .checked_pow(scale as u32)
            .and_then(|p| mantissa.checked_mul(p))
            .ok_or_else(too_big)?
    } else {
        let div = 10i128.checked_pow((-scale) as u32).unwrap_or(i128::MAX);
        // Kubernetes rounds values finer than a nano up (away from zero).
        mantissa / div + i128::from(mantissa % div != 0)
    };
    Ok(Quantity {
        nanos: if negative { -nanos } else { nanos },
        format,
    })
}

/// Kubernetes' canonical text for a quantity (what `Quantity.String()` prints after parsing).
pub fn canonical_quantity(s: &str) -> Result<String, String> {
    let q = parse_quantity(s)?;
    Ok(format_quantity(q))
}

fn format_quantity(q: Quantity) -> String {
    if q.nanos == 0 {
        return "0".to_string();
    }
    let mut out = String::new();
    if q.nanos < 0 {
        out.push('-');
    }
    let abs = q.nanos.unsigned_abs();
    let nano = NANO as u128;
    if q.format == QuantityFormat::BinarySI && abs >= 1024 * nano && abs.is_multiple_of(nano) {
        let mut n = abs / nano;
        let mut exp = 0usize;
        while n.is_multiple_of(1024) && exp < 6 {
            n /= 1024;
            exp += 1;
        }
        push_int(&mut out, n);
        out.push_str(["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][exp]);
        return out;
    }
    // Decimal: strip factors of ten, then lower the exponent to a multiple of three.
    let (mut n, mut exp) = strip_tens(abs, -9);
    while exp.rem_euclid(3) != 0 {
        n *= 10;
        exp -= 1;
    }
    if q.format == QuantityFormat::DecimalExponent {
        push_int(&mut out, n);
        if exp != 0 {
            out.push('e');
            if exp < 0 {
                out.push('-');
            }
            push_int(&mut out, u128::from(exp.unsigned_abs()));
        }
        return out;
    }
    while exp > 18 {
        n *= 1000;
        exp -= 3;
    }
    let suffix = match exp {
        -9 => "n",
        -6 => "u",
        -3 => "m",
        0 => "",
        3 => "k",
        6 => "M",
        9 => "G",
        12 => "T",
        15 => "P",
        _ => "E",
    };
    push_int(&mut out, n);
    out.push_str(suffix);
    out
}

/// `n` (not zero) without its trailing decimal zeros, and `exp` raised by as many. wasm32 has
/// no 128-bit division (each one is a libcall), so quantities that fit 64 bits use those.
fn strip_tens(n: u128, mut exp: i32) -> (u128, i32) {
    if let Ok(mut small) = u64::try_from(n) {
        while small.is_multiple_of(10) {
            small /= 10;
            exp += 1;
        }
        return (u128::from(small), exp);
    }
    let mut n = n;
    while n.is_multiple_of(10) {
        n /= 10;
        exp += 1;
    }
    (n, exp)
}

/// Append `n` in decimal (without `core::fmt`'s 128-bit path for the usual 64-bit values).
fn push_int(out: &mut String, n: u128) {
    match u64::try_from(n) {
        Ok(n) => crate::json::push_u64(out, n),
        Err(_) => out.push_str(&n.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms_match_kubernetes() {
        for (input, want) in [
            ("2000m", "2"),
            ("1024Mi", "1Gi"),
            ("1000m", "1"),
            ("100m", "100m"),
            ("128Mi", "128Mi"),
            ("0", "0"),
            ("0m", "0"),
            ("500Mi", "500Mi"),
            ("1.5", "1500m"),
            ("0.5Gi", "512Mi"),
            ("1.5Gi", "1536Mi"),
            ("1000", "1k"),
            ("1500", "1500"),
            ("512", "512"),
            ("100Ki", "100Ki"),
            ("1000Ki", "1000Ki"),
            ("1024Ki", "1Mi"),
            ("0.1", "100m"),
            ("1e3", "1e3"),
            ("1E6", "1e6"),
            ("12e2", "1200"),
            ("0.0000000001", "1n"),
            ("-100m", "-100m"),
            ("+2", "2"),
            ("1G", "1G"),
            ("1000M", "1G"),
            ("3", "3"),
            // Beyond 64 bits of nanos, and mantissas longer than 18 digits.
            ("18446744073709551616", "18446744073709551616"),
            ("123456789012345678901234", "123456789012345678901234"),
            ("0.000000000000000000123456789012", "1n"),
            ("12345678901234567890Ki", "12345678901234567890Ki"),
            ("1000000000000000000000", "1000E"),
            ("1e-3", "1e-3"),
            ("-25e-1", "-2500e-3"),
        ] {
            assert_eq!(canonical_quantity(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn bad_quantities_are_rejected() {
        for bad in ["", "abc", "1Gb", "1..2", "m", "1 Gi", "--1", "."] {
            assert!(parse_quantity(bad).is_err(), "{bad}");
        }
    }
}
