//! Canonical JSON, as Warden writes audit entries, and a fast single-pass
//! checker for it.
//!
//! An entry line is canonical when it is exactly what `serde_json` prints
//! for its parsed value with every object's keys sorted: compact (no
//! whitespace outside strings), keys in strictly increasing order of their
//! UTF-8 bytes at every level (so no duplicates), strings escaped the way
//! `serde_json` escapes them (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, and
//! `\u00XX` in lowercase hex for the other control characters; nothing
//! else escaped, non-ASCII written raw), and numbers written as integers
//! in `i64`/`u64` range without a leading zero, fraction, exponent or
//! `-0`. Warden entries hold integers only, so floats are refused.
//!
//! [`is_canonical_json`] checks this in one pass without allocating;
//! [`parse_entry`] does the same and picks the `seq`, `log` and `prev`
//! fields out of an entry on the way. Tests compare the checker with the
//! slow definition (parse into `serde_json::Value`, print with sorted keys,
//! compare bytes).

use std::borrow::Cow;
use std::cmp::Ordering;

use crate::merkle::Hash;

/// Deepest nesting accepted: the same as `serde_json`'s recursion limit, so
/// that anything it cannot parse is refused here too.
pub const MAX_DEPTH: usize = 127;

/// The fields the verifier needs from an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryHead<'a> {
    /// The entry's position in its log (its leaf index).
    pub seq: u64,
    /// The log's name.
    pub log: Cow<'a, str>,
    /// The leaf hash of the previous entry (zeros for seq 0).
    pub prev: Hash,
    /// `Some(reason)` if the line is valid JSON but not canonical.
    pub non_canonical: Option<&'static str>,
}

/// Why a line is not a usable entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryFault {
    /// Not UTF-8.
    #[error("not valid UTF-8")]
    NotUtf8,
    /// Not JSON, or JSON that is not an object with the entry fields.
    #[error("not a JSON audit entry: {0}")]
    NotJson(String),
    /// A required field is missing.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A field has the wrong type or form.
    #[error("field `{0}` {1}")]
    BadField(&'static str, &'static str),
}

type Scan<T> = Result<T, &'static str>;

/// Bytes that end the plain run of a string: `"`, `\\` and the control
/// characters.
static STRING_STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Whether `json` is one canonical JSON value (see the module docs).
pub fn is_canonical_json(json: &[u8]) -> bool {
    let Ok(s) = std::str::from_utf8(json) else {
        return false;
    };
    let mut p = Parser {
        b: s.as_bytes(),
        i: 0,
    };
    p.value(0, None).is_ok() && p.i == p.b.len()
}

