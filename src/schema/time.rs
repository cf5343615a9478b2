//! `meta/v1.Time` strings, checked the way k8s-openapi's `Time` deserializes them (through
//! `jiff::Timestamp`), without linking jiff into policy.wasm.
//!
//! The accepted grammar is jiff's Temporal/RFC 3339 one: `YYYY-MM-DD` (or basic `YYYYMMDD`,
//! or a signed six-digit year), a `T`/`t`/space separator, `HH[:MM[:SS[.fraction]]]` (basic
//! form without colons too, leap second `60` clamped, fraction up to 9 digits with `.` or
//! `,`), a required `Z`/`z` or numeric offset (`±HH[:MM[:SS[.fraction]]]`, hours up to 25),
//! then optional RFC 9557 annotations (`[UTC]`, `[+05:30]`, `[u-ca=iso8601]`; critical
//! `[!key=value]` rejected), and an instant inside jiff's supported range. Error texts are
//! jiff's where the pod schema tests compare them with k8s-openapi's.

use serde_json::Value;

use super::{invalid_type, Error};

/// Seconds since the Unix epoch of jiff's first and last supported instants.
const MIN_SECOND: i64 = -377_705_023_201;
const MAX_SECOND: i64 = 253_402_207_200;
/// Largest offset jiff represents: 25:59:59.
const MAX_OFFSET: i64 = 25 * 3600 + 59 * 60 + 59;

/// Check a `Time` field value: a string jiff's `Timestamp` deserializer accepts.
pub(super) fn check_time(v: &Value) -> Result<(), Error> {
    let Value::String(s) = v else {
        return Err(invalid_type(v, "a timestamp string"));
    };
    parse(s.as_bytes()).map(|_| ())
}

