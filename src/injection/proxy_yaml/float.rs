//! Plain-scalar floats of `proxy.istio.io/config`, read without core's `f64::from_str`.
//!
//! serde_yaml reads a float with Rust's `str::parse::<f64>`; its tables (Eisel-Lemire powers
//! of five, big-decimal shifts) and code were 18 KB of policy.wasm, for a ProxyConfig whose
//! only float fields are percentages such as `tracing.sampling`. The grammar is Rust's, checked
//! here, and so is the result, bit for bit (correctly rounded, ties to even):
//! - at most 2^53 scaled by a power of ten up to 10^22 is exact in `f64`, so one
//!   multiplication or division is correctly rounded (Clinger's fast path; every float a
//!   ProxyConfig holds in practice);
//! - anything longer starts from serde_json's reading (a few units in the last place off at
//!   worst) and steps to the right neighbour by comparing the decimal value exactly, in
//!   big integers, with the midpoints between adjacent `f64`s.

use serde_json::Value;
use std::cmp::Ordering;

/// The value of `text` if it is a float in Rust's syntax (`1`, `-2.5`, `.5`, `1.`, `1e-3`,
/// `2.5E+10`; no sign other than one leading `-`), or None. Infinite results are None, as
/// the caller filters them; `inf`/`nan` spellings are the caller's.
pub fn parse(text: &str) -> Option<f64> {
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (number, exponent) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], Some(&body[at + 1..])),
        None => (body, None),
    };
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.len() + frac.len() == 0 || !all_digits(int) || !all_digits(frac) {
        return None;
    }
    let exponent = match exponent {
        Some(e) => decimal_exponent(e)?,
        None => 0,
    };
    // The significant digits, and the power of ten that scales them.
    let digits: Vec<u8> = int.bytes().chain(frac.bytes()).collect();
    let first = digits.iter().position(|&d| d != b'0');
    let Some(first) = first else {
        return Some(if negative { -0.0 } else { 0.0 });
    };
    let last = digits.iter().rposition(|&d| d != b'0').unwrap_or(first);
    let significant = &digits[first..=last];
    let trailing_zeros = (digits.len() - 1 - last) as i64;
    let scale = exponent - frac.len() as i64 + trailing_zeros;
    let magnitude = scale + significant.len() as i64;
    let value = if magnitude > 310 {
        f64::INFINITY
    } else if magnitude < -330 {
        0.0
    } else if significant.len() > MAX_DIGITS {
        // A midpoint between two f64s has at most 767 significant digits, so none lies
        // strictly between the first MAX_DIGITS digits and the next step at that position:
        // the rest (never all zeros, trailing zeros are gone) only counts as a 1 after them.
        // The big-integer work then stays bounded however long the literal is.
        let mut kept = significant[..MAX_DIGITS].to_vec();
        kept.push(b'1');
        let dropped = (significant.len() - kept.len()) as i64;
        nearest(&kept, scale + dropped)
    } else {
        exact(significant, scale).unwrap_or_else(|| nearest(significant, scale))
    };
    let value = if negative { -value } else { value };
    value.is_finite().then_some(value)
}

/// Significant digits compared in full; longer literals are cut to these plus a sticky 1.
const MAX_DIGITS: usize = 800;

