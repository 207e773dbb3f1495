//! When a schedule's occurrences fall: cron expressions in a time zone, or `@every DURATION`.
//!
//! Pure calendar arithmetic over millisecond Unix timestamps. Nothing here reads a clock: every
//! question is "the first occurrence after instant T" or "the last one at or before T" with T
//! given. The time-zone database is compiled in (`chrono-tz`), so every replica answers alike
//! whatever its host has installed; a release that updates the database changes answers for
//! future instants only if the zone's rules changed, and all replicas should run one release.
//!
//! Daylight-saving time (cron expressions are wall-clock times in the schedule's zone):
//! - a local time that does not exist (the spring-forward gap, e.g. 02:30 in New York on the
//!   second Sunday of March) fires at the first instant after the gap (03:00);
//! - a local time that exists twice (the fall-back overlap) fires once, at its first instance, for
//!   fixed-time expressions; expressions with a wildcard or step in the hour (e.g. `*/15 * * * *`)
//!   keep firing through both passes, as real time keeps passing (croner's documented rules).
//!
//! `@every D` is not a cron expression: occurrences are `anchor + k * D` (k >= 1) where the anchor
//! is the schedule's creation time, independent of time zones and DST.

use std::str::FromStr;

use chrono::{DateTime, TimeZone};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds};

use crate::limits;

/// A parsed schedule timing.
#[derive(Clone, Debug)]
pub enum Timing {
    Cron { cron: Box<croner::Cron>, tz: Tz },
    Every { interval_ms: u64 },
}

impl Timing {
    /// Parses `expr` (5 or 6 cron fields, a nickname such as `@hourly`, or `@every 30s`) in the
    /// IANA time zone `timezone` (e.g. `UTC`, `Europe/Berlin`).
    pub fn parse(expr: &str, timezone: &str) -> Result<Timing, String> {
        let expr = expr.trim();
        if expr.is_empty() || expr.len() > limits::CRON_EXPR_BYTES_MAX {
            return Err(format!("a cron expression must be 1..={} bytes", limits::CRON_EXPR_BYTES_MAX));
        }
        let tz = Tz::from_str(timezone)
            .map_err(|_| format!("unknown time zone {timezone:?} (an IANA name such as UTC or Europe/Berlin)"))?;
        if let Some(rest) = expr.strip_prefix("@every") {
            let interval_ms = parse_duration_ms(rest.trim())?;
            if interval_ms < limits::SCHEDULE_INTERVAL_MS_MIN {
                return Err(format!(
                    "@every {interval_ms} ms is under schedule_interval_ms_min {}",
                    limits::SCHEDULE_INTERVAL_MS_MIN
                ));
            }
            return Ok(Timing::Every { interval_ms });
        }
        let parser = CronParser::builder().seconds(Seconds::Optional).build();
        let cron = parser.parse(expr).map_err(|e| format!("bad cron expression {expr:?}: {e}"))?;
        Ok(Timing::Cron { cron: Box::new(cron), tz })
    }

    /// The first occurrence strictly after `after_ms`, or `None` when there is none (an
    /// expression such as `0 0 30 2 *` that never matches). `anchor_ms` anchors `@every`.
    pub fn next_after(&self, anchor_ms: u64, after_ms: u64) -> Option<u64> {
        match self {
            Timing::Every { interval_ms } => {
                let k = if after_ms < anchor_ms { 1 } else { (after_ms - anchor_ms) / interval_ms + 1 };
                k.checked_mul(*interval_ms).and_then(|d| d.checked_add(anchor_ms))
            }
            Timing::Cron { cron, tz } => {
                // Occurrences fall on whole seconds: search from the second that holds `after_ms`,
                // exclusive, then make sure the answer is really later (it must be, by croner's
                // contract; checked because a replica must never fire backwards).
                let from = to_zoned(tz, after_ms - after_ms % 1000)?;
                let next = cron.find_next_occurrence(&from, false).ok()?;
                let next_ms = u64::try_from(next.timestamp_millis()).ok()?;
                (next_ms > after_ms).then_some(next_ms)
            }
        }
    }

    /// The last occurrence at or before `at_ms`, if any after the anchor.
    pub fn last_at_or_before(&self, anchor_ms: u64, at_ms: u64) -> Option<u64> {
        match self {
            Timing::Every { interval_ms } => {
                let k = at_ms.checked_sub(anchor_ms)? / interval_ms;
                (k >= 1).then(|| anchor_ms + k * interval_ms)
            }
            Timing::Cron { cron, tz } => {
                let from = to_zoned(tz, at_ms - at_ms % 1000)?;
                let prev = cron.find_previous_occurrence(&from, true).ok()?;
                let prev_ms = u64::try_from(prev.timestamp_millis()).ok()?;
                (prev_ms <= at_ms).then_some(prev_ms)
            }
        }
    }

    /// Number of occurrences in `[from_ms, until_ms)`, counting at most `max`; the second value
    /// says whether the count stopped at `max` (then it is a lower bound).
    pub fn count_between(&self, anchor_ms: u64, from_ms: u64, until_ms: u64, max: u64) -> (u64, bool) {
        if until_ms <= from_ms {
            return (0, false);
        }
        if let Timing::Every { interval_ms } = self {
            // Closed form: occurrences at or before until-1, minus those before from.
            let upto = |t: u64| self.last_at_or_before(anchor_ms, t).map_or(0, |l| (l - anchor_ms) / interval_ms);
            let n = upto(until_ms - 1) - if from_ms == 0 { 0 } else { upto(from_ms - 1) };
            return (n.min(max), n > max);
        }
        let mut n = 0;
        let mut t = match self.last_at_or_before(anchor_ms, from_ms) {
            Some(t) if t == from_ms => Some(t),
            _ => self.next_after(anchor_ms, from_ms),
        };
        while let Some(at) = t.filter(|&at| at < until_ms) {
            if n == max {
                return (n, true);
            }
            n += 1;
            t = self.next_after(anchor_ms, at);
        }
        (n, false)
    }
}