/// Raw spans of the top-level fields the verifier reads.
#[derive(Default)]
struct Top<'a> {
    seq: Option<&'a [u8]>,
    log: Option<Option<(&'a [u8], bool)>>,
    prev: Option<Option<(&'a [u8], bool)>>,
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn value(&mut self, depth: usize, top: Option<&mut Top<'a>>) -> Scan<()> {
        match self.peek() {
            Some(b'{') => self.object(depth + 1, top),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().map(|_| ()),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b' ' | b'\t' | b'\n' | b'\r') => Err("whitespace outside a string"),
            _ => Err("not a JSON value"),
        }
    }

    fn literal(&mut self, lit: &[u8]) -> Scan<()> {
        if self.b.get(self.i..self.i + lit.len()) == Some(lit) {
            self.i += lit.len();
            Ok(())
        } else {
            Err("not a JSON value")
        }
    }

    fn expect(&mut self, c: u8) -> Scan<()> {
        match self.peek() {
            Some(x) if x == c => {
                self.i += 1;
                Ok(())
            }
            Some(b' ' | b'\t' | b'\n' | b'\r') => Err("whitespace outside a string"),
            _ => Err("not valid JSON"),
        }
    }

    fn array(&mut self, depth: usize) -> Scan<()> {
        if depth > MAX_DEPTH {
            return Err("nested too deeply");
        }
        self.i += 1;
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.value(depth, None)?;
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(());
                }
                Some(b' ' | b'\t' | b'\n' | b'\r') => return Err("whitespace outside a string"),
                _ => return Err("not valid JSON"),
            }
        }
    }

    fn object(&mut self, depth: usize, mut top: Option<&mut Top<'a>>) -> Scan<()> {
        if depth > MAX_DEPTH {
            return Err("nested too deeply");
        }
        self.i += 1;
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        let mut last: Option<(&'a [u8], bool)> = None;
        loop {
            if self.peek() != Some(b'"') {
                return Err(match self.peek() {
                    Some(b' ' | b'\t' | b'\n' | b'\r') => "whitespace outside a string",
                    _ => "not valid JSON",
                });
            }
            let key = self.string()?;
            if let Some(prev) = last
                && key_cmp(prev, key) != Ordering::Less
            {
                return Err("object keys are not in strictly increasing order");
            }
            last = Some(key);
            self.expect(b':')?;
            let start = self.i;
            self.value(depth, None)?;
            if let Some(t) = top.as_deref_mut() {
                let raw = self.b.get(start..self.i).unwrap_or_default();
                match key.0 {
                    b"seq" => t.seq = Some(raw),
                    b"log" => t.log = Some(string_content(raw)),
                    b"prev" => t.prev = Some(string_content(raw)),
                    _ => {}
                }
            }
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                Some(b' ' | b'\t' | b'\n' | b'\r') => return Err("whitespace outside a string"),
                _ => return Err("not valid JSON"),
            }
        }
    }

    /// At a `"`: scans the string and returns its raw content (between the
    /// quotes) and whether it holds escapes.
    fn string(&mut self) -> Scan<(&'a [u8], bool)> {
        self.i += 1;
        let start = self.i;
        let mut escaped = false;
        loop {
            // Fast path: skip bytes that need no attention.
            let rest = self.b.get(self.i..).unwrap_or_default();
            let skip = rest
                .iter()
                .position(|&c| STRING_STOP[usize::from(c)])
                .ok_or("unterminated string")?;
            self.i += skip;
            match self.peek() {
                Some(b'"') => {
                    let s = self.b.get(start..self.i).unwrap_or_default();
                    self.i += 1;
                    return Ok((s, escaped));
                }
                Some(b'\\') => {
                    escaped = true;
                    match self.b.get(self.i + 1) {
                        Some(b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 2,
                        Some(b'u') => {
                            let v = self
                                .b
                                .get(self.i + 2..self.i + 6)
                                .and_then(lower_hex4)
                                .ok_or("escape is not \\u00xx in lowercase hex")?;
                            if v >= 0x20 || matches!(v, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                                return Err("needless or non-canonical \\u escape");
                            }
                            self.i += 6;
                        }
                        Some(b'/') => return Err("needless escape \\/"),
                        _ => return Err("invalid escape"),
                    }
                }
                _ => return Err("raw control character in a string"),
            }
        }
    }

    fn number(&mut self) -> Scan<()> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.i += 1;
        }
        let digits_start = self.i;
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                while matches!(self.peek(), Some(b'0'..=b'9')) {
                    self.i += 1;
                }
            }
            _ => return Err("not valid JSON"),
        }
        if matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return Err("not an integer");
        }
        if matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err("not valid JSON");
        }
        let digits = self.b.get(digits_start..self.i).unwrap_or_default();
        let magnitude = digits_value(digits).ok_or("integer out of range")?;
        if negative && (magnitude == 0 || magnitude > 1u64 << 63) {
            return Err(if magnitude == 0 {
                "-0 is not canonical"
            } else {
                "integer out of range"
            });
        }
        Ok(())
    }
}

/// The value of a non-empty run of ASCII digits, if it fits in a `u64`.
fn digits_value(d: &[u8]) -> Option<u64> {
    if d.is_empty() {
        return None;
    }
    d.iter().try_fold(0u64, |acc, &c| {
        if !c.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(c - b'0'))
    })
}

fn lower_hex4(h: &[u8]) -> Option<u32> {
    h.iter().try_fold(0u32, |acc, &c| {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        Some(acc * 16 + u32::from(d))
    })
}

/// A raw string value (with quotes) → its content and "has escapes";
/// `None` for a value that is not a string.
fn string_content(raw: &[u8]) -> Option<(&[u8], bool)> {
    match raw {
        [b'"', inner @ .., b'"'] => Some((inner, inner.contains(&b'\\'))),
        _ => None,
    }
}

/// The bytes a canonical string's raw content stands for.
struct Unescape<'a> {
    s: &'a [u8],
    i: usize,
}

impl Iterator for Unescape<'_> {
    type Item = u8;
    fn next(&mut self) -> Option<u8> {
        let c = *self.s.get(self.i)?;
        if c != b'\\' {
            self.i += 1;
            return Some(c);
        }
        let e = *self.s.get(self.i + 1)?;
        self.i += 2;
        Some(match e {
            b'b' => 0x08,
            b't' => 0x09,
            b'n' => 0x0a,
            b'f' => 0x0c,
            b'r' => 0x0d,
            b'u' => {
                let v = self.s.get(self.i..self.i + 4).and_then(lower_hex4)?;
                self.i += 4;
                u8::try_from(v).ok()?
            }
            other => other,
        })
    }
}

