//! When rotations may happen: a fixed interval or a standard 5-field cron expression evaluated on
//! the wall clock of a time zone, with a window after each fire time in which a rotation may start.
//! Owns the DST rules: a fire time in a spring-forward gap fires once at the end of the gap, and a
//! fire time repeated by a fall-back overlap fires once, at its first occurrence.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// How long a cron window stays open when the spec does not say: one hour.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(3600);

/// Upper bound on cron candidates examined per query; reached only by a pathological expression
/// (thousands of matches inside one DST overlap), which then simply yields no fire time.
const MAX_CANDIDATES: usize = 10_000;

/// What starts a scheduled rotation.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// Rotate `every` after the previous rotation (or after issuance of the current credential).
    Interval { every: Duration },
    /// Rotate at cron fire times, starting only inside the window after a fire time.
    Cron(CronTrigger),
}

/// A parsed cron schedule.
///
/// Fields hold what the user wrote; construct it with [`CronTrigger::parse`], which also keeps
/// the compiled form.
#[derive(Debug, Clone, PartialEq)]
pub struct CronTrigger {
    /// The expression as written, 5 fields (`0 3 * * SUN`) or a macro (`@daily`).
    pub expression: String,
    pub time_zone: Tz,
    /// How long after a fire time a rotation may still start; later, it waits for the next one.
    pub window: Duration,
    /// Standard cron ORs day-of-month and day-of-week when both are restricted, whereas the
    /// `cron` crate ANDs them, so that case compiles to two schedules whose fire times merge.
    compiled: Vec<cron::Schedule>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "spec.rotation.schedule {expression:?} must have 5 fields (minute hour day-of-month month day-of-week) or be a macro such as @daily, found {found}"
    )]
    FieldCount { expression: String, found: usize },
    #[error("spec.rotation.schedule {expression:?} is not a valid cron expression: {reason}")]
    Invalid { expression: String, reason: String },
    #[error("spec.rotation.timeZone {name:?} is not a known IANA time zone such as Europe/Berlin")]
    UnknownTimeZone { name: String },
    #[error("spec.rotation.window must be longer than zero")]
    ZeroWindow,
}

impl CronTrigger {
    /// Parses a standard 5-field cron expression or a macro (`@yearly`, `@annually`, `@monthly`,
    /// `@weekly`, `@daily`, `@midnight`, `@hourly`). The time zone defaults to UTC and the window
    /// to [`DEFAULT_WINDOW`] (1h). Day-of-week accepts 0-7 (0 and 7 are Sunday) and names.
    pub fn parse(
        expression: &str,
        time_zone: Option<&str>,
        window: Option<Duration>,
    ) -> Result<CronTrigger, ScheduleError> {
        let time_zone = match time_zone {
            None => Tz::UTC,
            Some(name) => Tz::from_str(name).map_err(|_| ScheduleError::UnknownTimeZone {
                name: name.to_owned(),
            })?,
        };
        let window = window.unwrap_or(DEFAULT_WINDOW);
        if window.is_zero() {
            return Err(ScheduleError::ZeroWindow);
        }
        let compiled = compile(expression)?;
        Ok(CronTrigger {
            expression: expression.to_owned(),
            time_zone,
            window,
            compiled,
        })
    }

    /// The first fire time strictly after `after`.
    pub fn next_fire_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local_start = after.with_timezone(&self.time_zone).naive_local();
        // Fire times map monotonically onto instants, so every candidate at or before the local
        // time of `after` maps at or before `after`; the loop only skips candidates inside a
        // fall-back overlap that already fired at their first occurrence.
        let mut iterators: Vec<_> = self
            .compiled
            .iter()
            .map(|schedule| schedule.after(&local_start.and_utc()).peekable())
            .collect();
        for _ in 0..MAX_CANDIDATES {
            let next_local = iterators
                .iter_mut()
                .filter_map(|iterator| iterator.peek().copied())
                .min()?;
            for iterator in &mut iterators {
                if iterator.peek() == Some(&next_local) {
                    iterator.next();
                }
            }
            let instant = self.resolve_local(next_local.naive_utc())?;
            if instant > after {
                return Some(instant);
            }
        }
        None
    }

    /// The fire time whose window contains `at` (`fire <= at < fire + window`); when windows
    /// overlap, the earliest such fire.
    pub fn window_containing(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let window = chrono::Duration::from_std(self.window).ok()?;
        let fire = self.next_fire_after(at.checked_sub_signed(window)?)?;
        (fire <= at).then_some(fire)
    }

    /// The instant a wall-clock fire time happens: the first occurrence in an overlap, the end
    /// of the gap when the clock skips it.
    fn resolve_local(&self, local: NaiveDateTime) -> Option<DateTime<Utc>> {
        match self.time_zone.from_local_datetime(&local) {
            LocalResult::Single(instant) => Some(instant.with_timezone(&Utc)),
            LocalResult::Ambiguous(earliest, _) => Some(earliest.with_timezone(&Utc)),
            LocalResult::None => self.end_of_gap(local),
        }
    }

    /// Finds the first instant whose local time is at or after `local` by bisection between two
    /// instants certain to bracket it (UTC offsets lie within -12h..+14h).
    fn end_of_gap(&self, local: NaiveDateTime) -> Option<DateTime<Utc>> {
        let reaches = |seconds: i64| {
            DateTime::from_timestamp(seconds, 0).is_some_and(|instant| {
                instant.with_timezone(&self.time_zone).naive_local() >= local
            })
        };
        let mut low = local.and_utc().timestamp() - 15 * 3600;
        let mut high = local.and_utc().timestamp() + 13 * 3600;
        if reaches(low) || !reaches(high) {
            return None;
        }
        while high - low > 1 {
            let middle = low + (high - low) / 2;
            if reaches(middle) {
                high = middle;
            } else {
                low = middle;
            }
        }
        DateTime::from_timestamp(high, 0)
    }
}

