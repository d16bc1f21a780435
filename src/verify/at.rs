//! `--at`: a verification time as unix seconds or RFC 3339.

use anyhow::{bail, Context};

/// Unix seconds from `123456789` or `2025-07-19T10:00:34Z` (offsets `±HH:MM`, fractions
/// of a second truncated).
pub(crate) fn parse_at(s: &str) -> anyhow::Result<u64> {
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().context("unix seconds out of range");
    }
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> anyhow::Result<i64> {
        let part = s.get(r).context("RFC 3339 time too short")?;
        if part.is_empty() || !part.bytes().all(|c| c.is_ascii_digit()) {
            bail!("not an RFC 3339 time or unix seconds: {s:?}");
        }
        Ok(part.parse()?)
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        bail!("not an RFC 3339 time or unix seconds: {s:?}");
    }
    if b[13] != b':' || b[16] != b':' {
        bail!("not an RFC 3339 time: {s:?}");
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        bail!("RFC 3339 field out of range: {s:?}");
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            bail!("empty fraction in {s:?}");
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
            let oh: i64 = rest[1..3].parse().context("offset hours")?;
            let om: i64 = rest[4..6].parse().context("offset minutes")?;
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (oh * 3600 + om * 60)
        }
        _ => bail!("RFC 3339 time needs Z or ±HH:MM: {s:?}"),
    };
    let unix = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset;
    u64::try_from(unix).context("time before 1970")
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
    use super::parse_at;

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
    }
}