fn key_cmp(a: (&[u8], bool), b: (&[u8], bool)) -> Ordering {
    if !a.1 && !b.1 {
        a.0.cmp(b.0)
    } else {
        Unescape { s: a.0, i: 0 }.cmp(Unescape { s: b.0, i: 0 })
    }
}

/// The loose reading used when a line is not canonical, to still name its
/// `seq` and check its other fields.
#[derive(serde::Deserialize)]
struct Loose<'a> {
    seq: u64,
    #[serde(borrow)]
    log: Cow<'a, str>,
    #[serde(borrow)]
    prev: Cow<'a, str>,
}

fn parse_prev(hex_str: &[u8]) -> Result<Hash, EntryFault> {
    let bad = EntryFault::BadField("prev", "is not 64 lowercase hex digits");
    if hex_str.len() != 64
        || !hex_str
            .iter()
            .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(bad);
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_str, &mut out).map_err(|_| bad)?;
    Ok(out)
}

/// Reads an entry line (without its newline): checks it is UTF-8, a JSON
/// object and canonical, and returns its `seq`, `log` and `prev`.
///
/// A line that is valid JSON but not canonical still yields its fields
/// (through a slower `serde_json` reading), with
/// [`EntryHead::non_canonical`] set, so the caller can report faults in
/// its own order.
pub fn parse_entry(line: &[u8]) -> Result<EntryHead<'_>, EntryFault> {
    let s = std::str::from_utf8(line).map_err(|_| EntryFault::NotUtf8)?;
    if line.first() != Some(&b'{') {
        // Not an object (or leading whitespace): use the loose path for a
        // precise message.
        return parse_loose(s, "not a JSON object");
    }
    let mut top = Top::default();
    let mut p = Parser { b: line, i: 0 };
    let scanned = p.object(1, Some(&mut top));
    let scanned = match scanned {
        Ok(()) if p.i == line.len() => Ok(()),
        Ok(()) => Err("trailing bytes after the object"),
        Err(e) => Err(e),
    };
    if let Err(reason) = scanned {
        return parse_loose(s, reason);
    }
    let seq = top.seq.ok_or(EntryFault::MissingField("seq"))?;
    let seq = if seq.first() == Some(&b'-') {
        None
    } else {
        digits_value(seq)
    }
    .ok_or(EntryFault::BadField("seq", "is not a non-negative integer"))?;
    let (log, log_esc) = top
        .log
        .ok_or(EntryFault::MissingField("log"))?
        .ok_or(EntryFault::BadField("log", "is not a string"))?;
    let log = if log_esc {
        let bytes: Vec<u8> = Unescape { s: log, i: 0 }.collect();
        Cow::Owned(String::from_utf8(bytes).map_err(|_| EntryFault::NotUtf8)?)
    } else {
        Cow::Borrowed(std::str::from_utf8(log).map_err(|_| EntryFault::NotUtf8)?)
    };
    let (prev, prev_esc) = top
        .prev
        .ok_or(EntryFault::MissingField("prev"))?
        .ok_or(EntryFault::BadField("prev", "is not a string"))?;
    if prev_esc {
        return Err(EntryFault::BadField(
            "prev",
            "is not 64 lowercase hex digits",
        ));
    }
    Ok(EntryHead {
        seq,
        log,
        prev: parse_prev(prev)?,
        non_canonical: None,
    })
}

fn parse_loose<'a>(s: &'a str, reason: &'static str) -> Result<EntryHead<'a>, EntryFault> {
    match serde_json::from_str::<Loose<'a>>(s) {
        Ok(l) => {
            let prev = parse_prev(l.prev.as_bytes())?;
            Ok(EntryHead {
                seq: l.seq,
                log: l.log,
                prev,
                non_canonical: Some(reason),
            })
        }
        Err(e) => {
            if serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok() {
                Err(EntryFault::NotJson(format!("{reason}; {e}")))
            } else {
                Err(EntryFault::NotJson(e.to_string()))
            }
        }
    }
}

/// Appends the canonical form of `v` (keys sorted by their bytes at every
/// level, compact) to `out`, whatever map order `serde_json` was built with.
pub fn write_canonical(v: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let mut fields: Vec<_> = m.iter().collect();
            fields.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, val)) in fields.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                // Serializing a string into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, k);
                out.push(b':');
                write_canonical(val, out);
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, val) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(val, out);
            }
            out.push(b']');
        }
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

