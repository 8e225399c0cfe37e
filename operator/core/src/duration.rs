//! Durations as Kubernetes users write them: Go's `time.ParseDuration` syntax, which is also what
//! the CRD's CEL `duration()` rules accept, so a value the API server admits always parses here.
//! `format_duration` prints the short canonical form that status and messages show.

use std::time::Duration;

/// Go stores durations as signed 64-bit nanoseconds; anything larger is rejected by the API
/// server's CEL `duration()`, so it is rejected here too (about 2562047h).
pub const MAX_DURATION: Duration = Duration::from_nanos(i64::MAX as u64);

const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// Why a duration string was rejected; `input` is the text as written (never a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("duration is empty")]
    Empty,
    #[error("duration {input:?} is negative")]
    Negative { input: String },
    #[error("duration {input:?} has a number without a unit (use ns, us, ms, s, m or h)")]
    MissingUnit { input: String },
    #[error(
        "duration {input:?} has unknown unit {unit:?} (use ns, us, ms, s, m or h; days are not supported)"
    )]
    UnknownUnit { input: String, unit: String },
    #[error("duration {input:?} is not a valid duration such as 1h30m")]
    Invalid { input: String },
    #[error("duration {input:?} is longer than the maximum of 2562047h")]
    Overflow { input: String },
}

/// Parses Go/Kubernetes duration text such as `720h`, `1h30m`, `1.5h`, `500ms`.
///
/// Like Go, a bare `0` is accepted and a leading `+` is allowed; unlike Go, any `-` sign is
/// rejected because no Keyturn duration may be negative.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let owned = || input.to_owned();
    let mut rest = input;
    if rest.is_empty() {
        return Err(DurationError::Empty);
    }
    if rest.starts_with('-') {
        return Err(DurationError::Negative { input: owned() });
    }
    if let Some(stripped) = rest.strip_prefix('+') {
        rest = stripped;
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(DurationError::Invalid { input: owned() });
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let (integer, after_integer) = split_digits(rest);
        let (fraction, after_number) = match after_integer.strip_prefix('.') {
            Some(after_dot) => split_digits(after_dot),
            None => ("", after_integer),
        };
        if integer.is_empty() && fraction.is_empty() {
            return Err(DurationError::Invalid { input: owned() });
        }
        let unit_len = after_number
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after_number.len());
        let (unit, after_unit) = after_number.split_at(unit_len);
        if unit.is_empty() {
            return Err(DurationError::MissingUnit { input: owned() });
        }
        let unit_nanos = unit_nanos(unit).ok_or_else(|| DurationError::UnknownUnit {
            input: owned(),
            unit: unit.to_owned(),
        })?;
        total = total
            .checked_add(
                component_nanos(integer, fraction, unit_nanos)
                    .ok_or_else(|| DurationError::Overflow { input: owned() })?,
            )
            .ok_or_else(|| DurationError::Overflow { input: owned() })?;
        if total > MAX_DURATION.as_nanos() {
            return Err(DurationError::Overflow { input: owned() });
        }
        rest = after_unit;
    }
    let seconds = u64::try_from(total / NANOS_PER_SECOND)
        .map_err(|_| DurationError::Overflow { input: owned() })?;
    // The remainder of a division by 1e9 always fits in u32.
    let nanos = (total % NANOS_PER_SECOND) as u32;
    Ok(Duration::new(seconds, nanos))
}

fn split_digits(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    text.split_at(end)
}

fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        // Go accepts the micro sign (U+00B5) and the Greek mu (U+03BC).
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => NANOS_PER_SECOND,
        "m" => 60 * NANOS_PER_SECOND,
        "h" => 3_600 * NANOS_PER_SECOND,
        _ => return None,
    })
}

/// Like Go, fraction digits beyond nanosecond precision are dropped rather than rounded.
fn component_nanos(integer: &str, fraction: &str, unit_nanos: u128) -> Option<u128> {
    let mut nanos: u128 = 0;
    for digit in integer.bytes() {
        nanos = nanos
            .checked_mul(10)?
            .checked_add(u128::from(digit - b'0'))?;
        // Bail out early so a thousand-digit number cannot overflow u128.
        if nanos > MAX_DURATION.as_nanos() {
            return None;
        }
    }
    nanos = nanos.checked_mul(unit_nanos)?;
    let mut scale = unit_nanos;
    for digit in fraction.bytes() {
        if scale < 10 {
            break;
        }
        scale /= 10;
        nanos = nanos.checked_add(u128::from(digit - b'0') * scale)?;
    }
    Some(nanos)
}

