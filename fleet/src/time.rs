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
/// of a second truncated): [`parse_time_ns`] in whole seconds.
pub fn parse_at(s: &str) -> Result<u64, TimeError> {
    let ns = parse_time_ns(s)?;
    // parse_time_ns refuses times before 1970.
    Ok(ns.unsigned_abs() / 1_000_000_000)
}

/// The one parser of every time the CLI takes (`--at`, `--since`, `--until`): Unix seconds
/// (`1752919234`, fractions kept: `1752919234.5`) or RFC 3339 (`2025-07-19T10:00:34Z`,
/// `2025-07-19T12:00:34.5+02:00`), as Unix nanoseconds. Times before 1970 and after 2262
/// (where i64 nanoseconds end) are [`TimeError::OutOfRange`].
pub fn parse_time_ns(s: &str) -> Result<i64, TimeError> {
    let out_of_range = || TimeError::OutOfRange {
        input: s.to_owned(),
    };
    let ns = if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        unix_seconds_ns(s)?
    } else {
        use time::error::{Parse, ParseFromDescription};
        let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|e| match e {
                // A month 13 or a February 30th: the form was right, a field is not.
                Parse::TryFromParsed(_)
                | Parse::ParseFromDescription(ParseFromDescription::InvalidComponent(_))
                    if rfc3339_shaped(s) =>
                {
                    TimeError::FieldOutOfRange {
                        input: s.to_owned(),
                    }
                }
                _ => TimeError::Malformed {
                    input: s.to_owned(),
                },
            })?;
        i64::try_from(t.unix_timestamp_nanos()).map_err(|_| out_of_range())?
    };
    if ns < 0 {
        return Err(out_of_range());
    }
    Ok(ns)
}

/// `DDDD-DD-DDTDD:DD:DD` at the start: what the parser refused is a field's value, not the form.
fn rfc3339_shaped(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 19
        && b[..19].iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => matches!(c, b'T' | b't'),
            13 | 16 => *c == b':',
            _ => c.is_ascii_digit(),
        })
}

/// `SECONDS[.FRACTION]` (ASCII digits and dots only) as nanoseconds.
fn unix_seconds_ns(s: &str) -> Result<i64, TimeError> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() || (s.contains('.') && frac.is_empty()) || frac.contains('.') {
        return Err(TimeError::Malformed {
            input: s.to_owned(),
        });
    }
    // Nanoseconds from at most nine fraction digits; further ones are below resolution.
    let digits: String = frac.chars().take(9).collect();
    let frac_ns = format!("{digits:0<9}").parse::<i64>().unwrap_or(0);
    whole
        .parse::<i64>()
        .ok()
        .and_then(|secs| secs.checked_mul(1_000_000_000)?.checked_add(frac_ns))
        .ok_or_else(|| TimeError::OutOfRange {
            input: s.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::{parse_at, parse_time_ns, rfc3339, TimeError};

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
    fn nanoseconds_keep_fractions() {
        assert_eq!(
            parse_time_ns("1752919234").unwrap(),
            1_752_919_234_000_000_000
        );
        assert_eq!(
            parse_time_ns("1752919234.25").unwrap(),
            1_752_919_234_250_000_000
        );
        assert_eq!(
            parse_time_ns("2025-07-19T12:00:34.25+02:00").unwrap(),
            1_752_919_234_250_000_000
        );
        assert_eq!(parse_time_ns("0.0000000019").unwrap(), 1);
        // Past i64 nanoseconds (year 2262).
        assert!(matches!(
            parse_time_ns("9300000000"),
            Err(TimeError::OutOfRange { .. })
        ));
        assert!(matches!(
            parse_time_ns("3000-01-01T00:00:00Z"),
            Err(TimeError::OutOfRange { .. })
        ));
        for s in [".", "1.", ".5", "1.2.3"] {
            assert!(
                matches!(parse_time_ns(s), Err(TimeError::Malformed { .. })),
                "{s}"
            );
        }
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