fn to_zoned(tz: &Tz, ms: u64) -> Option<DateTime<Tz>> {
    tz.timestamp_millis_opt(i64::try_from(ms).ok()?).single()
}

/// Parses a duration such as `30s`, `5m`, `1h30m`, `1500ms`, `2d` into milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let bad = || format!("bad duration {text:?} (e.g. 30s, 5m, 1h30m, 1500ms)");
    if text.is_empty() || text.len() > 32 {
        return Err(bad());
    }
    let (mut total, mut rest) = (0u64, text);
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit_ms = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total = n.checked_mul(unit_ms).and_then(|ms| total.checked_add(ms)).ok_or_else(bad)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(tz: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> u64 {
        tz.with_ymd_and_hms(y, mo, d, h, mi, s).earliest().unwrap().timestamp_millis() as u64
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration_ms("30s"), Ok(30_000));
        assert_eq!(parse_duration_ms("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration_ms("1500ms"), Ok(1_500));
        for bad in ["", "s", "10", "10x", "-1s", "99999999999999999999999d"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_counts_from_its_anchor() {
        let t = Timing::parse("@every 2s", "UTC").unwrap();
        assert_eq!(t.next_after(10_000, 10_000), Some(12_000));
        assert_eq!(t.next_after(10_000, 13_999), Some(14_000));
        assert_eq!(t.next_after(10_000, 5), Some(12_000));
        assert_eq!(t.last_at_or_before(10_000, 13_999), Some(12_000));
        assert_eq!(t.last_at_or_before(10_000, 11_999), None);
        assert_eq!(t.count_between(10_000, 12_000, 20_000, 100), (4, false));
        assert_eq!(t.count_between(10_000, 12_000, 20_000, 3), (3, true));
        assert!(Timing::parse("@every 10ms", "UTC").is_err());
    }

    #[test]
    fn five_and_six_fields_and_nicknames() {
        let utc = Tz::UTC;
        let t = Timing::parse("*/5 * * * *", "UTC").unwrap();
        let base = ms(utc, 2026, 1, 1, 0, 0, 0);
        assert_eq!(t.next_after(0, base), Some(base + 300_000));
        assert_eq!(t.next_after(0, base + 1), Some(base + 300_000));
        assert_eq!(t.last_at_or_before(0, base + 299_999), Some(base));
        let s = Timing::parse("*/10 * * * * *", "UTC").unwrap();
        assert_eq!(s.next_after(0, base + 500), Some(base + 10_000));
        let h = Timing::parse("@hourly", "UTC").unwrap();
        assert_eq!(h.next_after(0, base), Some(base + 3_600_000));
        assert_eq!(t.count_between(0, base, base + 3_600_000, 100), (12, false));
        assert!(Timing::parse("61 * * * *", "UTC").is_err());
        assert!(Timing::parse("* * * * *", "Mars/Olympus").is_err());
    }

    #[test]
    fn a_time_in_the_spring_gap_fires_after_the_gap() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let t = Timing::parse("30 2 * * *", "America/New_York").unwrap();
        // 2026-03-08: clocks go from 02:00 to 03:00; 02:30 does not exist.
        let before = ms(ny, 2026, 3, 8, 1, 0, 0);
        assert_eq!(t.next_after(0, before), Some(ms(ny, 2026, 3, 8, 3, 0, 0)));
        // The day after, it is 02:30 again.
        assert_eq!(t.next_after(0, ms(ny, 2026, 3, 8, 4, 0, 0)), Some(ms(ny, 2026, 3, 9, 2, 30, 0)));
    }

    #[test]
    fn a_fixed_time_in_the_fall_overlap_fires_once() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let t = Timing::parse("30 1 * * *", "America/New_York").unwrap();
        // 2026-11-01: 01:00-02:00 happens twice.
        let first = ms(ny, 2026, 11, 1, 1, 30, 0);
        assert_eq!(t.next_after(0, ms(ny, 2026, 11, 1, 0, 0, 0)), Some(first));
        let next = t.next_after(0, first).unwrap();
        assert_eq!(next, ms(ny, 2026, 11, 2, 1, 30, 0), "no second 01:30 on the day of the overlap");
        // An hourly wildcard keeps going through both passes, one hour of real time apart.
        let hourly = Timing::parse("0 * * * *", "America/New_York").unwrap();
        let one = hourly.next_after(0, ms(ny, 2026, 11, 1, 0, 30, 0)).unwrap();
        let two = hourly.next_after(0, one).unwrap();
        assert_eq!(two - one, 3_600_000);
        let three = hourly.next_after(0, two).unwrap();
        assert_eq!(three - two, 3_600_000);
    }

    #[test]
    fn occurrences_strictly_increase() {
        let t = Timing::parse("*/7 * * * * *", "Europe/Berlin").unwrap();
        let mut at = 1_700_000_000_123;
        for _ in 0..200 {
            let next = t.next_after(0, at).unwrap();
            assert!(next > at);
            assert_eq!(t.last_at_or_before(0, next), Some(next));
            at = next;
        }
    }

    #[test]
    fn an_expression_that_never_matches_has_no_next() {
        let t = Timing::parse("0 0 30 2 *", "UTC").unwrap();
        assert_eq!(t.next_after(0, 1_700_000_000_000), None);
    }
}