/// Parse a timestamp into Unix seconds (the nanoseconds only decide rounding at the edges).
fn parse(input: &[u8]) -> Result<i64, String> {
    let mut c = Cursor { s: input, pos: 0 };
    let (year, month, day) = c.date()?;
    let mut time = None;
    let mut offset = None;
    if matches!(c.peek(), Some(b' ' | b'T' | b't')) {
        c.pos += 1;
        time = Some(c.time()?);
        offset = c.offset()?;
    }
    c.annotations()?;
    if c.pos < input.len() {
        return Err(format!(
            "unparsed input {:?} remains after the timestamp in {:?}",
            String::from_utf8_lossy(&input[c.pos..]),
            String::from_utf8_lossy(input)
        ));
    }
    let (seconds_of_day, nanos) =
        time.ok_or("failed to find time component, which is required for parsing a timestamp")?;
    let offset = offset
        .ok_or("failed to find offset component, which is required for parsing a timestamp")?;
    if offset.abs() > MAX_OFFSET {
        return Err(
            "due to precision loss from fractional seconds, time zone offset is \
                    rounded to a value that is out of bounds"
                .into(),
        );
    }
    let mut second = days_from_civil(year, month, day) * 86_400 + seconds_of_day - offset;
    if second < 0 && nanos != 0 {
        second += 1;
    }
    if !(MIN_SECOND..=MAX_SECOND).contains(&second) {
        return Err(format!(
            "timestamp {:?} is outside the supported range \
             -009999-01-02T01:59:59Z..=9999-12-30T22:00:00Z",
            String::from_utf8_lossy(input)
        ));
    }
    Ok(second)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (era arithmetic over 400-year cycles).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let shifted_month = (month + 9) % 12; // March = 0
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A byte as jiff's messages show it (ASCII escapes, `\xNN` for the rest).
fn byte(b: u8) -> String {
    if b == b' ' {
        return " ".into();
    }
    let escaped: String = b.escape_ascii().map(char::from).collect();
    match escaped.strip_prefix("\\x") {
        Some(hex) => format!("\\x{}", hex.to_ascii_uppercase()),
        None => escaped,
    }
}

struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        let found = self.peek() == Some(b);
        self.pos += usize::from(found);
        found
    }

    /// Whether two ASCII digits come next (basic format's "another component follows").
    fn two_digits_next(&self) -> bool {
        self.s
            .get(self.pos..self.pos + 2)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    }

    /// Whether another `MM`/`SS` component follows: a `:` (eaten) in extended format, two
    /// digits in basic format.
    fn component_follows(&mut self, extended: bool) -> bool {
        if extended {
            self.eat(b':')
        } else {
            self.two_digits_next()
        }
    }

    /// A fixed-width decimal number within `min..=max`. `end` is the message when the input
    /// is too short; `context` prefixes digit and range errors (jiff's wording).
    fn number(
        &mut self,
        width: usize,
        (name, min, max): (&str, i64, i64),
        end: &str,
        context: &str,
    ) -> Result<i64, String> {
        let digits = self.s.get(self.pos..self.pos + width).ok_or(end)?;
        let mut n = 0i64;
        for &d in digits {
            if !d.is_ascii_digit() {
                return Err(format!(
                    "{context}: invalid digit, expected 0-9 but got {}",
                    byte(d)
                ));
            }
            n = n * 10 + i64::from(d - b'0');
        }
        if n < min || n > max {
            return Err(format!(
                "{context}: parameter '{name}' is not in the required range of {min}..={max}"
            ));
        }
        self.pos += width;
        Ok(n)
    }

    fn two(&mut self, name: &str, min: i64, max: i64) -> Result<i64, String> {
        self.number(
            2,
            (name, min, max),
            &format!("expected two digit {name}, but found end of input"),
            &format!("failed to parse two digit integer as {name}"),
        )
    }

    /// `.123` or `,123`: 1 to 9 digits, as nanoseconds.
    fn fraction(&mut self, context: &str) -> Result<i64, String> {
        if !matches!(self.peek(), Some(b'.' | b',')) {
            return Ok(0);
        }
        self.pos += 1;
        let mut nanos = 0;
        let mut digits = 0;
        while digits < 9 {
            let Some(d) = self.peek().filter(u8::is_ascii_digit) else {
                break;
            };
            nanos = nanos * 10 + i64::from(d - b'0');
            digits += 1;
            self.pos += 1;
        }
        if digits == 0 {
            return Err(format!(
                "{context}: found decimal after seconds component, \
                 but did not find any digits after decimal"
            ));
        }
        Ok(nanos * 10i64.pow(9 - digits))
    }

    fn date(&mut self) -> Result<(i64, i64, i64), String> {
        let year = match self.peek() {
            Some(sign @ (b'+' | b'-')) => {
                self.pos += 1;
                let year = self.number(
                    6,
                    ("year", -9999, 9999),
                    "expected six digit year (because of a leading sign), \
                     but found end of input",
                    "failed to parse six digit integer as year",
                )?;
                if sign == b'-' && year == 0 {
                    return Err("year zero must be written without a sign or a positive \
                                sign, but not a negative sign"
                        .into());
                }
                if sign == b'-' {
                    -year
                } else {
                    year
                }
            }
            _ => self.number(
                4,
                ("year", -9999, 9999),
                "expected four digit year (or leading sign for six digit year), \
                 but found end of input",
                "failed to parse four digit integer as year",
            )?,
        };
        let extended = self.eat(b'-');
        let month = self.two("month", 1, 12)?;
        let context = "failed to parse separator after month";
        if extended {
            match self.peek() {
                Some(b'-') => self.pos += 1,
                Some(b) => {
                    return Err(format!(
                        "{context}: expected `-` separator, but found `{}`",
                        byte(b)
                    ))
                }
                None => {
                    return Err(format!(
                        "{context}: expected `-` separator, but found end of input"
                    ))
                }
            }
        } else if self.peek() == Some(b'-') {
            return Err(format!(
                "{context}: expected no separator since none was found after the year, \
                 but found a `-` separator"
            ));
        }
        let day = self.two("day", 1, 31)?;
        let last = days_in_month(year, month);
        if day > last {
            let year = if (0..=9999).contains(&year) {
                format!("{year:04}")
            } else {
                format!("-{:03}", -year)
            };
            return Err(format!(
                "parsed date is not valid: parameter 'day' for `{year}-{month:02}` is invalid, \
                 must be in range `1..={last}`"
            ));
        }
        Ok((year, month, day))
    }

    /// `HH[:MM[:SS[.f]]]` or `HH[MM[SS[.f]]]`: (seconds of the day, nanoseconds).
    fn time(&mut self) -> Result<(i64, i64), String> {
        let hour = self.two("hour", 0, 23)?;
        let extended = self.peek() == Some(b':');
        let next = |c: &mut Self| c.component_follows(extended);
        let (mut minute, mut second, mut nanos) = (0, 0, 0);
        if next(self) {
            minute = self.two("minute", 0, 59)?;
            if next(self) {
                second = self.two("second", 0, 60)?.min(59);
                nanos = self.fraction("failed to parse fractional seconds in time")?;
            }
        }
        Ok((hour * 3600 + minute * 60 + second, nanos))
    }

    /// An optional UTC offset in seconds (`Z` is 0). With `subminute` off (time zone
    /// annotations), a `:` after the minutes is an error.
    fn offset(&mut self) -> Result<Option<i64>, String> {
        match self.peek() {
            Some(b'Z' | b'z') => {
                self.pos += 1;
                Ok(Some(0))
            }
            Some(b'+' | b'-') => self.numeric_offset(true).map(Some),
            _ => Ok(None),
        }
    }

    fn numeric_offset(&mut self, subminute: bool) -> Result<i64, String> {
        let negative = self.peek() == Some(b'-');
        self.pos += 1;
        let part = |c: &mut Self, unit: &str, after: &str, max: i64| {
            c.number(
                2,
                (&format!("time zone offset {unit}s"), -max, max),
                &format!(
                    "failed to parse {unit}s in UTC numeric offset: \
                     expected two digit {unit} after {after}, but found end of input"
                ),
                &format!(
                    "failed to parse {unit}s in UTC numeric offset: \
                     failed to parse {unit}s (requires a two digit integer)"
                ),
            )
        };
        let hours = part(self, "hour", "sign", 25)?;
        let extended = self.peek() == Some(b':');
        let next = |c: &mut Self| c.component_follows(extended);
        let mut total = hours * 3600;
        if next(self) {
            total += part(self, "minute", "hours", 59)? * 60;
            if !subminute {
                if self.peek() == Some(b':') {
                    return Err("subminute precision for UTC numeric offset is not enabled \
                                in this context (must provide only integral minutes)"
                        .into());
                }
            } else if next(self) {
                total += part(self, "second", "minutes", 59)?;
                let nanos =
                    self.fraction("failed to parse fractional seconds in UTC numeric offset")?;
                total += i64::from(nanos >= 500_000_000);
            }
        }
        Ok(if negative { -total } else { total })
    }

    /// RFC 9557 annotations: an optional time zone (`[Area/City]`, `[+05:30]`) first, then
    /// `[key=value-value]` ones. Only their syntax matters for a timestamp.
    fn annotations(&mut self) -> Result<(), String> {
        if self.peek() != Some(b'[') {
            return Ok(());
        }
        let start = self.pos;
        self.pos += 1;
        self.eat(b'!');
        if matches!(self.peek(), Some(b'+' | b'-')) {
            self.numeric_offset(false)?;
            self.close("time zone annotation")?;
        } else {
            self.tz_name_component()?;
            if self.peek() == Some(b'=') {
                self.pos = start; // a key=value annotation, not a time zone
            } else {
                while self.eat(b'/') {
                    self.tz_name_component()?;
                }
                self.close("time zone annotation")?;
            }
        }
        while self.eat(b'[') {
            let critical = self.eat(b'!');
            self.word(
                |b| matches!(b, b'_' | b'a'..=b'z'),
                |b| matches!(b, b'_' | b'-' | b'0'..=b'9' | b'a'..=b'z'),
                "lowercase alphabetic byte (or underscore)",
                "RFC 9557 annotation key",
            )?;
            match self.peek() {
                Some(b'=') => self.pos += 1,
                Some(b'/') => {
                    return Err("expected an `=` after parsing an RFC 9557 annotation key, \
                                but found `/` instead (time zone annotations must come first)"
                        .into())
                }
                found => {
                    return Err(format!(
                        "expected an `=` after parsing an RFC 9557 annotation key, \
                         but found {}",
                        found.map_or("end of input".into(), |b| format!("`{}` instead", byte(b)))
                    ))
                }
            }
            loop {
                self.word(
                    |b| b.is_ascii_alphanumeric(),
                    |b| b.is_ascii_alphanumeric(),
                    "alphanumeric ASCII byte",
                    "RFC 9557 annotation value",
                )?;
                if !self.eat(b'-') {
                    break;
                }
            }
            self.close("annotation key and value")?;
            if critical {
                return Err(
                    "found unsupported RFC 9557 annotation with the critical flag \
                            (`!`) set"
                        .into(),
                );
            }
        }
        Ok(())
    }

    fn tz_name_component(&mut self) -> Result<(), String> {
        self.word(
            |b| matches!(b, b'_' | b'.' | b'A'..=b'Z' | b'a'..=b'z'),
            |b| matches!(b, b'_' | b'.' | b'+' | b'-' | b'0'..=b'9' | b'A'..=b'Z' | b'a'..=b'z'),
            "ASCII alphabetic byte (or underscore or period)",
            "RFC 9557 annotation or time zone component name",
        )
    }

    /// A leading byte matching `first`, then any bytes matching `rest`.
    fn word(
        &mut self,
        first: impl Fn(u8) -> bool,
        rest: impl Fn(u8) -> bool,
        expected: &str,
        what: &str,
    ) -> Result<(), String> {
        match self.peek() {
            Some(b) if first(b) => self.pos += 1,
            Some(b) => {
                return Err(format!(
                    "expected {expected} at the start of an {what}, but found `{}` instead",
                    byte(b)
                ))
            }
            None => {
                let what = what.replace("or time zone", "or IANA time zone");
                return Err(format!(
                    "expected the start of an {what}, but found end of input instead"
                ));
            }
        }
        while self.peek().is_some_and(&rest) {
            self.pos += 1;
        }
        Ok(())
    }

    fn close(&mut self, what: &str) -> Result<(), String> {
        match self.peek() {
            Some(b']') => {
                self.pos += 1;
                Ok(())
            }
            found => Err(format!(
                "expected an `]` after parsing an RFC 9557 {what}, but found {}",
                found.map_or("end of input instead".into(), |b| format!(
                    "`{}` instead",
                    byte(b)
                ))
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testgen::{Gen, SplitMix};

    fn jiff(s: &str) -> Result<(), String> {
        <jiff::Timestamp as serde::Deserialize>::deserialize(&Value::from(s))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn ours(s: &str) -> Result<(), String> {
        check_time(&Value::from(s)).map_err(|e| e.to_string())
    }

    /// Same verdict as jiff; the same message too, except where ours names the value
    /// (trailing input, out-of-range instants).
    fn compare(s: &str) -> bool {
        let (expected, got) = (jiff(s), ours(s));
        match (&expected, &got) {
            (Ok(()), Ok(())) => {}
            (Err(e), Err(g)) => {
                if !e.starts_with("parsed value '") && !e.starts_with("failed to convert civil") {
                    assert_eq!(g, e, "{s:?}");
                }
            }
            _ => panic!("{s:?}: jiff {expected:?}, ours {got:?}"),
        }
        expected.is_ok()
    }

    #[test]
    fn tricky_strings_match_jiff() {
        for s in [
            "2026-10-02T08:14:55Z",
            "2026-10-02T08:14:55.123456Z",
            "2016-12-31T23:59:60Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01t10:00:00z",
            "2026-01-01 10:00:00Z",
            "2026-01-01T10:00:00.1Z",
            "2026-01-01T10:00:00.123456789Z",
            "2026-01-01T10:00:00.1234567890Z",
            "2026-01-01T10:00:00,5+05:30",
            "2026-01-01T10:00:00.Z",
            "2026-01-01T10:00:00+05:30",
            "2026-01-01T10:00:00-00:00",
            "2026-01-01T10:00:00+0530",
            "2026-01-01T10:00:00+05",
            "2026-01-01T10:00:00+05:30:15.5",
            "2026-01-01T10:00:00+25:59:59.5",
            "2026-01-01T10:00:00+26:00",
            "2026-01-01T10:00:00+05:3",
            "2026-01-01T10:00:00Z[UTC]",
            "2026-01-01T10:00:00+05:30[Asia/Kolkata]",
            "2026-01-01T10:00:00Z[+05:30]",
            "2026-01-01T10:00:00Z[+05:30:00]",
            "2026-01-01T10:00:00Z[!UTC][u-ca=iso8601]",
            "2026-01-01T10:00:00Z[u-ca=iso8601][UTC]",
            "2026-01-01T10:00:00Z[!u-ca=iso8601]",
            "2026-01-01T10:00:00Z[u-ca=iso8601-x]",
            "2026-01-01T10:00:00Z[u-ca/x]",
            "2026-01-01T10:00:00Z[UTC",
            "2026-01-01T10:00:00Z[]",
            "2026-01-01T10:00:00Z[",
            "2026-01-01T10:00:00 [UTC]",
            "2026-13-01T00:00:00Z",
            "2026-00-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2024-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2000-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-01-32T00:00:00Z",
            "0000-01-01T00:00:00Z",
            "9999-12-30T22:00:00Z",
            "9999-12-30T22:00:01Z",
            "9999-12-31T00:00:00+23:00",
            "-009999-01-02T01:59:59Z",
            "-009999-01-02T01:59:58Z",
            "+002026-01-01T00:00Z",
            "-000000-01-01T00:00Z",
            "+010000-01-01T00:00Z",
            "-000001-02-30T00:00Z",
            "2026-01-01T10:00Z",
            "2026-01-01T10Z",
            "2026-01-01T10",
            "2026-01-01T10:00:00",
            "2026-01-01",
            "2026-01-01T",
            "20260101T100000Z",
            "2026-0101T10Z",
            "202601-01T10Z",
            "2026-01-01T10:0000Z",
            "2026-01-01T1000:00Z",
            "2026-01-01T10:00:61Z",
            "2026-01-01T10:60Z",
            "2026-01-01x",
            "2026-01-01T10:00:00Zé",
            "2026-1-1T10:00:00Z",
            "26-01-01T10:00:00Z",
            "",
            "x",
            "yesterday",
            " 2026-01-01T10:00:00Z",
            "2026-01-01T10:00:00Z ",
        ] {
            let _ = compare(s);
        }
    }

    #[test]
    fn non_strings_are_invalid_types_like_jiff() {
        for v in [
            Value::Null,
            Value::from(5),
            Value::from(true),
            serde_json::json!([]),
        ] {
            let expected = <jiff::Timestamp as serde::Deserialize>::deserialize(&v)
                .map(|_| ())
                .map_err(|e| e.to_string());
            assert_eq!(check_time(&v).map_err(|e| e.to_string()), expected);
        }
    }

    #[test]
    fn generated_strings_match_jiff() {
        const YEARS: &[&str] = &[
            "2026", "0000", "9999", "+002024", "-000000", "202", "-000044",
        ];
        const MONTHS: &[&str] = &["01", "02", "12", "13", "00", "1"];
        const DAYS: &[&str] = &["01", "28", "29", "30", "31", "32", "0"];
        const SEPS: &[&str] = &["T", "t", " ", "", "x", "T"];
        const TIMES: &[&str] = &[
            "10", "10:30", "1030", "23:59:60", "235960", "24:00", "10:3", "10:30:5",
        ];
        const FRACTIONS: &[&str] = &["", ".5", ",123456789", ".1234567890", ".", ".000"];
        const OFFSETS: &[&str] = &[
            "Z",
            "z",
            "",
            "+05:30",
            "-00:00",
            "+0530",
            "+25:59:59.5",
            "+26",
            "-23:59",
            "+05:3",
        ];
        const ANNOTATIONS: &[&str] = &[
            "",
            "[UTC]",
            "[!UTC]",
            "[u-ca=iso8601]",
            "[!u-ca=x]",
            "[+05:30]",
            "[a/b",
            "[Foo=bar]",
            "[Europe/Paris][x=y-z]",
        ];
        const BYTES: &[u8] = b"0129-:+TZz.,[]/= x";
        let mut seed = SplitMix(0x2545_f491_4f6c_dd1d);
        let mut rng = Gen::new(&mut seed);
        let mut accepted = 0;
        for _ in 0..3000 {
            let dash = if rng.below(4) == 0 { "" } else { "-" };
            let mut s = format!(
                "{}{dash}{}{dash}{}{}{}{}{}{}",
                pick_mostly_first(&mut rng, YEARS),
                pick_mostly_first(&mut rng, MONTHS),
                pick_mostly_first(&mut rng, DAYS),
                pick_mostly_first(&mut rng, SEPS),
                pick_mostly_first(&mut rng, TIMES),
                pick_mostly_first(&mut rng, FRACTIONS),
                pick_mostly_first(&mut rng, OFFSETS),
                pick_mostly_first(&mut rng, ANNOTATIONS),
            )
            .into_bytes();
            if rng.below(3) == 0 {
                let at = rng.below(s.len());
                s[at] = BYTES[rng.below(BYTES.len())];
            }
            let s = String::from_utf8_lossy(&s);
            accepted += usize::from(compare(&s));
        }
        // Both verdicts must be well represented.
        assert!(
            (300..2700).contains(&accepted),
            "{accepted} of 3000 accepted"
        );
    }

    /// Half the time the first (valid) choice, so that whole valid strings are common.
    fn pick_mostly_first(rng: &mut Gen, list: &[&'static str]) -> &'static str {
        if rng.below(2) == 0 {
            list[0]
        } else {
            rng.pick(list)
        }
    }
}
