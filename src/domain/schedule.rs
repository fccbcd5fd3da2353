//! The scheduled refresh, as an administrator sets it: daily or weekly on chosen days, one or
//! more times a day, in a time zone. Occurrences come from a cron library that knows about
//! daylight-saving changes: a time that does not exist runs once just after the gap, a time
//! that happens twice runs once.

use super::Invalid;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;

pub const DAYS: [(&str, &str); 7] = [
    ("mon", "Monday"),
    ("tue", "Tuesday"),
    ("wed", "Wednesday"),
    ("thu", "Thursday"),
    ("fri", "Friday"),
    ("sat", "Saturday"),
    ("sun", "Sunday"),
];

#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleSpec {
    pub enabled: bool,
    pub weekly: bool,
    /// Lower-case day keys (weekly only).
    pub days: Vec<String>,
    /// (hour, minute) pairs, sorted.
    pub times: Vec<(u8, u8)>,
    pub time_zone: Tz,
}

impl ScheduleSpec {
    /// Parses what the form sends; every problem is named.
    pub fn parse(
        enabled: bool,
        frequency: &str,
        days: &[String],
        times: &str,
        time_zone: &str,
    ) -> Result<Self, Vec<Invalid>> {
        let mut errors = Vec::new();
        let weekly = match frequency {
            "daily" => false,
            "weekly" => true,
            _ => {
                errors.push("Frequency: choose daily or weekly.".to_owned());
                false
            }
        };
        let days: Vec<String> = DAYS
            .iter()
            .map(|(k, _)| (*k).to_owned())
            .filter(|k| days.contains(k))
            .collect();
        if weekly && days.is_empty() {
            errors.push("Days: choose at least one day for a weekly refresh.".to_owned());
        }
        let mut parsed = Vec::new();
        for time in times
            .split([',', ' '])
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            match time
                .split_once(':')
                .and_then(|(h, m)| Some((h.parse::<u8>().ok()?, m.parse::<u8>().ok()?)))
            {
                Some((h, m)) if h < 24 && m < 60 && time.len() <= 5 => parsed.push((h, m)),
                _ => errors.push(format!(
                    "Times: “{time}” is not a time such as 06:00 or 18:30."
                )),
            }
        }
        parsed.sort_unstable();
        parsed.dedup();
        if parsed.is_empty() && errors.iter().all(|e| !e.starts_with("Times")) {
            errors.push("Times: give at least one time of day, such as 06:00.".to_owned());
        }
        let tz = time_zone.trim().parse::<Tz>();
        if tz.is_err() {
            errors.push(format!(
                "Time zone: “{}” is not a time zone such as Europe/Berlin or UTC.",
                time_zone.trim()
            ));
        }
        match (tz, errors.is_empty()) {
            (Ok(time_zone), true) => Ok(Self {
                enabled,
                weekly,
                days,
                times: parsed,
                time_zone,
            }),
            _ => Err(errors.into_iter().map(Invalid::from).collect()),
        }
    }

    pub fn times_text(&self) -> String {
        self.times
            .iter()
            .map(|(h, m)| format!("{h:02}:{m:02}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn crons(&self) -> Vec<Cron> {
        let days = if self.weekly {
            self.days.join(",").to_uppercase()
        } else {
            "*".to_owned()
        };
        self.times
            .iter()
            .filter_map(|(h, m)| format!("{m} {h} * * {days}").parse::<Cron>().ok())
            .collect()
    }

    /// The first occurrence strictly after `after`, if the schedule is on.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if !self.enabled {
            return None;
        }
        let local = after.with_timezone(&self.time_zone);
        self.crons()
            .iter()
            .filter_map(|cron| cron.find_next_occurrence(&local, false).ok())
            .map(|t| t.with_timezone(&Utc))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn spec(frequency: &str, days: &[&str], times: &str, tz: &str) -> ScheduleSpec {
        let days: Vec<String> = days.iter().map(|d| (*d).to_owned()).collect();
        ScheduleSpec::parse(true, frequency, &days, times, tz).unwrap()
    }

    fn occurrences(
        spec: &ScheduleSpec,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Vec<DateTime<Utc>> {
        let mut found = Vec::new();
        let mut at = from;
        while let Some(next) = spec.next_after(at) {
            if next > until {
                break;
            }
            found.push(next);
            at = next;
        }
        found
    }

    #[test]
    fn daily_times_run_in_the_chosen_time_zone() {
        let s = spec("daily", &[], "06:00, 18:30", "Europe/Berlin");
        let from = Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap();
        let next = s.next_after(from).unwrap();
        assert_eq!(
            next,
            Utc.with_ymd_and_hms(2026, 7, 1, 4, 0, 0).unwrap(),
            "06:00 in Berlin summer time"
        );
        assert_eq!(
            s.next_after(next).unwrap(),
            Utc.with_ymd_and_hms(2026, 7, 1, 16, 30, 0).unwrap()
        );
    }

    #[test]
    fn weekly_runs_only_on_chosen_days() {
        let s = spec("weekly", &["mon", "thu"], "07:00", "UTC");
        let from = Utc.with_ymd_and_hms(2026, 11, 30, 0, 0, 0).unwrap(); // a Monday
        let found = occurrences(&s, from, from + chrono::Duration::days(7));
        let days: Vec<String> = found
            .iter()
            .map(|t| t.format("%a %d").to_string())
            .collect();
        assert_eq!(days, ["Mon 30", "Thu 03"]);
    }

    #[test]
    fn a_time_skipped_by_spring_forward_runs_once_that_day() {
        // Europe/Berlin: 2027-03-28 02:00 becomes 03:00, so 02:30 does not exist.
        let s = spec("daily", &[], "02:30", "Europe/Berlin");
        let from = Utc.with_ymd_and_hms(2027, 3, 27, 12, 0, 0).unwrap();
        let until = Utc.with_ymd_and_hms(2027, 3, 29, 12, 0, 0).unwrap();
        let found = occurrences(&s, from, until);
        assert_eq!(
            found.len(),
            2,
            "once on the 28th and once on the 29th: {found:?}"
        );
        assert_eq!(found[0].date_naive().to_string(), "2027-03-28");
    }

    #[test]
    fn a_time_repeated_by_fall_back_runs_once() {
        // Europe/Berlin: 2026-10-25 03:00 goes back to 02:00, so 02:30 happens twice.
        let s = spec("daily", &[], "02:30", "Europe/Berlin");
        let from = Utc.with_ymd_and_hms(2026, 10, 24, 12, 0, 0).unwrap();
        let until = Utc.with_ymd_and_hms(2026, 10, 26, 12, 0, 0).unwrap();
        let found = occurrences(&s, from, until);
        assert_eq!(
            found.len(),
            2,
            "once on the 25th and once on the 26th: {found:?}"
        );
    }

    #[test]
    fn bad_schedules_name_every_problem() {
        let errors =
            ScheduleSpec::parse(true, "weekly", &[], "25:00, 6am", "Mars/Olympus").unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].as_str().contains("at least one day"));
        assert!(errors[1].as_str().contains("“25:00”"));
        assert!(errors[2].as_str().contains("“6am”"));
        assert!(errors[3].as_str().contains("Mars/Olympus"));
    }

    #[test]
    fn a_schedule_that_is_off_never_runs() {
        let mut s = spec("daily", &[], "06:00", "UTC");
        s.enabled = false;
        assert_eq!(s.next_after(Utc::now()), None);
    }
}