fn compile(expression: &str) -> Result<Vec<cron::Schedule>, ScheduleError> {
    let trimmed = expression.trim();
    let expanded = match trimmed {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        other => other,
    };
    let fields: Vec<&str> = expanded.split_whitespace().collect();
    let [minute, hour, day_of_month, month, day_of_week] = fields[..] else {
        return Err(ScheduleError::FieldCount {
            expression: expression.to_owned(),
            found: fields.len(),
        });
    };
    let invalid = |reason: String| ScheduleError::Invalid {
        expression: expression.to_owned(),
        reason,
    };
    for (name, field, low, high) in [
        ("minute", minute, 0, 59),
        ("hour", hour, 0, 23),
        ("day-of-month", day_of_month, 1, 31),
        ("month", month, 1, 12),
    ] {
        check_numeric_range(name, field, low, high).map_err(invalid)?;
    }
    let weekdays = weekday_field(day_of_week).map_err(invalid)?;
    let build = |day_of_month: &str, day_of_week: &str| {
        cron::Schedule::from_str(&format!(
            "0 {minute} {hour} {day_of_month} {month} {day_of_week}"
        ))
        // The crate's message is multi-line, shows its internal 6-field form and is off by one
        // in places; keep only its last line.
        .map_err(|error| {
            let text = error.to_string();
            invalid(text.lines().last().unwrap_or_default().trim().to_owned())
        })
    };
    let restricted = |field: &str| field != "*" && field != "?";
    if restricted(day_of_month) && restricted(day_of_week) {
        Ok(vec![build(day_of_month, "*")?, build("*", &weekdays)?])
    } else {
        Ok(vec![build(day_of_month, &weekdays)?])
    }
}

/// Checks the numbers in one cron field (lists, ranges and steps) against the field's bounds, so
/// the error says which field is wrong in cron's own terms. Names such as `JAN` are left to the
/// parser.
fn check_numeric_range(name: &str, field: &str, low: u32, high: u32) -> Result<(), String> {
    for item in field.split(',') {
        let (range, step) = item.split_once('/').unwrap_or((item, ""));
        if !step.is_empty() && step.parse::<u32>().map_or(true, |step| step == 0) {
            return Err(format!("{name} step {step:?} must be a positive number"));
        }
        for bound in range.split('-') {
            if bound == "*" || bound == "?" || bound.is_empty() {
                continue;
            }
            if let Ok(value) = bound.parse::<u32>()
                && !(low..=high).contains(&value)
            {
                return Err(format!("{name} {value} is out of range {low}-{high}"));
            }
        }
    }
    Ok(())
}

const WEEKDAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// Rewrites a standard day-of-week field (0-7, Sunday is 0 and 7) as names, because the `cron`
/// crate numbers days 1-7 from Sunday and would read `1` as Sunday instead of Monday.
fn weekday_field(field: &str) -> Result<String, String> {
    if field == "*" || field == "?" {
        return Ok("*".to_owned());
    }
    let mut days = [false; 7];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .ok()
                    .filter(|step| *step > 0)
                    .ok_or_else(|| format!("invalid day-of-week step in {item:?}"))?;
                (range, step)
            }
            None => (item, 1),
        };
        let (first, last) = if range == "*" {
            (0, 6)
        } else if let Some((first, last)) = range.split_once('-') {
            (weekday_number(first)?, weekday_number(last)?)
        } else {
            let day = weekday_number(range)?;
            // `5/2` in standard cron means "from 5 to the end of the range".
            (day, if item.contains('/') { 7 } else { day })
        };
        if first > last {
            return Err(format!("day-of-week range {range:?} runs backwards"));
        }
        for day in (first..=last).step_by(step as usize) {
            days[(day % 7) as usize] = true;
        }
    }
    let names: Vec<&str> = WEEKDAY_NAMES
        .iter()
        .zip(days)
        .filter_map(|(name, on)| on.then_some(*name))
        .collect();
    Ok(names.join(","))
}

