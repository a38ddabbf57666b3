//! Times on the audit command line: RFC 3339, a bare date, or how long
//! ago (`30s`, `15m`, `2h`, `7d`), as ms since the epoch. Pure: no clock,
//! no I/O.

use crate::input::parse_duration;

/// Parses a time into ms since the epoch: RFC 3339
/// (`2026-11-22T10:00:00Z`, `2026-11-22T12:00:00.5+02:00`, or a bare date
/// for its midnight UTC) or a duration ago (`30s`, `15m`, `2h`, `7d`).
pub(super) fn parse_time(s: &str, now_ms: i64) -> Result<i64, String> {
    let shown: String = s.chars().take(40).collect();
    let bad = || {
        format!(
            "invalid time {shown:?}: give an RFC 3339 time (e.g. 2026-11-22T10:00:00Z) \
             or how long ago (e.g. 30s, 15m, 2h, 7d)"
        )
    };
    let relative = s.len() > 1
        && s.ends_with(['s', 'm', 'h', 'd'])
        && s[..s.len() - 1].bytes().all(|b| b.is_ascii_digit());
    let ms = if relative {
        let secs = parse_duration(s).map_err(|_| bad())?;
        let ago = i64::try_from(secs)
            .ok()
            .and_then(|x| x.checked_mul(1000))
            .ok_or_else(bad)?;
        now_ms.checked_sub(ago).ok_or_else(bad)?
    } else {
        rfc3339_ms(s).ok_or_else(bad)?
    };
    if ms < 0 {
        return Err(format!("invalid time {shown:?}: it is before 1970"));
    }
    Ok(ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days in month `m` of year `y`.
fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// RFC 3339 (`T`, `t` or a space between date and time; `Z` or a numeric
/// offset; up to nine fraction digits, kept to the millisecond), or a bare
/// `YYYY-MM-DD`.
fn rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, to: usize| -> Option<i64> {
        let d = b.get(from..to)?;
        if d.is_empty() || !d.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(d).ok()?.parse().ok()
    };
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    if b.len() == 10 {
        return days.checked_mul(86_400_000);
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' '))
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
    {
        return None;
    }
    let (h, mi, sec) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_ms = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start || i - start > 9 {
            return None;
        }
        let digits = (i - start).min(3);
        frac_ms = num(start, start + digits)? * 10_i64.pow(3 - digits as u32);
    }
    let offset_min = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (num(i + 1, i + 3)?, num(i + 4, i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            if *sign == b'-' {
                -(oh * 60 + om)
            } else {
                oh * 60 + om
            }
        }
        _ => return None,
    };
    // A leap second counts as the last millisecond of its minute's 59th.
    let (sec, frac_ms) = if sec == 60 { (59, 999) } else { (sec, frac_ms) };
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    secs.checked_mul(1000)?.checked_add(frac_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output;

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn times_are_rfc3339_or_a_duration_ago() {
        let t = |s: &str| parse_time(s, NOW);
        assert_eq!(t("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(t("2026-11-22T10:00:00Z"), Ok(1_795_341_600_000));
        assert_eq!(
            output::time_or(t("2026-11-22T10:00:00Z").ok(), ""),
            "2026-11-22 10:00:00Z"
        );
        assert_eq!(t("2026-11-22t10:00:00.5z"), Ok(1_795_341_600_500));
        assert_eq!(
            t("2026-11-22 12:00:00.123456789+02:00"),
            Ok(1_795_341_600_123)
        );
        assert_eq!(t("2026-11-22T05:30:00-04:30"), Ok(1_795_341_600_000));
        assert_eq!(t("2026-11-22"), Ok(1_795_305_600_000));
        assert_eq!(t("2024-02-29T00:00:00Z"), Ok(1_709_164_800_000));
        assert_eq!(t("2016-12-31T23:59:60Z"), Ok(1_483_228_799_999));
        assert_eq!(t("15m"), Ok(NOW - 15 * 60_000));
        assert_eq!(t("2h"), Ok(NOW - 2 * 3_600_000));
        assert_eq!(t("7d"), Ok(NOW - 7 * 86_400_000));
        assert_eq!(t("30s"), Ok(NOW - 30_000));
        for bad in [
            "",
            "m",
            "0m",
            "15",
            "15x",
            "-15m",
            "1.5h",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-11-22T24:00:00Z",
            "2026-11-22T10:00:00",
            "2026-11-22T10:00Z",
            "2026-11-22T10:00:00.Z",
            "2026-11-22T10:00:00.1234567890Z",
            "2026-11-22T10:00:00+0200",
            "2026-11-22T10:00:00Zjunk",
            "2026-1-22",
            "1969-12-31T23:59:59Z",
            "99999999999999d",
        ] {
            assert!(t(bad).is_err(), "{bad:?} was accepted: {:?}", t(bad));
        }
    }
}