/// The canonical JSON text of `v` (see [`write_canonical`]).
pub fn to_canonical_json(v: &serde_json::Value) -> String {
    let mut out = Vec::new();
    write_canonical(v, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    /// The slow definition: print the parsed value with keys sorted by
    /// bytes (explicitly, whatever serde_json's map order is) and compare.
    pub(crate) fn reference(s: &[u8]) -> bool {
        let Ok(v) = serde_json::from_slice::<Value>(s) else {
            return false;
        };
        let mut out = String::new();
        write_sorted(&v, &mut out);
        out.as_bytes() == s && !has_float(&v)
    }

    pub(crate) fn write_sorted(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                let mut entries: Vec<_> = m.iter().collect();
                entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                out.push('{');
                for (i, (k, val)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(k).unwrap());
                    out.push(':');
                    write_sorted(val, out);
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for (i, val) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_sorted(val, out);
                }
                out.push(']');
            }
            other => out.push_str(&serde_json::to_string(other).unwrap()),
        }
    }

    fn has_float(v: &Value) -> bool {
        match v {
            Value::Number(n) => !(n.is_i64() || n.is_u64()),
            Value::Array(a) => a.iter().any(has_float),
            Value::Object(m) => m.values().any(has_float),
            _ => false,
        }
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let key = prop_oneof![
            "[a-z_]{0,6}",
            any::<String>(),
            Just("\u{7f}\"\\\u{1}\n".to_owned()),
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<String>().prop_map(Value::String),
            "[\\x00-\\x7f]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(key.clone(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn canonical_string(v: &Value) -> String {
        let mut s = String::new();
        write_sorted(v, &mut s);
        s
    }

    const INSERTS: &[&str] = &[
        " ", "\n", ",", "\"", "\\", "0", "1", ".", "e", "-", "u", "{", "}", "[", "]", ":", "a",
        "\u{1}", "\\u0041", "\\/", "\\u001F", "\\u001f", "é", "\"\":1", "null", "1.0",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn canonical_values_pass_both(v in arb_json()) {
            let s = canonical_string(&v);
            prop_assert!(reference(s.as_bytes()), "{}", s);
            prop_assert!(is_canonical_json(s.as_bytes()), "{}", s);
        }

        #[test]
        fn fast_check_agrees_with_value_check_on_mutations(
            v in arb_json(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..INSERTS.len(), 0u8..3), 1..3),
        ) {
            let mut s = canonical_string(&v);
            for (at, what, op) in edits {
                let bounds: Vec<usize> = (0..=s.len()).filter(|&i| s.is_char_boundary(i)).collect();
                let i = bounds[at.index(bounds.len())];
                match op {
                    0 => s.insert_str(i, INSERTS[what]),
                    1 => {
                        if let Some(c) = s[i..].chars().next() {
                            s.replace_range(i..i + c.len_utf8(), "");
                        }
                    }
                    _ => {
                        if let Some(c) = s[i..].chars().next() {
                            s.replace_range(i..i + c.len_utf8(), INSERTS[what]);
                        }
                    }
                }
            }
            prop_assert_eq!(is_canonical_json(s.as_bytes()), reference(s.as_bytes()), "{:?}", s);
        }

        #[test]
        fn fast_check_agrees_on_arbitrary_text(s in "[{}\\[\\]\",:0-9a-z\\\\ .-]{0,40}") {
            prop_assert_eq!(is_canonical_json(s.as_bytes()), reference(s.as_bytes()), "{:?}", s);
        }

        #[test]
        fn fast_check_agrees_on_arbitrary_bytes(b in prop::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(is_canonical_json(&b), reference(&b));
        }

        #[test]
        fn write_canonical_output_is_canonical(v in arb_json()) {
            let s = to_canonical_json(&v);
            prop_assert_eq!(&s, &canonical_string(&v));
            prop_assert!(is_canonical_json(s.as_bytes()));
        }

        #[test]
        fn swapped_keys_are_refused(a in "[a-z]{1,5}", b in "[a-z]{1,5}") {
            prop_assume!(a != b);
            let (lo, hi) = if a < b { (a, b) } else { (b, a) };
            let good = format!("{{\"{lo}\":1,\"{hi}\":2}}");
            let bad = format!("{{\"{hi}\":2,\"{lo}\":1}}");
            prop_assert!(is_canonical_json(good.as_bytes()));
            prop_assert!(!is_canonical_json(bad.as_bytes()));
            prop_assert!(!reference(bad.as_bytes()));
        }
    }

    #[test]
    fn specific_cases() {
        for (s, want) in [
            ("{}", true),
            ("[]", true),
            ("0", true),
            ("-0", false),
            ("01", false),
            ("1.0", false),
            ("1e3", false),
            ("18446744073709551615", true),
            ("18446744073709551616", false),
            ("-9223372036854775808", true),
            ("-9223372036854775809", false),
            ("\"\\u0000\"", true),
            ("\"\\u007f\"", false),
            ("\"\u{7f}\"", true),
            ("\"\\u000a\"", false),
            ("\"\\n\"", true),
            ("\"\\/\"", false),
            ("\"/\"", true),
            ("{\"a\":1,\"a\":1}", false),
            ("{\"a\":1 }", false),
            ("{\"a\":1}\n", false),
            ("{\"\\n\":1,\"a\":2}", true),
            ("{\"a\":2,\"\\n\":1}", false),
            ("{\"\\\\\":1,\"a\":2}", true),
            ("{\"a\":1,\"\\\\\":2}", false),
            ("{\"\u{e9}\":1,\"z\":2}", false),
            ("{\"z\":1,\"\u{e9}\":2}", true),
            ("tru", false),
            ("true", true),
            ("[1,]", false),
            ("{,}", false),
        ] {
            assert_eq!(is_canonical_json(s.as_bytes()), want, "{s:?}");
            assert_eq!(reference(s.as_bytes()), want, "reference {s:?}");
        }
    }

    #[test]
    fn depth_limit_matches_serde_json() {
        let nest = |d: usize| format!("{}{}", "[".repeat(d), "]".repeat(d));
        let limit = (1..400)
            .take_while(|&d| serde_json::from_str::<Value>(&nest(d)).is_ok())
            .last()
            .unwrap();
        assert_eq!(limit, MAX_DEPTH);
        assert!(is_canonical_json(nest(MAX_DEPTH).as_bytes()));
        assert!(!is_canonical_json(nest(MAX_DEPTH + 1).as_bytes()));
        let obj = |d: usize| format!("{}1{}", "{\"a\":".repeat(d), "}".repeat(d));
        assert!(is_canonical_json(obj(MAX_DEPTH).as_bytes()));
        assert!(!is_canonical_json(obj(MAX_DEPTH + 1).as_bytes()));
        assert!(!reference(obj(MAX_DEPTH + 1).as_bytes()));
    }

    const PREV: &str = "00000000000000000000000000000000000000000000000000000000000000ff";

    #[test]
    fn entries_are_parsed() {
        let line = format!(
            r#"{{"action":"secret.read","log":"acme","prev":"{PREV}","schema":1,"seq":42,"x":{{"seq":7}}}}"#
        );
        let e = parse_entry(line.as_bytes()).unwrap();
        assert_eq!(e.seq, 42);
        assert_eq!(e.log, "acme");
        assert_eq!(e.prev[31], 0xff);
        assert_eq!(e.non_canonical, None);

        let loose = format!(r#"{{"seq":42, "log":"ac\u006de","prev":"{PREV}"}}"#);
        let e = parse_entry(loose.as_bytes()).unwrap();
        assert_eq!((e.seq, e.log.as_ref()), (42, "acme"));
        assert!(e.non_canonical.is_some());

        let esc = format!(r#"{{"log":"a\nb","prev":"{PREV}","seq":1}}"#);
        assert_eq!(parse_entry(esc.as_bytes()).unwrap().log, "a\nb");

        for bad in [
            "[1]".to_owned(),
            "not json".to_owned(),
            format!(r#"{{"log":"acme","prev":"{PREV}"}}"#),
            format!(r#"{{"log":"acme","prev":"{PREV}","seq":-1}}"#),
            format!(r#"{{"log":"acme","prev":"{PREV}","seq":"1"}}"#),
            format!(r#"{{"log":1,"prev":"{PREV}","seq":1}}"#),
            r#"{"log":"acme","prev":"00","seq":1}"#.to_owned(),
            format!(
                r#"{{"log":"acme","prev":"{}","seq":1}}"#,
                PREV.to_uppercase()
            ),
            r#"{"log":"acme","seq":1}"#.to_owned(),
        ] {
            assert!(parse_entry(bad.as_bytes()).is_err(), "{bad}");
        }
        assert_eq!(parse_entry(b"{\"\xff\":1}"), Err(EntryFault::NotUtf8));
    }
}
