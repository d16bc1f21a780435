//! Helpers for TOML files whose errors name the line: spans to lines, spanned range checks.

use std::ops::Range;

use toml::Spanned;

/// 1-based line of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).unwrap_or(text).matches('\n').count() + 1
}

/// `v` must be finite and within `lo..=hi`; otherwise `invalid(span, message)`.
pub(crate) fn check_range<E>(
    v: &Spanned<f64>,
    lo: f64,
    hi: f64,
    name: &str,
    invalid: &impl Fn(Range<usize>, String) -> E,
) -> Result<(), E> {
    let x = *v.get_ref();
    if x.is_finite() && (lo..=hi).contains(&x) {
        Ok(())
    } else {
        Err(invalid(
            v.span(),
            format!("{name} = {x} is outside {lo}..={hi}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_ranges() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 4), 3);
        assert_eq!(line_of("a", 99), 1);
        let v = Spanned::new(5..7, 3.0);
        let err = |span: Range<usize>, m: String| (span, m);
        assert_eq!(check_range(&v, 1.0, 5.0, "x", &err), Ok(()));
        assert_eq!(
            check_range(&v, 4.0, 5.0, "x", &err),
            Err((5..7, "x = 3 is outside 4..=5".to_string()))
        );
        let nan = Spanned::new(0..1, f64::NAN);
        assert!(check_range(&nan, 0.0, 1.0, "x", &err).is_err());
    }
}
