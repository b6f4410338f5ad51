//! Scheduled reboots after an upgrade (`aergo os upgrade BUNDLE --reboot-at HH:MM`): the
//! time of day is UTC, parsed here by both the CLI (a clear error before the bundle is sent)
//! and init (which resolves it against its own clock to the next such time, keeps it, reboots
//! then, and shows it in `status`). Pure functions over Unix seconds, so the clock is
//! injected by the caller.

/// Seconds in a day.
pub const DAY_SECS: u64 = 86_400;

/// Why a `--reboot-at` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Not `HH:MM` with 00 ≤ HH ≤ 23 and 00 ≤ MM ≤ 59.
    #[error("bad reboot time `{0}`: expected HH:MM in UTC, 24-hour clock (e.g. 03:30)")]
    BadTime(String),
    /// The wall clock reads before 1970 (or is unreadable): no time of day can be resolved.
    #[error("the clock is not set: a reboot time cannot be scheduled")]
    NoClock,
}

/// A time of day in UTC, minutes after midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeOfDay {
    /// Minutes after 00:00 UTC (0..1440).
    pub minutes: u32,
}

impl TimeOfDay {
    /// Parses `HH:MM` (UTC, 24-hour clock; `H:MM` is accepted too).
    pub fn parse(text: &str) -> Result<Self, ScheduleError> {
        let bad = || ScheduleError::BadTime(text.to_string());
        let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
        let digits = |s: &str, max_len: usize| {
            !s.is_empty() && s.len() <= max_len && s.bytes().all(|b| b.is_ascii_digit())
        };
        if !digits(h, 2) || !digits(m, 2) || m.len() != 2 {
            return Err(bad());
        }
        let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if h > 23 || m > 59 {
            return Err(bad());
        }
        Ok(TimeOfDay {
            minutes: h * 60 + m,
        })
    }

    /// `HH:MM`.
    pub fn to_text(self) -> String {
        format!("{:02}:{:02}", self.minutes / 60, self.minutes % 60)
    }

    /// The first Unix second at this time of day strictly after `now` (today if it is still
    /// ahead, else tomorrow).
    pub fn next_after(self, now: u64) -> u64 {
        let midnight = now - now % DAY_SECS;
        let today = midnight + u64::from(self.minutes) * 60;
        if today > now {
            today
        } else {
            today + DAY_SECS
        }
    }
}

/// Formats Unix seconds as `YYYY-MM-DD HH:MM UTC`.
pub fn format_utc(unix: u64) -> String {
    let days = unix / DAY_SECS;
    let secs = unix % DAY_SECS;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm, non-negative days).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        secs / 3600,
        (secs / 60) % 60
    )
}

/// `in 2 h 05 min` / `in 42 s` / `now` for the time left until `at`.
pub fn format_left(at: u64, now: u64) -> String {
    let left = at.saturating_sub(now);
    match left {
        0 => "now".to_string(),
        1..=59 => format!("in {left} s"),
        60..=3599 => format!("in {} min", left.div_ceil(60)),
        _ => format!("in {} h {:02} min", left / 3600, (left % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hh_mm_and_refuses_anything_else() {
        assert_eq!(TimeOfDay::parse("03:30").unwrap().minutes, 210);
        assert_eq!(TimeOfDay::parse("3:05").unwrap().minutes, 185);
        assert_eq!(TimeOfDay::parse("00:00").unwrap().minutes, 0);
        assert_eq!(TimeOfDay::parse(" 23:59 ").unwrap().minutes, 1439);
        assert_eq!(TimeOfDay::parse("23:59").unwrap().to_text(), "23:59");
        for bad in [
            "", "24:00", "12:60", "1230", "12:5", "12:345", "-1:00", "+1:00", "ab:cd", "12:30:00",
            "12:30Z", "123:00", "12 :30",
        ] {
            let e = TimeOfDay::parse(bad).unwrap_err();
            assert_eq!(e, ScheduleError::BadTime(bad.to_string()), "{bad}");
            assert!(e.to_string().contains("HH:MM in UTC"), "{e}");
        }
    }

    #[test]
    fn next_occurrence_is_today_when_ahead_else_tomorrow() {
        // 2026-12-05 19:40:10 UTC.
        let now = 1_796_499_610;
        assert_eq!(format_utc(now), "2026-12-05 19:40 UTC");
        let at = TimeOfDay::parse("21:00").unwrap().next_after(now);
        assert_eq!(format_utc(at), "2026-12-05 21:00 UTC");
        assert_eq!(at - now, 3600 + 19 * 60 + 50);
        // Already past today (and the current minute itself): tomorrow.
        let at = TimeOfDay::parse("03:30").unwrap().next_after(now);
        assert_eq!(format_utc(at), "2026-12-06 03:30 UTC");
        let at = TimeOfDay::parse("19:40").unwrap().next_after(now);
        assert_eq!(format_utc(at), "2026-12-06 19:40 UTC");
        // Exactly on the minute: the next day, never `now`.
        let on = now - 10;
        assert_eq!(
            TimeOfDay::parse("19:40").unwrap().next_after(on),
            on + DAY_SECS
        );
        // Midnight of the last day of a year rolls over the year.
        let eve = 1_798_761_599; // 2026-12-31 23:59:59
        assert_eq!(format_utc(eve), "2026-12-31 23:59 UTC");
        assert_eq!(
            format_utc(TimeOfDay::parse("00:00").unwrap().next_after(eve)),
            "2027-01-01 00:00 UTC"
        );
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00 UTC");
    }

    #[test]
    fn time_left_reads_naturally() {
        assert_eq!(format_left(100, 100), "now");
        assert_eq!(format_left(100, 200), "now");
        assert_eq!(format_left(142, 100), "in 42 s");
        assert_eq!(format_left(100 + 61, 100), "in 2 min");
        assert_eq!(format_left(100 + 7500, 100), "in 2 h 05 min");
    }
}