/// Formats a duration the short way (`720h`, `1h30m`, `45s`, `1m0.5s`, `500ms`), omitting zero
/// components; the result always parses back to the same value.
pub fn format_duration(duration: Duration) -> String {
    if duration.is_zero() {
        return "0s".to_owned();
    }
    let total_seconds = duration.as_secs();
    let nanos = duration.subsec_nanos();
    if total_seconds == 0 {
        return format_subsecond(nanos);
    }
    let hours = total_seconds / 3_600;
    let minutes = (total_seconds % 3_600) / 60;
    let seconds = total_seconds % 60;
    let mut text = String::new();
    if hours > 0 {
        text.push_str(&format!("{hours}h"));
    }
    if minutes > 0 {
        text.push_str(&format!("{minutes}m"));
    }
    if seconds > 0 || nanos > 0 {
        text.push_str(&format!("{seconds}{}s", fraction_text(nanos, 9)));
    }
    text
}

fn format_subsecond(nanos: u32) -> String {
    if nanos >= 1_000_000 {
        format!(
            "{}{}ms",
            nanos / 1_000_000,
            fraction_text(nanos % 1_000_000, 6)
        )
    } else if nanos >= 1_000 {
        format!("{}{}us", nanos / 1_000, fraction_text(nanos % 1_000, 3))
    } else {
        format!("{nanos}ns")
    }
}

/// `.5` for 500000000 with 9 digits; empty for zero.
fn fraction_text(value: u32, digits: usize) -> String {
    if value == 0 {
        return String::new();
    }
    let padded = format!("{value:0digits$}");
    format!(".{}", padded.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(text: &str) -> Duration {
        match parse_duration(text) {
            Ok(duration) => duration,
            Err(error) => panic!("{text:?} should parse: {error}"),
        }
    }

    #[test]
    fn parses_go_syntax() {
        assert_eq!(ok("720h"), Duration::from_secs(720 * 3600));
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("90s"), Duration::from_secs(90));
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("2us"), Duration::from_micros(2));
        assert_eq!(ok("2\u{b5}s"), Duration::from_micros(2));
        assert_eq!(ok("2\u{3bc}s"), Duration::from_micros(2));
        assert_eq!(ok("7ns"), Duration::from_nanos(7));
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok("1.s"), Duration::from_secs(1));
        assert_eq!(ok("+5m"), Duration::from_secs(300));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("0s"), Duration::ZERO);
        assert_eq!(ok("1h1h"), Duration::from_secs(7200));
        assert_eq!(ok("1.0000000001s"), Duration::from_secs(1));
        assert_eq!(ok("2562047h"), Duration::from_secs(2_562_047 * 3600));
    }

    #[test]
    fn rejects_invalid_text_with_the_right_error() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert!(matches!(
            parse_duration("-1h"),
            Err(DurationError::Negative { .. })
        ));
        assert!(matches!(
            parse_duration("10"),
            Err(DurationError::MissingUnit { .. })
        ));
        assert!(matches!(
            parse_duration("1h30"),
            Err(DurationError::MissingUnit { .. })
        ));
        assert!(matches!(
            parse_duration("3d"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_duration("1H"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_duration("h"),
            Err(DurationError::Invalid { .. })
        ));
        assert!(matches!(
            parse_duration("."),
            Err(DurationError::Invalid { .. })
        ));
        assert!(matches!(
            parse_duration("+"),
            Err(DurationError::Invalid { .. })
        ));
        assert!(matches!(
            parse_duration("1 h"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_duration("2562048h"),
            Err(DurationError::Overflow { .. })
        ));
        assert!(matches!(
            parse_duration("99999999999999999999999999999999999999999h"),
            Err(DurationError::Overflow { .. })
        ));
    }

    #[test]
    fn error_messages_are_lowercase_and_name_the_input() {
        let message = parse_duration("3d").map(|_| ()).unwrap_err().to_string();
        assert_eq!(
            message,
            "duration \"3d\" has unknown unit \"d\" (use ns, us, ms, s, m or h; days are not supported)"
        );
    }

    #[test]
    fn formats_short_canonical_text() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_secs(720 * 3600)), "720h");
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(45)), "45s");
        assert_eq!(format_duration(Duration::from_secs(3601)), "1h1s");
        assert_eq!(format_duration(Duration::from_millis(60_500)), "1m0.5s");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_duration(Duration::from_micros(1_500)), "1.5ms");
        assert_eq!(format_duration(Duration::from_nanos(1_500)), "1.5us");
        assert_eq!(format_duration(Duration::from_nanos(7)), "7ns");
    }

    proptest! {
        #[test]
        fn format_round_trips_through_parse(nanos in 0..=MAX_DURATION.as_nanos() as u64) {
            let duration = Duration::from_nanos(nanos);
            prop_assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
        }

        #[test]
        fn whole_seconds_round_trip(seconds in 0u64..=10_000_000) {
            let duration = Duration::from_secs(seconds);
            prop_assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
        }

        #[test]
        fn parse_never_panics(text in "\\PC{0,12}") {
            let _ = parse_duration(&text);
        }
    }
}