fn weekday_number(text: &str) -> Result<u32, String> {
    if let Ok(number) = text.parse::<u32>() {
        return if number <= 7 {
            Ok(number)
        } else {
            Err(format!("day-of-week {number} is out of range 0-7"))
        };
    }
    WEEKDAY_NAMES
        .iter()
        .position(|name| name.eq_ignore_ascii_case(text))
        .map(|index| index as u32)
        .ok_or_else(|| format!("unknown day-of-week {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, NaiveDate, Timelike};

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn cron(expression: &str, time_zone: &str) -> CronTrigger {
        CronTrigger::parse(expression, Some(time_zone), None).unwrap()
    }

    #[test]
    fn defaults_to_utc_and_one_hour_window() {
        let trigger = CronTrigger::parse("0 3 * * SUN", None, None).unwrap();
        assert_eq!(trigger.time_zone, Tz::UTC);
        assert_eq!(trigger.window, Duration::from_secs(3600));
        assert_eq!(trigger.expression, "0 3 * * SUN");
    }

    #[test]
    fn rejects_bad_input_naming_the_field() {
        let error = CronTrigger::parse("0 3 * *", None, None).unwrap_err();
        assert!(
            error.to_string().starts_with("spec.rotation.schedule"),
            "{error}"
        );
        assert!(matches!(
            CronTrigger::parse("0 0 3 * * SUN", None, None),
            Err(ScheduleError::FieldCount { found: 6, .. })
        ));
        assert!(matches!(
            CronTrigger::parse("61 3 * * *", None, None),
            Err(ScheduleError::Invalid { .. })
        ));
        for (expression, message) in [
            ("61 3 * * *", "minute 61 is out of range 0-59"),
            ("0 24 * * *", "hour 24 is out of range 0-23"),
            ("0 3 0 * *", "day-of-month 0 is out of range 1-31"),
            ("0 3 * 13 *", "month 13 is out of range 1-12"),
            ("*/0 3 * * *", "minute step \"0\" must be a positive number"),
        ] {
            let error = CronTrigger::parse(expression, None, None)
                .unwrap_err()
                .to_string();
            assert!(error.ends_with(message), "{expression}: {error}");
            assert!(!error.contains('\n'), "{expression}: {error}");
        }
        assert!(matches!(
            CronTrigger::parse("0 3 * * 8", None, None),
            Err(ScheduleError::Invalid { .. })
        ));
        assert!(matches!(
            CronTrigger::parse("0 3 * * *", Some("Mars/Olympus"), None),
            Err(ScheduleError::UnknownTimeZone { .. })
        ));
        assert_eq!(
            CronTrigger::parse("0 3 * * *", None, Some(Duration::ZERO)),
            Err(ScheduleError::ZeroWindow)
        );
    }

    #[test]
    fn weekday_numbers_follow_standard_cron() {
        // 2024-06-03 is a Monday.
        let monday = cron("0 3 * * 1", "UTC");
        assert_eq!(
            monday.next_fire_after(utc("2024-06-01T00:00:00Z")),
            Some(utc("2024-06-03T03:00:00Z"))
        );
        for sunday in [
            "0 3 * * 0",
            "0 3 * * 7",
            "0 3 * * SUN",
            "0 3 * * sun",
            "@weekly",
        ] {
            let fire = cron(sunday, "UTC")
                .next_fire_after(utc("2024-06-03T00:00:00Z"))
                .unwrap();
            assert_eq!(fire.weekday(), chrono::Weekday::Sun, "{sunday}");
        }
        let weekdays = cron("0 3 * * 1-5", "UTC");
        let fire = weekdays
            .next_fire_after(utc("2024-06-07T04:00:00Z"))
            .unwrap();
        assert_eq!(fire, utc("2024-06-10T03:00:00Z"));
        assert_eq!(weekday_field("5-7").unwrap(), "SUN,FRI,SAT");
        assert_eq!(weekday_field("*/2").unwrap(), "SUN,TUE,THU,SAT");
        assert_eq!(weekday_field("1/2").unwrap(), "SUN,MON,WED,FRI");
    }

    #[test]
    fn day_of_month_and_weekday_are_ored_like_standard_cron() {
        // The 1st of the month or any Monday.
        let trigger = cron("0 3 1 * MON", "UTC");
        let mut fires = Vec::new();
        let mut at = utc("2024-06-01T00:00:00Z");
        for _ in 0..4 {
            at = trigger.next_fire_after(at).unwrap();
            fires.push(at.day());
        }
        assert_eq!(fires, vec![1, 3, 10, 17]);
    }

    #[test]
    fn macros_expand() {
        let daily = cron("@daily", "UTC");
        assert_eq!(
            daily.next_fire_after(utc("2024-06-01T00:00:00Z")),
            Some(utc("2024-06-02T00:00:00Z"))
        );
        let hourly = cron("@hourly", "UTC");
        assert_eq!(
            hourly.next_fire_after(utc("2024-06-01T00:00:00Z")),
            Some(utc("2024-06-01T01:00:00Z"))
        );
    }

    #[test]
    fn evaluates_in_the_time_zone() {
        let trigger = cron("0 3 * * *", "Europe/Berlin");
        // 03:00 CEST is 01:00 UTC.
        assert_eq!(
            trigger.next_fire_after(utc("2024-06-01T00:00:00Z")),
            Some(utc("2024-06-01T01:00:00Z"))
        );
        // Strictly after: a fire exactly at `after` is not returned.
        assert_eq!(
            trigger.next_fire_after(utc("2024-06-01T01:00:00Z")),
            Some(utc("2024-06-02T01:00:00Z"))
        );
    }

    #[test]
    fn spring_forward_gap_fires_once_at_the_end_of_the_gap() {
        // Berlin skips 02:00-03:00 local on 2024-03-31; 02:30 becomes 03:00 CEST = 01:00 UTC.
        let trigger = cron("30 2 * * *", "Europe/Berlin");
        let fire = trigger
            .next_fire_after(utc("2024-03-30T12:00:00Z"))
            .unwrap();
        assert_eq!(fire, utc("2024-03-31T01:00:00Z"));
        let after = trigger.next_fire_after(fire).unwrap();
        assert_eq!(after, utc("2024-04-01T00:30:00Z"));
    }

    #[test]
    fn fall_back_overlap_fires_once_at_the_first_occurrence() {
        // Berlin repeats 02:00-03:00 local on 2024-10-27; 02:30 CEST is 00:30 UTC.
        let trigger = cron("30 2 * * *", "Europe/Berlin");
        let fire = trigger
            .next_fire_after(utc("2024-10-26T12:00:00Z"))
            .unwrap();
        assert_eq!(fire, utc("2024-10-27T00:30:00Z"));
        // Asking from inside the second occurrence must not fire again the same day.
        let next = trigger
            .next_fire_after(utc("2024-10-27T01:15:00Z"))
            .unwrap();
        assert_eq!(next, utc("2024-10-28T01:30:00Z"));
        assert_eq!(trigger.next_fire_after(fire), Some(next));
    }

    #[test]
    fn window_containing_respects_bounds() {
        let trigger =
            CronTrigger::parse("0 3 * * *", None, Some(Duration::from_secs(7200))).unwrap();
        let fire = utc("2024-06-01T03:00:00Z");
        assert_eq!(trigger.window_containing(fire), Some(fire));
        assert_eq!(
            trigger.window_containing(utc("2024-06-01T04:59:59Z")),
            Some(fire)
        );
        assert_eq!(trigger.window_containing(utc("2024-06-01T05:00:00Z")), None);
        assert_eq!(trigger.window_containing(utc("2024-06-01T02:59:59Z")), None);
    }

    #[test]
    fn never_firing_expression_yields_none() {
        let trigger = cron("0 0 30 2 *", "UTC");
        assert_eq!(trigger.next_fire_after(utc("2024-01-01T00:00:00Z")), None);
    }

    #[test]
    fn half_hour_dst_zone_resolves_gap() {
        // Lord Howe moves clocks by 30 minutes: 02:00 -> 02:30 on 2024-10-06.
        let trigger = cron("15 2 * * *", "Australia/Lord_Howe");
        let fire = trigger
            .next_fire_after(utc("2024-10-05T00:00:00Z"))
            .unwrap();
        let local = fire.with_timezone(&trigger.time_zone);
        assert_eq!(
            local.date_naive(),
            NaiveDate::from_ymd_opt(2024, 10, 6).unwrap()
        );
        assert_eq!((local.hour(), local.minute()), (2, 30));
    }
}