/// The exponent after `e`: optional sign, then digits; saturated far beyond `f64`'s range.
fn decimal_exponent(text: &str) -> Option<i64> {
    let (sign, digits) = match text.as_bytes().first() {
        Some(b'-') => (-1, &text[1..]),
        Some(b'+') => (1, &text[1..]),
        _ => (1, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = digits
        .bytes()
        .fold(0_i64, |n, d| (n * 10 + i64::from(d - b'0')).min(1_000_000));
    Some(sign * n)
}

/// Clinger's fast path: `significant × 10^scale` when both factors are exact in `f64`.
fn exact(significant: &[u8], scale: i64) -> Option<f64> {
    const MAX_EXACT: u64 = 1 << 53;
    if significant.len() > 16 {
        return None;
    }
    let mut mantissa = significant
        .iter()
        .fold(0_u64, |n, d| n * 10 + u64::from(d - b'0'));
    let mut scale = scale;
    // 12e25 is 1.2e26 exactly: move powers of ten into the mantissa while it stays exact.
    while scale > 22 && mantissa <= MAX_EXACT / 10 {
        mantissa *= 10;
        scale -= 1;
    }
    if mantissa > MAX_EXACT || !(-22..=22).contains(&scale) {
        return None;
    }
    let power = POWERS_OF_TEN[scale.unsigned_abs() as usize];
    let m = mantissa as f64;
    Some(if scale >= 0 { m * power } else { m / power })
}

/// The powers of ten `f64` holds exactly.
const POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The `f64` nearest to `significant × 10^scale` (positive, at most ~10^310).
fn nearest(significant: &[u8], scale: i64) -> f64 {
    let mut json = String::with_capacity(significant.len() + 8);
    json.extend(significant.iter().map(|&d| char::from(d)));
    json.push('e');
    json.push_str(&scale.to_string());
    // serde_json refuses what it takes to overflow; the walk below settles those.
    // Read as a `Value`: `from_str::<f64>`'s "invalid type" path links serde's float formatting.
    let start = serde_json::from_str::<Value>(&json).ok();
    let mut x = start.as_ref().and_then(Value::as_f64).unwrap_or(f64::MAX);
    let decimal = Big::from_digits(significant);
    // A few steps at most from serde_json's start; bounded all the same.
    for _ in 0..64 {
        if x.is_infinite() {
            break;
        }
        let (mantissa, exp2) = binary_parts(x);
        let upper = compare(&decimal, scale, 2 * mantissa + 1, exp2 - 1);
        let step_up = match upper {
            Ordering::Greater => true,
            Ordering::Equal => mantissa % 2 == 1,
            Ordering::Less => false,
        };
        if step_up {
            x = f64::from_bits(x.to_bits() + 1);
            if upper == Ordering::Equal {
                break;
            }
            continue;
        }
        if x == 0.0 {
            break;
        }
        // Below a power of two the spacing halves.
        let (k, e) = if mantissa == 1 << 52 && exp2 > -1074 {
            (4 * mantissa - 1, exp2 - 2)
        } else {
            (2 * mantissa - 1, exp2 - 1)
        };
        match compare(&decimal, scale, k, e) {
            Ordering::Less => x = f64::from_bits(x.to_bits() - 1),
            Ordering::Equal if mantissa % 2 == 1 => return f64::from_bits(x.to_bits() - 1),
            _ => break,
        }
    }
    x
}

/// `x` (finite, not negative) as `mantissa × 2^exp2`.
fn binary_parts(x: f64) -> (u64, i64) {
    let bits = x.to_bits();
    let (biased, fraction) = ((bits >> 52) as i64, bits & ((1 << 52) - 1));
    if biased == 0 {
        (fraction, -1074)
    } else {
        (fraction | 1 << 52, biased - 1075)
    }
}

/// `decimal × 10^scale` against `k × 2^exp2`, exactly.
fn compare(decimal: &Big, scale: i64, k: u64, exp2: i64) -> Ordering {
    let (mut left, mut right) = (decimal.clone(), Big::from_u64(k));
    if scale >= 0 {
        left.mul_pow10(scale as u64);
    } else {
        right.mul_pow10(scale.unsigned_abs());
    }
    if exp2 >= 0 {
        right.shl(exp2 as u64);
    } else {
        left.shl(exp2.unsigned_abs());
    }
    left.cmp(&right)
}

/// A non-negative big integer, 32-bit limbs, least significant first, no high zero limbs.
#[derive(Clone, PartialEq, Eq)]
struct Big(Vec<u32>);

impl Big {
    fn from_u64(n: u64) -> Big {
        let mut big = Big(vec![n as u32, (n >> 32) as u32]);
        big.trim();
        big
    }

    fn from_digits(digits: &[u8]) -> Big {
        let mut big = Big(Vec::new());
        for &d in digits {
            big.mul_add(10, u32::from(d - b'0'));
        }
        big
    }

    fn mul_add(&mut self, factor: u32, add: u32) {
        let mut carry = u64::from(add);
        for limb in &mut self.0 {
            let product = u64::from(*limb) * u64::from(factor) + carry;
            *limb = product as u32;
            carry = product >> 32;
        }
        if carry > 0 {
            self.0.push(carry as u32);
        }
    }

    fn mul_pow10(&mut self, mut n: u64) {
        while n > 0 {
            let step = n.min(9);
            self.mul_add(10_u32.pow(step as u32), 0);
            n -= step;
        }
    }

    fn shl(&mut self, bits: u64) {
        let (limbs, bits) = ((bits / 32) as usize, (bits % 32) as u32);
        if bits > 0 {
            let mut carry = 0;
            for limb in &mut self.0 {
                let wide = (u64::from(*limb) << bits) | carry;
                *limb = wide as u32;
                carry = wide >> 32;
            }
            if carry > 0 {
                self.0.push(carry as u32);
            }
        }
        self.0.splice(0..0, std::iter::repeat_n(0, limbs));
        self.trim();
    }

    fn trim(&mut self) {
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
    }
}

impl Ord for Big {
    fn cmp(&self, other: &Big) -> Ordering {
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.iter().rev().cmp(other.0.iter().rev()))
    }
}

impl PartialOrd for Big {
    fn partial_cmp(&self, other: &Big) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::parse;
    use crate::testgen::{Gen, SplitMix};

    fn rust(text: &str) -> Option<f64> {
        text.parse::<f64>().ok().filter(|f| f.is_finite())
    }

    #[test]
    fn the_grammar_is_rusts() {
        const ALPHABET: &[u8] = b"0123456789.eE-+";
        let mut seed = SplitMix(0x51_7cc1_b727_220a);
        let mut rng = Gen::new(&mut seed);
        for _ in 0..200_000 {
            let len = 1 + rng.below(8);
            let text: String = (0..len)
                .map(|_| char::from(ALPHABET[rng.below(ALPHABET.len())]))
                .collect();
            // The caller strips one leading `+` (and rejects a second sign) before this.
            if text.starts_with('+') {
                continue;
            }
            assert_eq!(parse(&text).is_some(), rust(&text).is_some(), "{text:?}");
        }
        for text in [
            "inf",
            "-infinity",
            "NaN",
            "1_0",
            "0x1",
            " 1",
            "1 ",
            "",
            "-",
            ".",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
    }

    /// A random float text: `int` and `frac` digit counts below the bounds, an exponent in
    /// `-exp..exp` four times in ten, a `-` three times in ten.
    fn float_text(rng: &mut Gen, int: usize, frac: usize, exp: usize) -> String {
        let mut digits = |n: usize| -> String {
            (0..rng.below(n))
                .map(|_| char::from(b'0' + rng.below(10) as u8))
                .collect()
        };
        let (int, frac) = (digits(int), digits(frac));
        let mut text = if int.is_empty() && frac.is_empty() {
            "0".to_string()
        } else {
            format!("{int}.{frac}")
        };
        if rng.chance(40) {
            text = format!("{text}e{}", rng.below(2 * exp) as i64 - exp as i64);
        }
        if rng.chance(30) {
            text.insert(0, '-');
        }
        text
    }

    /// At most 15 digits scaled by at most 10^22 either way: the exact path, Rust's bits.
    #[test]
    fn short_floats_are_bit_for_bit_rusts() {
        let mut seed = SplitMix(0x2f1e_77aa_0c3d_9b41);
        let mut rng = Gen::new(&mut seed);
        for _ in 0..200_000 {
            let text = float_text(&mut rng, 8, 9, 14);
            let (ours, theirs) = (parse(&text), rust(&text));
            assert_eq!(ours.map(f64::to_bits), theirs.map(f64::to_bits), "{text:?}");
        }
        for text in [
            "0.1",
            "100",
            "12.5",
            "1e22",
            "12e25",
            "-0.0",
            "9007199254740992",
        ] {
            assert_eq!(
                parse(text).map(f64::to_bits),
                rust(text).map(f64::to_bits),
                "{text}"
            );
        }
    }

    /// Beyond the exact path (long, tiny, huge, subnormal): still Rust's bits.
    #[test]
    fn wide_floats_are_bit_for_bit_rusts() {
        let mut seed = SplitMix(0x7a3c_0f19_e2d4_5b86);
        let mut rng = Gen::new(&mut seed);
        for _ in 0..100_000 {
            let text = float_text(&mut rng, 12, 25, 330);
            let (ours, theirs) = (parse(&text), rust(&text));
            assert_eq!(ours.map(f64::to_bits), theirs.map(f64::to_bits), "{text:?}");
        }
    }

    /// Literals longer than the digits compared in full: cut with a sticky digit, still
    /// Rust's bits, including a tie decided only by a far digit.
    #[test]
    fn very_long_literals_round_like_rust() {
        let long = "123456789".repeat(12_000);
        let halfway = format!("9007199254740993{}", "0".repeat(900));
        let above = format!("{halfway}1");
        for text in [
            format!("{long}e-107990"),
            format!("0.{long}"),
            format!("{long}e-108300"),
            halfway.clone(),
            above,
            format!("{halfway}e-920"),
        ] {
            assert_eq!(
                parse(&text).map(f64::to_bits),
                rust(&text).map(f64::to_bits),
                "{}",
                &text[..40]
            );
        }
    }

    #[test]
    fn boundaries_ties_and_out_of_range() {
        for text in [
            "3.14159265358979323846264338327950288",
            "1.7976931348623157e308",
            "1.7976931348623158e308",
            "2.2250738585072014e-308",
            "2.2250738585072011e-308",
            "4.9406564584124654e-324",
            "2.4703282292062328e-324",
            "9007199254740993",
            "9007199254740995",
            "123456789012345678901234567890e-10",
            "0.000000000000000000000000000001234567890123456789",
            "5e-324",
        ] {
            assert_eq!(
                parse(text).map(f64::to_bits),
                rust(text).map(f64::to_bits),
                "{text}"
            );
        }
        for text in [
            "1e309",
            "-1e400",
            "1.7976931348623159e308",
            "1e99999999999999999999",
        ] {
            assert_eq!(parse(text), None, "{text}");
        }
        assert_eq!(parse("2.4703282292062327e-324"), Some(0.0));
        assert_eq!(parse("1e-400"), Some(0.0));
        assert_eq!(
            parse("-1e-99999999999").map(f64::to_bits),
            Some((-0.0_f64).to_bits())
        );
    }
}
