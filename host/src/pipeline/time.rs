//! Event times written as RFC 3339 text, read without a general date parser: the common
//! shape `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` directly, anything else through chrono.

/// Milliseconds since the epoch of an RFC 3339 timestamp, or chrono's error text.
pub fn rfc3339_millis(text: &str) -> Result<i64, String> {
    if let Some(ms) = fast_rfc3339(text.as_bytes()) {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| e.to_string())
}

fn digits(b: &[u8]) -> Option<i64> {
    b.iter().try_fold(0i64, |n, d| {
        d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
    })
}

/// Days from 1970-01-01 to the given civil date (proleptic Gregorian).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The common shape only; `None` sends the text to chrono (which also reports errors). Years
/// before 1970 and leap seconds go to chrono too, so their millisecond rounding is chrono's.
fn fast_rfc3339(b: &[u8]) -> Option<i64> {
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    if year < 1970
        || !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut rest = &b[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let len = fraction.iter().take_while(|d| d.is_ascii_digit()).count();
        if len == 0 || len > 9 {
            return None;
        }
        let first3 = &fraction[..len.min(3)];
        millis = digits(first3)? * [100, 10, 1][first3.len() - 1];
        rest = &fraction[len..];
    }
    let offset_minutes = match rest {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let h = digits(&[*h1, *h2])?;
            let m = digits(&[*m1, *m2])?;
            if h > 23 || m > 59 {
                return None;
            }
            let minutes = h * 60 + m;
            if *sign == b'-' { -minutes } else { minutes }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1_000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chrono_ms(text: &str) -> Option<i64> {
        chrono::DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.timestamp_millis())
    }

    #[test]
    fn agrees_with_chrono() {
        let cases = [
            "2026-01-01T00:00:01.5Z",
            "2026-11-29T15:04:05.123456789Z",
            "2026-11-29T15:04:05Z",
            "2024-02-29T23:59:59.999+05:30",
            "2023-02-29T00:00:00Z",
            "1999-12-31T23:59:59.9-08:00",
            "1970-01-01T00:00:00.000Z",
            "2026-13-01T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:00.Z",
            "2026-01-01t00:00:00z",
            "2026-01-01 00:00:00Z",
            "2016-12-31T23:59:60Z",
            "1969-12-31T23:59:59.5Z",
            "not a time",
        ];
        for case in cases {
            assert_eq!(rfc3339_millis(case).ok(), chrono_ms(case), "{case}");
        }
        // Every day of a few years, at a few times of day.
        for days in (0..3 * 366).step_by(7) {
            let t = chrono::DateTime::from_timestamp(
                1_700_000_000 + days * 86_400 + 3_723,
                456_000_000,
            )
            .unwrap();
            let text = t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            assert_eq!(
                fast_rfc3339(text.as_bytes()),
                Some(t.timestamp_millis()),
                "{text}"
            );
        }
    }
}
