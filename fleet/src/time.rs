//! Verification times: `--at` values as unix seconds or RFC 3339, RFC 3339 for unix seconds,
//! and the clock.

/// Why a time did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimeError {
    /// Neither unix seconds nor `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
    #[error("not an RFC 3339 time or unix seconds: {input:?}")]
    Malformed { input: String },
    /// A field (month, day, hour, minute, second, offset) is out of its range.
    #[error("RFC 3339 field out of range: {input:?}")]
    FieldOutOfRange { input: String },
    /// The time is before 1970 or past what `u64` seconds hold.
    #[error("time out of range (before 1970 or too large): {input:?}")]
    OutOfRange { input: String },
    /// The system clock reads a time before 1970.
    #[error("system clock before 1970")]
    ClockBeforeEpoch,
}

/// `YYYY-MM-DDTHH:MM:SSZ` for Unix seconds (proleptic Gregorian, UTC).
pub fn rfc3339(unix_s: i64) -> String {
    let days = unix_s.div_euclid(86_400);
    let secs = unix_s.rem_euclid(86_400);
    // Days to civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Unix seconds now, for a verification time not given.
pub fn unix_now() -> Result<u64, TimeError> {
    Ok(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| TimeError::ClockBeforeEpoch)?
        .as_secs())
}

/// Unix seconds from `123456789` or `2025-07-19T10:00:34Z` (offsets `±HH:MM`, fractions
/// of a second truncated).
pub fn parse_at(s: &str) -> Result<u64, TimeError> {
    let malformed = || TimeError::Malformed {
        input: s.to_owned(),
    };
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| {
            if s.is_empty() {
                malformed()
            } else {
                TimeError::OutOfRange {
                    input: s.to_owned(),
                }
            }
        });
    }
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Result<i64, TimeError> {
        let part = s.get(r).ok_or_else(malformed)?;
        if part.is_empty() || !part.bytes().all(|c| c.is_ascii_digit()) {
            return Err(malformed());
        }
        part.parse().map_err(|_| malformed())
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return Err(malformed());
    }
    if b[13] != b':' || b[16] != b':' {
        return Err(malformed());
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return Err(TimeError::FieldOutOfRange {
            input: s.to_owned(),
        });
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(malformed());
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6
            && rest.is_ascii()
            && matches!(&rest[..1], "+" | "-")
            && &rest[3..4] == ":" =>
        {
            let oh: i64 = rest[1..3].parse().map_err(|_| malformed())?;
            let om: i64 = rest[4..6].parse().map_err(|_| malformed())?;
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (oh * 3600 + om * 60)
        }
        _ => return Err(malformed()),
    };
    let unix = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset;
    u64::try_from(unix).map_err(|_| TimeError::OutOfRange {
        input: s.to_owned(),
    })
}

/// Howard Hinnant's civil-to-days algorithm (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::{parse_at, rfc3339, TimeError};

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_800_000_000), "2027-01-15T08:00:00Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn parses_both_forms() {
        assert_eq!(parse_at("1752919234").unwrap(), 1_752_919_234);
        assert_eq!(parse_at("2025-07-19T10:00:34Z").unwrap(), 1_752_919_234);
        assert_eq!(
            parse_at("2025-07-19T12:00:34.999+02:00").unwrap(),
            1_752_919_234
        );
        assert_eq!(parse_at("2000-02-29T00:00:00Z").unwrap(), 951_782_400);
        assert_eq!(parse_at("1970-01-01T00:00:00Z").unwrap(), 0);
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "",
            "yesterday",
            "2025-13-01T00:00:00Z",
            "2025-07-19T10:00:34",
            "-5",
            "2025-07-19",
        ] {
            assert!(parse_at(s).is_err(), "{s}");
        }
        assert_eq!(
            parse_at("2025-13-01T00:00:00Z"),
            Err(TimeError::FieldOutOfRange {
                input: "2025-13-01T00:00:00Z".into()
            })
        );
        assert!(matches!(
            parse_at("1969-12-31T23:59:59Z"),
            Err(TimeError::OutOfRange { .. })
        ));
        assert!(matches!(
            parse_at("yesterday"),
            Err(TimeError::Malformed { .. })
        ));
    }
}
